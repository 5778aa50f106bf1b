"""``--auth keystone``: the real keystonemiddleware, validating tokens
against a small stand-in Keystone on loopback (no real Keystone here), and
noauth's header identity."""

from __future__ import annotations

import base64
import socket
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kumonet.api.auth import KeystoneAuth
from kumonet.api.config import ServerConfig, load_config
from kumonet.api.main import make_app, make_authenticator
from kumonet.store.url import open_store
from tests.api.conftest import ML2_INI, Api, start_api

# A project of None: a system-scoped token.
TOKENS: dict[str, tuple[str | None, list[str]]] = {
    "tok-member": ("p1", ["member", "reader"]), "tok-admin": ("p0", ["admin"]),
    "tok-system-admin": (None, ["admin", "member", "reader"])}
SERVICE_TOKEN = "tok-service"


def _token(base: str, project: str | None, roles: list[str]) -> dict[str, Any]:
    domain = {"id": "default", "name": "Default"}
    scope: dict[str, Any] = {"system": {"all": True}} if project is None else {
        "project": {"id": project, "name": "proj-" + project, "domain": domain}}
    return {"token": {
        "methods": ["password"], "expires_at": "2099-01-01T00:00:00.000000Z",
        "issued_at": "2026-01-01T00:00:00.000000Z",
        "user": {"id": "u-" + (project or "system"), "name": "user", "domain": domain},
        **scope,
        "roles": [{"id": r, "name": r} for r in roles],
        "catalog": [{"type": "identity", "name": "keystone", "id": "k", "endpoints": [
            {"interface": i, "url": base + "/v3", "region": "RegionOne",
             "region_id": "RegionOne", "id": "e-" + i} for i in ("public", "internal", "admin")
        ]}]}}


def _stand_in_keystone() -> web.Application:
    """Just enough of Keystone v3 for keystonemiddleware: discovery, the
    service's own token, token validation."""
    app = web.Application()

    def version(base: str) -> dict[str, Any]:
        return {"id": "v3.14", "status": "stable", "updated": "2020-01-01T00:00:00Z",
                "links": [{"rel": "self", "href": base + "/v3/"}],
                "media-types": [{"base": "application/json",
                                 "type": "application/vnd.openstack.identity-v3+json"}]}

    async def root(request: web.Request) -> web.Response:
        return web.json_response({"versions": {"values": [version(f"http://{request.host}")]}},
                                 status=300)

    async def v3(request: web.Request) -> web.Response:
        return web.json_response({"version": version(f"http://{request.host}")})

    async def issue(request: web.Request) -> web.Response:
        return web.json_response(_token(f"http://{request.host}", "service", ["service"]),
                                 status=201, headers={"X-Subject-Token": SERVICE_TOKEN})

    async def validate(request: web.Request) -> web.Response:
        if request.headers.get("X-Auth-Token") != SERVICE_TOKEN:
            return web.json_response({"error": {"code": 401}}, status=401)
        subject = request.headers.get("X-Subject-Token", "")
        if subject not in TOKENS:
            return web.json_response({"error": {"code": 404, "message": "not found"}},
                                     status=404)
        project, roles = TOKENS[subject]
        return web.json_response(_token(f"http://{request.host}", project, roles),
                                 headers={"X-Subject-Token": subject})

    app.router.add_get("/", root)
    app.router.add_get("/v3", v3)
    app.router.add_get("/v3/", v3)
    app.router.add_post("/v3/auth/tokens", issue)
    app.router.add_get("/v3/auth/tokens", validate)
    return app


def _options(base: str) -> dict[str, str]:
    return {"www_authenticate_uri": base, "auth_url": base, "auth_type": "password",
            "username": "neutron", "password": "secret", "project_name": "service",
            "user_domain_name": "Default", "project_domain_name": "Default"}


def _keystone_auth(base: str) -> KeystoneAuth:
    with warnings.catch_warnings():
        # keystonemiddleware warns about its in-process token cache.
        warnings.simplefilter("ignore", DeprecationWarning)
        return KeystoneAuth(_options(base))


