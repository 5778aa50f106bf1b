"""Documents, error format, and malformed requests (never a 5xx, never a
partial write)."""

from __future__ import annotations

import random
from typing import Any

import orjson

from tests.api.conftest import Api

P1 = "11111111111111111111111111111111"


async def test_version_and_resources_documents(api: Api) -> None:
    status, body = await api.call("GET", "/")
    assert status == 200
    (version,) = body["versions"]
    assert version["id"] == "v2.0" and version["status"] == "CURRENT"
    assert version["links"][0]["href"].endswith("/v2.0/")
    _, body = await api.call("GET", "/v2.0/")
    names = {r["collection"] for r in body["resources"]}
    assert {"networks", "subnets", "ports"} <= names


async def test_extensions_list_only_real_ones(api: Api) -> None:
    _, body = await api.call("GET", "/v2.0/extensions")
    aliases = {e["alias"] for e in body["extensions"]}
    assert {"provider", "external-net", "binding", "port-security", "net-mtu"} <= aliases
    assert "qos" not in aliases and "trunk" not in aliases
    status, body = await api.call("GET", "/v2.0/extensions/provider")
    assert status == 200 and body["extension"]["alias"] == "provider"
    status, _ = await api.call("GET", "/v2.0/extensions/qos")
    assert status == 404


async def _snapshot(api: Api) -> dict[str, Any]:
    out = {}
    for collection in ("networks", "subnets", "ports"):
        _, body = await api.call("GET", f"/v2.0/{collection}")
        out[collection] = body[collection]
    return out


def _is_neutron_error(body: Any) -> bool:
    return isinstance(body, dict) and set(body) == {"NeutronError"} and \
        set(body["NeutronError"]) == {"type", "message", "detail"}


async def test_malformed_requests_are_4xx_and_write_nothing(api: Api) -> None:
    net = await api.create("networks", "network", project=P1)
    sub = await api.create("subnets", "subnet", project=P1, network_id=net["id"],
                           ip_version=4, cidr="10.0.0.0/24")
    before = await _snapshot(api)
    cases: list[tuple[str, str, Any, bytes | None, int]] = [
        ("POST", "/v2.0/networks", None, b"{not json", 400),
        ("POST", "/v2.0/networks", None, b"", 400),
        ("POST", "/v2.0/networks", None, b"[]", 400),
        ("POST", "/v2.0/networks", {"network": {"bogus": 1}}, None, 400),
        ("POST", "/v2.0/networks", {"network": {"admin_state_up": "maybe"}}, None, 400),
        ("POST", "/v2.0/networks", {"network": {"name": 5}}, None, 400),
        ("POST", "/v2.0/networks", {"network": {"name": "x" * 300}}, None, 400),
        ("POST", "/v2.0/networks", {"network": "x"}, None, 400),
        ("POST", "/v2.0/networks", {"networks": [{"name": "a"}, {"bogus": 1}]}, None, 400),
        ("POST", "/v2.0/networks", {"network": {"name": "a"}, "extra": {}}, None, 400),
        ("POST", "/v2.0/subnets", {"subnet": {"network_id": net["id"], "ip_version": 4,
                                              "cidr": "10.1.0.0/240"}}, None, 400),
        ("POST", "/v2.0/subnets", {"subnet": {"network_id": "not-a-uuid", "ip_version": 4,
                                              "cidr": "10.1.0.0/24"}}, None, 400),
        ("POST", "/v2.0/subnets", {"subnet": {"network_id": net["id"], "ip_version": 5,
                                              "cidr": "10.1.0.0/24"}}, None, 400),
        ("POST", "/v2.0/ports", {"port": {"network_id": net["id"], "fixed_ips": [
            {"subnet_id": sub["id"], "ip_address": "10.5.0.1"}]}}, None, 400),
        ("POST", "/v2.0/ports", {"port": {"network_id": net["id"], "fixed_ips": "x"}},
         None, 400),
        ("POST", "/v2.0/ports", {"port": {"network_id": net["id"],
                                          "fixed_ips": [{"ip_address": "10.0.0.5"},
                                                        {"ip_address": "10.0.0.500"}]}},
         None, 400),
        ("POST", "/v2.0/ports", {"port": {}}, None, 400),
        ("GET", "/v2.0/networks/not-a-uuid", None, None, 404),
        ("GET", "/v2.0/networks?limit=-5", None, None, 400),
        ("GET", "/v2.0/nothing", None, None, 404),
        ("PATCH", "/v2.0/networks", None, None, 405),
        ("PUT", f"/v2.0/networks/{net['id']}", {"network": {"mtu": "big"}}, None, 400),
        ("PUT", f"/v2.0/networks/{net['id']}", {"network": {}}, None, 200),
        ("PUT", f"/v2.0/networks/{net['id']}", None, None, 400),
        ("PUT", f"/v2.0/ports/{net['id']}", {"port": {"name": "x"}}, None, 404),
        ("POST", "/v2.0/networks", None, b'{"network": {"name": "' + b"x" * 200_000 + b'"}}',
         413),
    ]
    for method, path, body, raw, expected in cases:
        status, answer = await api.call(method, path, body, raw=raw, project=P1)
        assert status == expected, (method, path, body, answer)
        if status >= 400:
            assert _is_neutron_error(answer), answer
    after = await _snapshot(api)
    for collection in ("subnets", "ports"):
        assert after[collection] == before[collection]
    assert [n["id"] for n in after["networks"]] == [n["id"] for n in before["networks"]]


