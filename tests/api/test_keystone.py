"""``kumonet-server --auth keystone`` behind a real Keystone.

One Keystone per session (``tests/api/keystone_server.py``: admin, two tenant
projects with a member user each, a reader, the ``neutron`` service user,
and the ``network`` service in the catalog pointing at kumonet), one
kumonet-server process whose ``[keystone_authtoken]`` is Neutron's. Clients
log in with passwords and find kumonet through the catalog, as in a cloud.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.api.keystone_server import (
    KeystoneCloud,
    KeystoneServer,
    KeystoneUser,
    KumonetServer,
    Memcached,
    application_credential_token,
    free_port,
    issue_system_token,
    issue_token,
    keystone_missing,
    provision,
    revoke_token,
)
from tests.environment import needs, unavailable

pytestmark = pytest.mark.slow
VENV_BIN = Path(sys.executable).parent
# Keystone's own answer when keystonemiddleware refuses a token, which is
# what a Neutron server says too: its authtoken filter answers before Neutron.
KEYSTONE_401 = {"code": 401, "title": "Unauthorized",
                "message": "The request you have made requires authentication."}


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeystoneCloud]:
    reason = keystone_missing()
    if reason is not None:
        unavailable(reason)
    work = tmp_path_factory.mktemp("keystone")
    keystone = KeystoneServer(work)
    server: KumonetServer | None = None
    try:
        keystone.start()
        made = provision(keystone, f"http://127.0.0.1:{free_port()}")
        port = int(made.network_url.rsplit(":", 1)[1])
        server = KumonetServer(work, port, made.authtoken_section())
        server.start()
        yield made
    finally:
        code = server.stop() if server is not None else 0
        keystone.stop()
    assert code == 0, (work / "kumonet-server.log").read_text()[-4000:]


def connect(cloud: KeystoneCloud, user: KeystoneUser) -> Any:
    return cloud.keystone.connect(user.auth(cloud.keystone.auth_url))


def call(cloud: KeystoneCloud, method: str, path: str, token: str | None = None,
         body: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
         base: str | None = None) -> tuple[int, dict[str, str], Any]:
    """One raw request to kumonet (the catalog's, or ``base``): status,
    headers, decoded JSON body."""
    sent = dict(headers or {})
    if token is not None:
        sent["X-Auth-Token"] = token
    if body is not None:
        sent["Content-Type"] = "application/json"
    request = urllib.request.Request((base or cloud.network_url) + path, method=method,
                                     headers=sent,
                                     data=json.dumps(body).encode() if body else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw, status, got = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        raw, status, got = error.read(), error.code, dict(error.headers)
    return status, got, json.loads(raw) if raw else None


def test_password_login_finds_kumonet_in_the_catalog(cloud: KeystoneCloud) -> None:
    conn = connect(cloud, cloud.tenants[0])
    assert conn.session.get_endpoint(service_type="network", interface="public") \
        .rstrip("/") == cloud.network_url
    assert isinstance(list(conn.network.networks()), list)
    # the version document stays open, as Neutron's does
    status, _, body = call(cloud, "GET", "/")
    assert status == 200 and body["versions"][0]["id"] == "v2.0"


def test_keystonemiddleware_reads_neutrons_section_without_complaint(
        cloud: KeystoneCloud) -> None:
    log = (cloud.keystone.workdir / "kumonet-server.log").read_text()
    assert "Starting Keystone auth_token middleware" in log
    assert "is not known to keystonemiddleware" not in log


def test_projects_see_only_their_own_resources(cloud: KeystoneCloud) -> None:
    one, two = cloud.tenants
    conn1, conn2 = connect(cloud, one), connect(cloud, two)
    admin = connect(cloud, cloud.admin)
    net = conn1.network.create_network(name="ks-iso-net")
    subnet = conn1.network.create_subnet(network_id=net.id, cidr="10.77.0.0/24",
                                         ip_version=4, name="ks-iso-sub")
    port = conn1.network.create_port(network_id=net.id, name="ks-iso-port")
    # the token's project owns what it makes
    assert net.project_id == one.project_id and port.project_id == one.project_id
    assert net.id in {n.id for n in conn1.network.networks()}
    assert port.id in {p.id for p in conn1.network.ports()}

    mine = {n.id for n in conn2.network.networks()} | {p.id for p in conn2.network.ports()} \
        | {s.id for s in conn2.network.subnets()}
    assert not mine & {net.id, subnet.id, port.id}
    token2 = issue_token(cloud.keystone, two)
    for path in (f"/v2.0/networks/{net.id}", f"/v2.0/subnets/{subnet.id}",
                 f"/v2.0/ports/{port.id}"):
        status, _, body = call(cloud, "GET", path, token2)
        assert status == 404, body
        assert body["NeutronError"]["type"] in ("NetworkNotFound", "SubnetNotFound",
                                                "PortNotFound")
        status, _, _ = call(cloud, "DELETE", path, token2)
        assert status == 404
    status, _, _ = call(cloud, "PUT", f"/v2.0/networks/{net.id}", token2,
                        {"network": {"name": "stolen"}})
    assert status == 404

    # admin sees every project's resources
    assert {net.id, port.id} <= {n.id for n in admin.network.networks()} \
        | {p.id for p in admin.network.ports()}
    assert admin.network.get_port(port.id).project_id == one.project_id
    conn1.network.delete_port(port)
    conn1.network.delete_subnet(subnet)
    conn1.network.delete_network(net)


def test_admin_only_attributes(cloud: KeystoneCloud) -> None:
    member = cloud.tenants[0]
    conn = connect(cloud, member)
    admin = connect(cloud, cloud.admin)
    token = issue_token(cloud.keystone, member)
    status, _, body = call(cloud, "POST", "/v2.0/networks", token, {"network": {
        "name": "ks-provider", "provider:network_type": "vlan",
        "provider:physical_network": "physnet1", "provider:segmentation_id": 150}})
    assert status == 403, body
    assert body["NeutronError"]["type"] in ("PolicyNotAuthorized", "HTTPForbidden")

    provider = admin.network.create_network(
        name="ks-provider", provider_network_type="vlan",
        provider_physical_network="physnet1", provider_segmentation_id=150)
    assert provider.provider_segmentation_id == 150

    net = conn.network.create_network(name="ks-binding-net")
    port = conn.network.create_port(network_id=net.id)
    status, _, body = call(cloud, "PUT", f"/v2.0/ports/{port.id}", token,
                           {"port": {"binding:host_id": "compute1"}})
    assert status == 403, body
    bound = admin.network.update_port(port, binding_host_id="compute1")
    assert bound.binding_host_id == "compute1"
    # the member's reads do not show them
    status, _, body = call(cloud, "GET", f"/v2.0/ports/{port.id}", token)
    assert status == 200 and "binding:host_id" not in body["port"]
    status, _, body = call(cloud, "GET", f"/v2.0/networks/{net.id}", token)
    assert status == 200 and "provider:network_type" not in body["network"]
    admin.network.delete_port(port)
    conn.network.delete_network(net)
    admin.network.delete_network(provider)


@pytest.mark.parametrize("token", [None, "", "not-a-token",
                                   "gAAAAABm" + "A" * 180])
def test_no_or_bad_token_is_401(cloud: KeystoneCloud, token: str | None) -> None:
    status, headers, body = call(cloud, "GET", "/v2.0/networks", token)
    assert status == 401
    assert body == {"error": KEYSTONE_401}
    assert headers["WWW-Authenticate"] == f'Keystone uri="{cloud.keystone.url}"'


def test_revoked_token_is_401(cloud: KeystoneCloud) -> None:
    token = issue_token(cloud.keystone, cloud.tenants[0])
    revoke_token(cloud.keystone, issue_token(cloud.keystone, cloud.admin), token)
    status, _, body = call(cloud, "GET", "/v2.0/networks", token)
    assert status == 401 and body == {"error": KEYSTONE_401}
    # a token issued after it is good
    status, _, _ = call(cloud, "GET", "/v2.0/networks",
                        issue_token(cloud.keystone, cloud.tenants[0]))
    assert status == 200


def test_expired_token_is_401(cloud: KeystoneCloud) -> None:
    """A token past its expiry is refused even though keystonemiddleware
    cached it as valid: Keystone caps a token at its application
    credential's expiry, which makes a token that expires in seconds."""
    user = cloud.tenants[0]
    expires = datetime.now(UTC) + timedelta(seconds=4)
    credential = connect(cloud, user).identity.create_application_credential(
        user=user.user_id, name="ks-short", secret="short-secret",
        expires_at=expires.strftime("%Y-%m-%dT%H:%M:%S.%f"))
    token, token_expiry = application_credential_token(cloud.keystone, credential.id,
                                                       "short-secret")
    status, _, body = call(cloud, "GET", "/v2.0/networks", token)
    assert status == 200, body
    # wait for the expiry (an event, not a timing assertion)
    left = (datetime.fromisoformat(token_expiry.replace("Z", "+00:00"))
            - datetime.now(UTC)).total_seconds()
    assert left < 30
    time.sleep(max(left, 0) + 1)
    status, _, body = call(cloud, "GET", "/v2.0/networks", token)
    assert status == 401 and body == {"error": KEYSTONE_401}


def test_service_token_alongside_a_user_token(cloud: KeystoneCloud) -> None:
    """Nova calls Neutron with the user's token and its own service token
    (X-Service-Token): the user's project decides, a bad service token is 401."""
    user = cloud.tenants[1]
    token = issue_token(cloud.keystone, user)
    service = issue_token(cloud.keystone, cloud.service)
    status, _, body = call(cloud, "POST", "/v2.0/networks", token,
                           {"network": {"name": "ks-via-service"}},
                           headers={"X-Service-Token": service})
    assert status == 201, body
    assert body["network"]["tenant_id"] == user.project_id
    status, _, _ = call(cloud, "DELETE", f"/v2.0/networks/{body['network']['id']}", token,
                        headers={"X-Service-Token": service})
    assert status == 204
    status, _, body = call(cloud, "GET", "/v2.0/networks", token,
                           headers={"X-Service-Token": "not-a-token"})
    assert status == 401 and body == {"error": KEYSTONE_401}


def test_token_cache_in_memcached(cloud: KeystoneCloud, tmp_path: Path) -> None:
    """Neutron's install guide sets ``memcached_servers``: the validated
    tokens go to memcached (shared by a cloud's API servers)."""
    needs(root=False, tools=("memcached",))
    memcached = Memcached()
    server = KumonetServer(tmp_path, free_port(), cloud.authtoken_section()
                           + f"memcached_servers = {memcached.server}\n")
    memcached.start()
    try:
        server.start()
        token = issue_token(cloud.keystone, cloud.tenants[0])
        for _ in range(2):
            status, _, body = call(cloud, "GET", "/v2.0/networks", token, base=server.url)
            assert status == 200, body
        assert memcached.items() > 0
        status, _, body = call(cloud, "GET", "/v2.0/networks", "not-a-token",
                               base=server.url)
        assert status == 401 and body == {"error": KEYSTONE_401}
    finally:
        code = server.stop()
        memcached.stop()
    assert code == 0, server.log.read_text()[-4000:]


def test_identity_headers_cannot_be_forged(cloud: KeystoneCloud) -> None:
    one, two = cloud.tenants
    token = issue_token(cloud.keystone, one)
    forged = {"X-Project-Id": two.project_id, "X-Tenant-Id": two.project_id,
              "X-Roles": "admin", "X-Identity-Status": "Confirmed", "X-User-Id": "x"}
    status, _, body = call(cloud, "POST", "/v2.0/networks", token,
                           {"network": {"name": "ks-forged"}}, headers=forged)
    assert status == 201, body
    net = body["network"]
    assert net["tenant_id"] == one.project_id and "provider:network_type" not in net
    # with no token at all, the headers alone are nothing
    status, _, _ = call(cloud, "GET", "/v2.0/networks", None, headers=forged)
    assert status == 401
    status, _, _ = call(cloud, "DELETE", f"/v2.0/networks/{net['id']}", token)
    assert status == 204


def test_reader_reads_its_project_and_never_writes(cloud: KeystoneCloud) -> None:
    tenant, reader = cloud.tenants[0], cloud.readers[0]
    net = connect(cloud, tenant).network.create_network(name="ks-read")
    listed = {n.id for n in connect(cloud, reader).network.networks()}
    assert net.id in listed
    status, _, body = call(cloud, "GET", f"/v2.0/networks/{net.id}",
                           issue_token(cloud.keystone, cloud.tenants[1]))
    assert status == 404, body
    token = issue_token(cloud.keystone, reader)
    status, _, body = call(cloud, "POST", "/v2.0/networks", token,
                           {"network": {"name": "ks-reader"}})
    assert status == 403, body
    assert body["NeutronError"]["message"] == "rule:create_network is disallowed by policy"
    status, _, body = call(cloud, "DELETE", f"/v2.0/networks/{net.id}", token)
    assert status == 403, body
    # Neutron looks the resource up before its policy: what the reader
    # cannot see, or what does not exist, is a 404
    other = connect(cloud, cloud.tenants[1]).network.create_network(name="ks-read-other")
    for method, path in [("PUT", f"/v2.0/networks/{other.id}"),
                         ("DELETE", f"/v2.0/networks/{other.id}"),
                         ("PUT", "/v2.0/networks/3f1b2b8e-2c4e-4a8e-9d7c-0d5b8e1c2a44"),
                         ("DELETE", "/v2.0/networks/3f1b2b8e-2c4e-4a8e-9d7c-0d5b8e1c2a44")]:
        status, _, body = call(cloud, method, path, token,
                               {"network": {"name": "x"}} if method == "PUT" else None)
        assert status == 404, (method, path, body)
        assert body["NeutronError"]["type"] == "NetworkNotFound"
    status, _, body = call(cloud, "PUT", f"/v2.0/networks/{net.id}", token,
                           {"network": {"name": "x"}})
    assert status == 403, body
    connect(cloud, cloud.tenants[1]).network.delete_network(other)
    connect(cloud, tenant).network.delete_network(net)


def test_nova_service_user_binds_a_tenants_port(cloud: KeystoneCloud) -> None:
    """Neutron 2023.2+: Nova's user with only the ``service`` role (no admin,
    in the service project) binds a tenant's ports and reads the binding,
    as Nova does on a boot; a member still may not."""
    tenant = cloud.tenants[0]
    conn = connect(cloud, tenant)
    nova = connect(cloud, cloud.nova)
    net = conn.network.create_network(name="ks-nova-net")
    subnet = conn.network.create_subnet(network_id=net.id, cidr="10.78.0.0/24",
                                        ip_version=4, name="ks-nova-sub")
    # Nova makes the port with the user's token, then binds it with its own
    port = conn.network.create_port(network_id=net.id, name="ks-nova-port")
    bound = nova.network.update_port(port, binding_host_id="compute1",
                                     binding_profile={}, device_id="vm-1",
                                     device_owner="compute:nova")
    assert bound.binding_host_id == "compute1" and bound.project_id == tenant.project_id
    shown = nova.network.get_port(port.id)
    assert shown.binding_vif_type is not None and shown.device_id == "vm-1"
    assert [p.id for p in nova.network.ports(device_id="vm-1")] == [port.id]
    # ... or creates it bound, for the tenant's project
    token = issue_token(cloud.keystone, cloud.nova)
    status, _, body = call(cloud, "POST", "/v2.0/ports", token, {"port": {
        "network_id": net.id, "project_id": tenant.project_id,
        "binding:host_id": "compute2", "device_id": "vm-2", "device_owner": "compute:nova"}})
    assert status == 201, body
    assert body["port"]["tenant_id"] == tenant.project_id
    assert body["port"]["binding:host_id"] == "compute2" and "binding:vif_type" in body["port"]
    second = body["port"]["id"]
    # the member may not bind, and does not see the binding
    member_token = issue_token(cloud.keystone, tenant)
    status, _, body = call(cloud, "PUT", f"/v2.0/ports/{port.id}", member_token,
                           {"port": {"binding:host_id": "compute9"}})
    assert status == 403, body
    status, _, body = call(cloud, "GET", f"/v2.0/ports/{port.id}", member_token)
    assert status == 200 and "binding:vif_type" not in body["port"]
    # the service role writes ports only
    status, _, body = call(cloud, "POST", "/v2.0/networks", token,
                           {"network": {"name": "ks-nova-own"}})
    assert status == 403, body
    nova.network.delete_port(second)
    nova.network.update_port(port, binding_host_id="", device_id="", device_owner="")
    conn.network.delete_port(port)
    conn.network.delete_subnet(subnet)
    conn.network.delete_network(net)


def test_system_scoped_tokens_are_refused_on_project_resources(cloud: KeystoneCloud) -> None:
    """Neutron's policies are project-scoped: a system-scoped admin token's
    create is 403 InvalidScope, its PUT/DELETE and reads of one resource 404,
    its lists empty (oslo.policy filters every item)."""
    system = issue_system_token(cloud.keystone, cloud.admin)
    net = connect(cloud, cloud.tenants[0]).network.create_network(name="ks-system")
    status, _, body = call(cloud, "POST", "/v2.0/networks", system,
                           {"network": {"name": "ks-system-made"}})
    assert status == 403, body
    assert body["NeutronError"]["type"] == "InvalidScope"
    assert body["NeutronError"]["message"] == (
        "rule:create_network requires a scope of ['project'], request was made with "
        "system scope.")
    for method in ("DELETE", "GET"):
        status, _, body = call(cloud, method, f"/v2.0/networks/{net.id}", system)
        assert status == 404, body
    status, _, body = call(cloud, "GET", "/v2.0/networks", system)
    assert status == 200 and body == {"networks": []}
    # an operator's path takes it
    status, _, body = call(cloud, "GET", "/v1/cluster/status", system)
    assert status == 200 and body["shards"], body
    connect(cloud, cloud.tenants[0]).network.delete_network(net)


JOLOKIA = ("/jolokia/read/org.opendaylight.controller:Category=Shards,"
           "name=member-1-shard-inventory-config,type=DistributedConfigDatastore")


@pytest.mark.parametrize("path", ["/v1/cluster/status", JOLOKIA])
def test_operator_paths_take_odl_credentials_or_an_admin_token(
        cloud: KeystoneCloud, path: str) -> None:
    # the seed's curl, as an operator types it
    out = subprocess.run(["curl", "-s", "-u", "admin:admin", cloud.network_url + path],
                         capture_output=True, text=True, timeout=60, check=True)
    answer = json.loads(out.stdout)
    if path == JOLOKIA:
        assert answer["status"] == 200 and answer["value"]["RaftState"] == "Leader", answer
    else:
        assert answer["shards"], answer
    status, _, _ = call(cloud, "GET", path, issue_token(cloud.keystone, cloud.admin))
    assert status == 200
    status, headers, _ = call(cloud, "GET", path)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Keystone")
    status, _, _ = call(cloud, "GET", path,
                        headers={"Authorization": "Basic YWRtaW46d3Jvbmc="})  # admin:wrong
    assert status == 401
    status, _, body = call(cloud, "GET", path, issue_token(cloud.keystone, cloud.tenants[0]))
    assert status == 403, body


def test_openstack_cli_through_the_catalog(cloud: KeystoneCloud) -> None:
    one, two = cloud.tenants

    def cli(user: KeystoneUser, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update({"OS_AUTH_URL": cloud.keystone.auth_url, "OS_USERNAME": user.name,
                    "OS_PASSWORD": user.password, "OS_PROJECT_NAME": user.project_name,
                    "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
                    "OS_REGION_NAME": "RegionOne", "OS_IDENTITY_API_VERSION": "3",
                    "PYTHONWARNINGS": "ignore"})
        out = subprocess.run([str(VENV_BIN / "openstack"), *args], check=False, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def cli_json(user: KeystoneUser, *args: str) -> Any:
        return json.loads(cli(user, *args, "-f", "json"))

    made = cli_json(one, "network", "create", "ks-cli-net")
    assert made["project_id"] == one.project_id
    assert made["name"] == "ks-cli-net"
    assert "ks-cli-net" in {n["Name"] for n in cli_json(one, "network", "list")}
    assert "ks-cli-net" not in {n["Name"] for n in cli_json(two, "network", "list")}
    shown = cli_json(cloud.admin, "network", "show", made["id"])
    assert shown["provider:network_type"] == "vxlan"
    cli(one, "network", "delete", made["id"])