@pytest.fixture
async def keystone_api(tmp_path: Path, server_config: ServerConfig) -> AsyncIterator[Api]:
    keystone = TestServer(_stand_in_keystone(), host="127.0.0.1")
    await keystone.start_server()
    base = f"http://127.0.0.1:{keystone.port}"
    auth = _keystone_auth(base)
    store = await open_store(f"sqlite:///{tmp_path}/ks.db")
    client: TestClient[Any, Any] = TestClient(TestServer(
        make_app(store, server_config, auth), host="127.0.0.1"))
    await client.start_server()
    try:
        yield Api(client)
    finally:
        await client.close()
        await store.close()
        await keystone.close()


async def test_keystone_tokens_decide_identity(keystone_api: Api) -> None:
    api = keystone_api
    status, body = await api.call("GET", "/v2.0/networks")
    # keystonemiddleware's own answer, as a Neutron server's authtoken filter sends it
    assert status == 401 and body["error"]["title"] == "Unauthorized", body
    status, body = await api.call("GET", "/v2.0/networks",
                                  headers={"X-Auth-Token": "tok-bogus"})
    assert status == 401
    status, _ = await api.call("GET", "/")
    assert status == 200
    member = {"X-Auth-Token": "tok-member", "X-Project-Id": "forged", "X-Roles": "admin"}
    status, body = await api.call("POST", "/v2.0/networks", {"network": {"name": "n"}},
                                  headers=member)
    assert status == 201, body
    net = body["network"]
    # the token's project, not the forged header
    assert net["tenant_id"] == "p1" and "provider:network_type" not in net
    status, body = await api.call("GET", f"/v2.0/networks/{net['id']}",
                                  headers={"X-Auth-Token": "tok-admin"})
    assert status == 200 and body["network"]["provider:network_type"] == "vxlan"
    status, body = await api.call("POST", "/v2.0/networks", {"network": {
        "provider:network_type": "vxlan"}}, headers=member)
    assert status == 403