async def test_garbage_never_gets_a_5xx(api: Api) -> None:
    net = await api.create("networks", "network", project=P1)
    sub = await api.create("subnets", "subnet", project=P1, network_id=net["id"],
                           ip_version=4, cidr="10.0.0.0/28")
    rng = random.Random(7)
    port = await api.create("ports", "port", project=P1, network_id=net["id"])
    paths = ["/", "/v2.0/", "/v2.0/networks", f"/v2.0/networks/{net['id']}",
             "/v2.0/subnets", "/v2.0/ports", f"/v2.0/subnets/{sub['id']}",
             f"/v2.0/ports/{port['id']}", "/v2.0/subnets", "/v2.0/ports",
             f"/v2.0/networks/{net['id']}/tags",
             "/v2.0/networks/%00", "/v2.0/ports?fixed_ips=x", "/v2.0/ports?sort_key=",
             "/v2.0/networks?fields=&limit=0&marker=", "/v2.0/extensions/%ff"]
    values: list[Any] = [None, 0, -1, 1.5, "", "x", [], {}, [{}], {"a": 1}, True,
                         "10.0.0.0/24", "::", "fa:16:3e:00:00:00", [None], "2" * 40, 4, 6,
                         "10.0.0.5", [{"subnet_id": sub["id"]}], [{"ip_address": "10.0.0.3"}],
                         [{"start": "10.0.0.2", "end": "10.0.0.9"}], sub["id"], net["id"],
                         [{"destination": "0.0.0.0/0", "nexthop": "10.0.0.1"}],
                         [{"ip_address": "10.0.0.0/24"}], {"k": "v"}, "vxlan", "flat"]
    members = ["network", "subnet", "port", "networks", "tags"]
    attrs = ["name", "network_id", "cidr", "ip_version", "fixed_ips", "mac_address",
             "allocation_pools", "gateway_ip", "admin_state_up", "host_routes", "tags",
             "security_groups", "allowed_address_pairs", "binding:profile", "shared",
             "provider:segmentation_id", "provider:network_type", "tenant_id", "id",
             "subnet_id", "ip_address", "dns_nameservers", "enable_dhcp", "port_security_enabled",
             "ipv6_address_mode", "device_owner", "description", "mtu"]
    for _ in range(400):
        path = rng.choice(paths)
        is_member = path.count("/") >= 3
        roll = rng.random()
        if roll < 0.05:
            method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
        elif is_member:
            method = "PUT" if roll < 0.6 else "GET" if roll < 0.97 else "DELETE"
        else:
            method = "POST" if roll < 0.7 else "GET"
        choice = rng.random()
        raw: bytes | None
        if choice < 0.2:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        elif choice < 0.3:
            raw = orjson.dumps(rng.choice(values))
        else:
            inner = {rng.choice(attrs): rng.choice(values) for _ in range(rng.randrange(6))}
            if rng.random() < 0.5:
                inner["network_id"] = net["id"]
            collection = path.split("?")[0].split("/")[2] if path.count("/") >= 2 else ""
            member = collection[:-1] if collection in ("networks", "subnets", "ports") \
                and rng.random() < 0.7 else rng.choice(members)
            raw = orjson.dumps({member: inner})
        status, body = await api.call(method, path, raw=raw,
                                      project=rng.choice([P1, None]))
        # 503 NoNetworkAvailable is Neutron's answer once the segment
        # ranges of the test configuration are used up.
        assert status < 500 or body["NeutronError"]["type"] == "NoNetworkAvailable", \
            (method, path, raw, body)
        if status >= 400:
            assert _is_neutron_error(body), body


async def test_resources_document_is_neutrons(api: Api) -> None:
    # Neutron lists the core plugin's collections only; "/v2.0" (no slash) is 404.
    _, body = await api.call("GET", "/v2.0/")
    assert {r["collection"] for r in body["resources"]} == {"networks", "subnets", "ports"}
    status, _ = await api.call("GET", "/v2.0")
    assert status == 404


async def test_extensions_listed_for_the_keys_shown(api: Api) -> None:
    _, body = await api.call("GET", "/v2.0/extensions")
    aliases = {e["alias"] for e in body["extensions"]}
    assert {"fip-port-details", "subnet-external-network", "security-groups-normalized-cidr",
            "security-groups-rules-belongs-to-default-sg"} <= aliases


async def test_put_and_delete_on_a_collection_are_a_missing_member(api: Api) -> None:
    for method in ("PUT", "DELETE"):
        status, body = await api.call(method, "/v2.0/networks", {"network": {}})
        assert (status, body["NeutronError"]["type"]) == (404, "NetworkNotFound")
        assert body["NeutronError"]["message"] == "Network None could not be found."


async def test_if_match_other_than_a_revision_is_ignored(api: Api) -> None:
    net = await api.create("networks", "network", project=P1)
    path = f"/v2.0/networks/{net['id']}"
    status, _ = await api.call("PUT", path, {"network": {"name": "x"}}, project=P1,
                               headers={"If-Match": '"some-etag"'})
    assert status == 200
    status, body = await api.call("PUT", path, {"network": {"name": "y"}}, project=P1,
                                  headers={"If-Match": "revision_number=1"})
    assert (status, body["NeutronError"]["type"]) == (412, "RevisionNumberConstraintFailed")


async def test_wrong_types_answer_neutrons_error_types(api: Api) -> None:
    net = await api.create("networks", "network", project=P1)
    cases = [("PUT", f"/v2.0/networks/{net['id']}", {"network": {"mtu": "x"}}, "InvalidInput"),
             ("POST", "/v2.0/networks", {"network": {"admin_state_up": "maybe"}},
              "InvalidInput"),
             ("POST", "/v2.0/networks", {"network": {"name": 5}}, "HTTPBadRequest")]
    for method, path, body, kind in cases:
        status, answer = await api.call(method, path, body, project=P1)
        assert (status, answer["NeutronError"]["type"]) == (400, kind), body
    status, answer = await api.call("POST", "/v2.0/networks",
                                    {"network": {"admin_state_up": "yes"}}, project=P1)
    assert status == 201 and answer["network"]["admin_state_up"] is True