async def test_keystone_section_read_from_the_ini(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    keystone = TestServer(_stand_in_keystone(), host="127.0.0.1")
    await keystone.start_server()
    ini = tmp_path / "kumonet.ini"
    ini.write_text("[DEFAULT]\nglobal_physnet_mtu = 1500\n[keystone_authtoken]\n" + "".join(
        f"{name} = {value}\n" for name, value in
        _options(f"http://127.0.0.1:{keystone.port}").items()))
    config = load_config(ini)
    assert config.keystone_config_file == str(ini)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        auth = make_authenticator("keystone", config)
    store = await open_store(f"sqlite:///{tmp_path}/ks.db")
    client: TestClient[Any, Any] = TestClient(TestServer(make_app(store, config, auth),
                                                         host="127.0.0.1"))
    await client.start_server()
    try:
        api = Api(client)
        status, body = await api.call("GET", "/v2.0/networks",
                                      headers={"X-Auth-Token": "tok-member"})
        assert status == 200, body
        status, _ = await api.call("GET", "/v2.0/networks",
                                   headers={"X-Auth-Token": "tok-bogus"})
        assert status == 401
    finally:
        await client.close()
        await store.close()
        await keystone.close()
    # a paste-style dict would make it call auth_url, username... unknown
    assert not [r for r in caplog.records if "not known to keystonemiddleware" in r.message]


async def test_keystone_unreachable_is_503_not_401(tmp_path: Path,
                                                   server_config: ServerConfig) -> None:
    # A port nothing listens on: keystonemiddleware cannot get its own token.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    store = await open_store(f"sqlite:///{tmp_path}/ks.db")
    client: TestClient[Any, Any] = TestClient(TestServer(
        make_app(store, server_config, _keystone_auth(dead)), host="127.0.0.1"))
    await client.start_server()
    try:
        async with client.get("/v2.0/networks", headers={
                "X-Auth-Token": "tok-member", "Accept": "application/json"}) as resp:
            assert resp.status == 503, await resp.text()
        async with client.get("/v2.0/networks") as resp:
            # no token: refused before Keystone is asked
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"] == f'Keystone uri="{dead}"'
    finally:
        await client.close()
        await store.close()


async def test_reader_role_reads_but_never_writes(api: Api) -> None:
    net = await api.create("networks", "network", project="p1", name="n")
    router = await api.create("routers", "router", project="p1", name="r")
    status, body = await api.call("GET", f"/v2.0/networks/{net['id']}", project="p1",
                                  roles="reader")
    assert status == 200 and body["network"]["id"] == net["id"]
    refused = [
        ("POST", "/v2.0/networks", {"network": {"name": "x"}}, "create_network"),
        ("PUT", f"/v2.0/networks/{net['id']}", {"network": {"name": "x"}}, "update_network"),
        ("DELETE", f"/v2.0/networks/{net['id']}", None, "delete_network"),
        ("POST", "/v2.0/security-group-rules", {"security_group_rule": {}},
         "create_security_group_rule"),
        ("PUT", f"/v2.0/routers/{router['id']}/add_router_interface", {"subnet_id": "x"},
         "add_router_interface"),
    ]
    for method, path, body, rule in refused:
        status, answer = await api.call(method, path, body, project="p1", roles="reader")
        assert status == 403, (method, path, answer)
        assert answer["NeutronError"] == {"type": "PolicyNotAuthorized", "detail": "",
                                          "message": f"rule:{rule} is disallowed by policy"}
    status, body = await api.call("GET", f"/v2.0/networks/{net['id']}", project="p1")
    assert status == 200 and body["network"]["name"] == "n"
    # member (with the reader role Keystone implies) and admin write
    status, _ = await api.call("PUT", f"/v2.0/networks/{net['id']}",
                               {"network": {"name": "m"}}, project="p1",
                               roles="member,reader")
    assert status == 200
    status, _ = await api.call("PUT", f"/v2.0/networks/{net['id']}",
                               {"network": {"name": "a"}}, project="p0", roles="admin")
    assert status == 200


async def test_reader_writes_look_the_resource_up_first(api: Api) -> None:
    """Neutron looks a resource up before its policy: a reader's PUT/DELETE
    on what it cannot see, or what does not exist, is a 404; on what it sees,
    a 403; its POST a 403."""
    mine = await api.create("networks", "network", project="p1", name="mine")
    theirs = await api.create("networks", "network", project="p2", name="theirs")
    router = await api.create("routers", "router", project="p2", name="r")
    missing = "3f1b2b8e-2c4e-4a8e-9d7c-0d5b8e1c2a44"
    for method, path, body in [
            ("PUT", f"/v2.0/networks/{theirs['id']}", {"network": {"name": "x"}}),
            ("DELETE", f"/v2.0/networks/{theirs['id']}", None),
            ("PUT", f"/v2.0/networks/{missing}", {"network": {"name": "x"}}),
            ("DELETE", f"/v2.0/networks/{missing}", None),
            ("PUT", f"/v2.0/routers/{router['id']}/add_router_interface", {"subnet_id": "x"}),
            ("PUT", f"/v2.0/networks/{theirs['id']}/tags/t", None)]:
        status, answer = await api.call(method, path, body, project="p1", roles="reader")
        assert status == 404, (method, path, answer)
        assert answer["NeutronError"]["type"] in ("NetworkNotFound", "RouterNotFound"), answer
    for method, path, body in [
            ("PUT", f"/v2.0/networks/{mine['id']}", {"network": {"name": "x"}}),
            ("DELETE", f"/v2.0/networks/{mine['id']}", None),
            ("POST", "/v2.0/networks", {"network": {"name": "x"}}),
            ("POST", "/v2.0/ports", {"port": {"network_id": mine["id"]}})]:
        status, answer = await api.call(method, path, body, project="p1", roles="reader")
        assert status == 403, (method, path, answer)
        assert answer["NeutronError"]["type"] == "PolicyNotAuthorized"
    # nothing changed
    status, body = await api.call("GET", f"/v2.0/networks/{theirs['id']}")
    assert status == 200 and body["network"]["name"] == "theirs"


async def test_service_role_binds_other_projects_ports(api: Api) -> None:
    """Nova's service user (role ``service``, no admin, its own project) as
    Neutron 2023.2+ allows it: it sees and binds a tenant's ports, reads the
    binding, and writes nothing else."""
    net = await api.create("networks", "network", project="tenant", name="n")
    await api.create("subnets", "subnet", project="tenant", network_id=net["id"],
                     cidr="10.9.0.0/24", ip_version=4)
    port = await api.create("ports", "port", project="tenant", network_id=net["id"])
    svc = {"project": "service", "roles": "service"}
    status, body = await api.call("GET", f"/v2.0/ports/{port['id']}", **svc)
    assert status == 200 and body["port"]["binding:vif_type"] == "unbound", body
    status, body = await api.call("PUT", f"/v2.0/ports/{port['id']}", {"port": {
        "binding:host_id": "compute1", "binding:profile": {"k": "v"},
        "device_owner": "compute:nova", "device_id": "vm-1"}}, **svc)
    assert status == 200, body
    bound = body["port"]
    assert bound["binding:host_id"] == "compute1" and bound["tenant_id"] == "tenant"
    assert bound["binding:profile"] == {"k": "v"} and "binding:vif_type" in bound
    status, body = await api.call("GET", "/v2.0/ports?device_id=vm-1", **svc)
    assert status == 200 and [p["id"] for p in body["ports"]] == [port["id"]]
    # a port made for the tenant, bound at once (Nova's create with a host)
    status, body = await api.call("POST", "/v2.0/ports", {"port": {
        "network_id": net["id"], "tenant_id": "tenant", "binding:host_id": "compute2",
        "device_owner": "compute:nova", "device_id": "vm-2"}}, **svc)
    assert status == 201, body
    assert body["port"]["tenant_id"] == "tenant"
    assert body["port"]["binding:host_id"] == "compute2"
    # the tenant's member sees its port, not the binding, and may not bind
    status, body = await api.call("GET", f"/v2.0/ports/{port['id']}", project="tenant")
    assert status == 200 and "binding:host_id" not in body["port"]
    status, body = await api.call("PUT", f"/v2.0/ports/{port['id']}", {"port": {
        "binding:host_id": "compute9"}}, project="tenant")
    assert status == 403, body
    assert body["NeutronError"]["message"] == \
        "rule:update_port:binding:host_id is disallowed by policy"
    # the service role writes ports only; other projects' networks stay hidden
    status, body = await api.call("POST", "/v2.0/networks", {"network": {"name": "x"}},
                                  **svc)
    assert status == 403, body
    status, body = await api.call("PUT", f"/v2.0/networks/{net['id']}",
                                  {"network": {"name": "x"}}, **svc)
    assert status == 404, body
    status, body = await api.call("GET", f"/v2.0/networks/{net['id']}", **svc)
    assert status == 404, body
    # and it unbinds (Nova on a VM's delete) and deletes
    status, body = await api.call("PUT", f"/v2.0/ports/{port['id']}", {"port": {
        "binding:host_id": "", "device_id": "", "device_owner": ""}}, **svc)
    assert status == 200 and body["port"]["binding:host_id"] == "", body
    status, _ = await api.call("DELETE", f"/v2.0/ports/{port['id']}", **svc)
    assert status == 204


async def test_system_scoped_tokens_are_refused_on_project_resources(
        keystone_api: Api) -> None:
    """Neutron's policies are project-scoped (oslo.policy's InvalidScope),
    even for a system admin: a create is 403 InvalidScope, a PUT/DELETE or a
    read of one resource 404, a list empty."""
    api = keystone_api
    system = {"X-Auth-Token": "tok-system-admin"}
    status, body = await api.call("POST", "/v2.0/networks", {"network": {"name": "n"}},
                                  headers=system)
    assert status == 403, body
    assert body["NeutronError"] == {
        "type": "InvalidScope", "detail": "",
        "message": "rule:create_network requires a scope of ['project'], request was made "
                   "with system scope."}
    status, body = await api.call("POST", "/v2.0/networks", {"network": {"name": "n"}},
                                  headers={"X-Auth-Token": "tok-member"})
    assert status == 201
    net = body["network"]
    status, body = await api.call("POST", "/v2.0/routers", {"router": {"name": "r"}},
                                  headers={"X-Auth-Token": "tok-member"})
    assert status == 201
    router = body["router"]
    for method, path, expected in [
            ("GET", "/v2.0/networks", 200),
            ("GET", f"/v2.0/networks/{net['id']}", 404),
            ("PUT", f"/v2.0/networks/{net['id']}", 404),
            ("DELETE", f"/v2.0/networks/{net['id']}", 404),
            ("PUT", f"/v2.0/routers/{router['id']}/add_router_interface", 403),
            ("GET", "/v2.0/extensions", 200),
            ("GET", "/v1/cluster/status", 200)]:
        status, body = await api.call(method, path, {"network": {"name": "x"}}
                                      if method == "PUT" else None, headers=system)
        assert status == expected, (method, path, body)
    status, body = await api.call("GET", "/v2.0/networks", headers=system)
    assert body == {"networks": []}
    status, body = await api.call("GET", f"/v2.0/networks/{net['id']}",
                                  headers={"X-Auth-Token": "tok-admin"})
    assert status == 200 and body["network"]["name"] == "n"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_status_paths_take_basic_auth_or_an_admin_token(keystone_api: Api) -> None:
    """Under keystone, the operators' paths take ODL's credentials (the
    seed's ``curl -u admin:admin``) or an admin token."""
    api = keystone_api
    jolokia = ("/jolokia/read/org.opendaylight.controller:Category=Shards,"
               "name=member-1-shard-default-config,type=DistributedConfigDatastore")
    for path in ("/v1/cluster/status", jolokia):
        status, body = await api.call("GET", path, headers=_basic("admin", "admin"))
        assert status == 200, (path, body)
        status, body = await api.call("GET", path, headers={"X-Auth-Token": "tok-admin"})
        assert status == 200, (path, body)
        status, body = await api.call("GET", path)
        assert status == 401, (path, body)
        status, _ = await api.call("GET", path, headers=_basic("admin", "wrong"))
        assert status == 401
        status, body = await api.call("GET", path, headers={"X-Auth-Token": "tok-member"})
        assert status == 403, (path, body)
    status, body = await api.call("GET", "/v1/cluster/status", headers=_basic("admin", "admin"))
    assert body["shards"], body


async def test_status_paths_in_noauth(api: Api) -> None:
    status, body = await api.call("GET", "/v1/cluster/status")
    assert status == 200 and body["shards"], body
    status, _ = await api.call("GET", "/v1/cluster/status", headers=_basic("admin", "admin"))
    assert status == 200
    status, _ = await api.call("GET", "/v1/cluster/status", headers=_basic("admin", "nope"))
    assert status == 401
    # a member stating its project is no operator
    status, _ = await api.call("GET", "/v1/cluster/status", project="p1")
    assert status == 403


async def test_restconf_credentials_come_from_the_config(tmp_path: Path) -> None:
    ini = tmp_path / "kumonet.ini"
    ini.write_text(ML2_INI + "[restconf]\nusername = ops\npassword = s3cret\n")
    config = load_config(ini)
    assert (config.restconf_username, config.restconf_password) == ("ops", "s3cret")
    api, store = await start_api(f"sqlite:///{tmp_path}/store.db", config)
    try:
        for path in ("/v1/cluster/status", "/restconf/config/neutron:neutron/"):
            status, _ = await api.call("GET", path, headers=_basic("ops", "s3cret"))
            assert status == 200, path
            status, _ = await api.call("GET", path, headers=_basic("admin", "admin"))
            assert status == 401, path
    finally:
        await api.client.close()
        await store.close()
    assert load_config(None).restconf_password == "admin"
