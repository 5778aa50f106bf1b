from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from kumonet.api.auth import NoAuth
from kumonet.api.config import ServerConfig
from kumonet.api.main import make_app
from kumonet.model.security_group import default_group_id
from kumonet.store.url import open_store
from tests.api.conftest import Api

P1 = "11111111111111111111111111111111"
P2 = "22222222222222222222222222222222"
SG = "/v2.0/security-groups"
RULES = "/v2.0/security-group-rules"


async def _groups(api: Api, project: str | None) -> list[dict[str, Any]]:
    status, body = await api.call("GET", SG, project=project)
    assert status == 200, body
    groups: list[dict[str, Any]] = body["security_groups"]
    return groups


async def _group(api: Api, project: str | None = P1, **attrs: Any) -> dict[str, Any]:
    status, body = await api.call("POST", SG, {"security_group": attrs}, project=project)
    assert status == 201, body
    group: dict[str, Any] = body["security_group"]
    return group


async def _rule(api: Api, group_id: str, project: str | None = P1, **attrs: Any
                ) -> tuple[int, Any]:
    return await api.call("POST", RULES, {"security_group_rule": {
        "security_group_id": group_id, "direction": "ingress", **attrs}}, project=project)


async def test_default_group_created_on_first_list_with_neutron_rules(api: Api) -> None:
    (group,) = await _groups(api, P1)
    assert group["id"] == default_group_id(P1)
    assert group["name"] == "default" and group["description"] == "Default security group"
    assert group["tenant_id"] == group["project_id"] == P1 and group["stateful"] is True
    rules = {(r["direction"], r["ethertype"], r["remote_group_id"], r["remote_ip_prefix"],
              r["protocol"]) for r in group["security_group_rules"]}
    assert rules == {("egress", "IPv4", None, None, None), ("egress", "IPv6", None, None, None),
                     ("ingress", "IPv4", group["id"], None, None),
                     ("ingress", "IPv6", group["id"], None, None)}
    assert all(r["belongs_to_default_sg"] for r in group["security_group_rules"])
    # Listed again: still one; the rules are also their own resources.
    assert [g["id"] for g in await _groups(api, P1)] == [group["id"]]
    status, body = await api.call("GET", RULES, project=P1)
    assert status == 200 and len(body["security_group_rules"]) == 4
    # Another project sees only its own default.
    (other,) = await _groups(api, P2)
    assert other["id"] != group["id"]
    status, _ = await api.call("GET", f"{SG}/{group['id']}", project=P2)
    assert status == 404


async def test_port_gets_the_default_group_and_requested_ones_are_checked(api: Api) -> None:
    net = await api.create("networks", "network", project=P1)
    await api.create("subnets", "subnet", project=P1, network_id=net["id"], ip_version=4,
                     cidr="10.0.0.0/24")
    port = await api.create("ports", "port", project=P1, network_id=net["id"])
    assert port["security_groups"] == [default_group_id(P1)]
    web = await _group(api, name="web")
    assert {r["direction"] for r in web["security_group_rules"]} == {"egress"}
    port2 = await api.create("ports", "port", project=P1, network_id=net["id"],
                             security_groups=[web["id"]])
    assert port2["security_groups"] == [web["id"]]
    insecure = await api.create("ports", "port", project=P1, network_id=net["id"],
                                port_security_enabled=False)
    assert insecure["security_groups"] == []
    p2_default = (await _groups(api, P2))[0]["id"]
    for groups, status, kind in (([p2_default], 404, "SecurityGroupNotFound"),
                                 (["not-a-uuid"], 400, "HTTPBadRequest")):
        got, body = await api.call("POST", "/v2.0/ports", {"port": {
            "network_id": net["id"], "security_groups": groups}}, project=P1)
        assert (got, body["NeutronError"]["type"]) == (status, kind)
    # Updates: groups replaced; port security off with groups is refused.
    status, body = await api.call("PUT", f"/v2.0/ports/{port['id']}",
                                  {"port": {"security_groups": [web["id"]]}}, project=P1)
    assert status == 200 and body["port"]["security_groups"] == [web["id"]]
    status, body = await api.call("PUT", f"/v2.0/ports/{port['id']}",
                                  {"port": {"port_security_enabled": False}}, project=P1)
    assert (status, body["NeutronError"]["type"]) == (409, "PortSecurityPortHasSecurityGroup")
    status, body = await api.call("PUT", f"/v2.0/ports/{port['id']}", {"port": {
        "port_security_enabled": False, "security_groups": []}}, project=P1)
    assert status == 200 and body["port"]["security_groups"] == []
    # In use by a port: 409; once free it goes, with its rules.
    status, body = await api.call("DELETE", f"{SG}/{web['id']}", project=P1)
    assert (status, body["NeutronError"]["type"]) == (409, "SecurityGroupInUse")
    status, _ = await api.call("DELETE", f"/v2.0/ports/{port2['id']}", project=P1)
    assert status == 204
    status, _ = await api.call("DELETE", f"{SG}/{web['id']}", project=P1)
    assert status == 204
    _, body = await api.call("GET", RULES, project=P1)
    assert all(r["security_group_id"] != web["id"] for r in body["security_group_rules"])


async def test_rule_create_and_validation(api: Api) -> None:
    group = (await _groups(api, P1))[0]
    gid = group["id"]
    status, body = await _rule(api, gid, protocol="tcp", port_range_min=22, port_range_max=22,
                               remote_ip_prefix="0.0.0.0/0")
    assert status == 201, body
    ssh = body["security_group_rule"]
    assert ssh["ethertype"] == "IPv4" and ssh["protocol"] == "tcp"
    assert ssh["tenant_id"] == P1 and ssh["normalized_cidr"] == "0.0.0.0/0"
    status, body = await _rule(api, gid, protocol="icmp")
    assert status == 201 and body["security_group_rule"]["port_range_min"] is None
    status, body = await _rule(api, gid, protocol="icmp", port_range_min=8, port_range_max=0,
                               remote_ip_prefix="10.0.0.0/8")
    assert status == 201
    status, body = await _rule(api, gid, protocol="6", port_range_min=80, port_range_max=81,
                               ethertype="IPv6", remote_ip_prefix="2001:db8::/32")
    assert status == 201 and body["security_group_rule"]["protocol"] == "6"
    status, body = await _rule(api, gid, protocol="ipv6-icmp", ethertype="IPv6")
    assert status == 201
    status, body = await _rule(api, gid, protocol="any", ethertype="IPv4",
                               remote_ip_prefix="192.168.0.7/24")
    assert status == 201
    assert body["security_group_rule"]["protocol"] is None
    assert body["security_group_rule"]["remote_ip_prefix"] == "192.168.0.0/24"
    # The group embeds its rules, and its revision moved with them.
    _, shown = await api.call("GET", f"{SG}/{gid}", project=P1)
    assert ssh["id"] in {r["id"] for r in shown["security_group"]["security_group_rules"]}
    assert shown["security_group"]["revision_number"] > group["revision_number"]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
          "remote_ip_prefix": "0.0.0.0/0"}, 409, "SecurityGroupRuleExists"),
        # tcp 22 from no prefix is the same as from 0.0.0.0/0
        ({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22}, 409,
         "SecurityGroupRuleExists"),
        ({"protocol": "icmpv6", "ethertype": "IPv6"}, 409, "SecurityGroupRuleExists"),
        ({"protocol": "bogus"}, 400, "SecurityGroupRuleInvalidProtocol"),
        ({"protocol": 256}, 400, "SecurityGroupRuleInvalidProtocol"),
        ({"protocol": "tcp", "port_range_min": 30, "port_range_max": 20}, 400,
         "SecurityGroupInvalidPortRange"),
        ({"protocol": "tcp", "port_range_min": 0, "port_range_max": 20}, 400,
         "SecurityGroupInvalidPortValue"),
        ({"protocol": "udp", "port_range_min": 1, "port_range_max": 65536}, 400,
         "SecurityGroupInvalidPortValue"),
        ({"protocol": "tcp", "port_range_min": 5}, 400, "SecurityGroupInvalidPortRange"),
        ({"port_range_min": 22, "port_range_max": 22}, 400,
         "SecurityGroupProtocolRequiredWithPorts"),
        ({"protocol": "icmp", "port_range_min": 256}, 400, "SecurityGroupInvalidIcmpValue"),
        ({"protocol": "icmp", "port_range_max": 3}, 400, "SecurityGroupMissingIcmpType"),
        ({"protocol": "gre", "port_range_min": 1, "port_range_max": 2}, 400,
         "SecurityGroupInvalidProtocolForPortRange"),
        ({"protocol": "icmpv6", "ethertype": "IPv4"}, 400,
         "SecurityGroupEthertypeConflictWithProtocol"),
        ({"ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"}, 400,
         "SecurityGroupRuleParameterConflict"),
        ({"ethertype": "IPv5"}, 400, "SecurityGroupRuleInvalidEtherType"),
        ({"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": gid}, 400,
         "SecurityGroupMultipleRemoteEntites"),
        ({"remote_ip_prefix": "nonsense"}, 400, "HTTPBadRequest"),
        ({"remote_group_id": "3f1c58a6-8a6b-4c0e-9a57-0e4f0e0e0e0e"}, 404,
         "SecurityGroupNotFound"),
        ({"direction": "sideways"}, 400, "HTTPBadRequest"),
        ({"port_range_min": "abc", "protocol": "tcp"}, 400, "SecurityGroupInvalidPortValue"),
    ]
    for attrs, status, kind in cases:
        got, body = await _rule(api, gid, **attrs)
        assert (got, body["NeutronError"]["type"]) == (status, kind), attrs
    got, body = await _rule(api, "3f1c58a6-8a6b-4c0e-9a57-0e4f0e0e0e0e")
    assert (got, body["NeutronError"]["type"]) == (404, "SecurityGroupNotFound")
    # Another project cannot add rules to P1's group.
    got, body = await _rule(api, gid, project=P2, protocol="udp")
    assert got == 404
    # Tags on a rule show in the group's copy too.
    status, _ = await api.call("PUT", f"{RULES}/{ssh['id']}/tags/ssh", project=P1)
    assert status == 201
    _, shown = await api.call("GET", f"{SG}/{gid}", project=P1)
    (copy,) = [r for r in shown["security_group"]["security_group_rules"]
               if r["id"] == ssh["id"]]
    assert copy["tags"] == ["ssh"]
    # Delete a rule: gone from the group too.
    status, _ = await api.call("DELETE", f"{RULES}/{ssh['id']}", project=P1)
    assert status == 204
    _, shown = await api.call("GET", f"{SG}/{gid}", project=P1)
    assert ssh["id"] not in {r["id"] for r in shown["security_group"]["security_group_rules"]}
    status, body = await api.call("GET", f"{RULES}/{ssh['id']}", project=P1)
    assert (status, body["NeutronError"]["type"]) == (404, "SecurityGroupRuleNotFound")


async def test_group_update_delete_policy(api: Api) -> None:
    default = (await _groups(api, P1))[0]
    path = f"{SG}/{default['id']}"
    status, body = await api.call("DELETE", path, project=P1)
    assert (status, body["NeutronError"]["type"]) == (409, "SecurityGroupCannotRemoveDefault")
    status, body = await api.call("PUT", path, {"security_group": {"name": "x"}}, project=P1)
    assert (status, body["NeutronError"]["type"]) == (409, "SecurityGroupCannotUpdateDefault")
    status, body = await api.call("PUT", path, {"security_group": {"description": "d"}},
                                  project=P1)
    assert status == 200 and body["security_group"]["description"] == "d"
    status, body = await api.call("POST", SG, {"security_group": {"name": "default"}},
                                  project=P1)
    assert (status, body["NeutronError"]["type"]) == (409, "SecurityGroupDefaultAlreadyExists")
    web = await _group(api, name="web", stateful=False)
    assert web["stateful"] is False
    status, body = await api.call("PUT", f"{SG}/{web['id']}",
                                  {"security_group": {"name": "default"}}, project=P1)
    assert status == 409
    # A rule of web naming the default group as remote goes when the
    # default group is deleted (by an admin, who may).
    status, body = await _rule(api, web["id"], remote_group_id=default["id"])
    assert status == 201
    remote_rule = body["security_group_rule"]["id"]
    status, _ = await api.call("PUT", f"{SG}/{web['id']}",
                               {"security_group": {"name": "web2"}}, project=P2)
    assert status == 404
    status, _ = await api.call("DELETE", path)
    assert status == 204
    _, body = await api.call("GET", f"{SG}/{web['id']}", project=P1)
    assert remote_rule not in {r["id"] for r in body["security_group"]["security_group_rules"]}
    status, _ = await api.call("GET", f"{RULES}/{remote_rule}")
    assert status == 404
    # Listing again recreates the project's default.
    assert "default" in {g["name"] for g in await _groups(api, P1)}


async def test_concurrent_default_creation_on_two_servers_makes_one_group(
        tmp_path: Path, server_config: ServerConfig) -> None:
    # Two apps (two servers: nothing shared in process) on one store.
    store = await open_store(f"sqlite:///{tmp_path}/shared.db")
    clients: list[TestClient[Any, Any]] = []
    try:
        for _ in range(2):
            client: TestClient[Any, Any] = TestClient(TestServer(
                make_app(store, server_config, NoAuth()), host="127.0.0.1"))
            await client.start_server()
            clients.append(client)
        one, two = Api(clients[0]), Api(clients[1])
        for n in range(8):
            project = f"{n:032x}"
            net = await one.create("networks", "network", project=project)
            # Listing groups and creating ports, on both servers at once.
            results = await asyncio.gather(
                *[api.call("GET", SG, project=project) for api in (one, two) for _ in range(3)],
                *[api.call("POST", "/v2.0/ports", {"port": {"network_id": net["id"]}},
                           project=project) for api in (one, two)])
            assert all(status in (200, 201) for status, _ in results), results
            _, body = await one.call("GET", f"{SG}?tenant_id={project}")
            (group,) = body["security_groups"]
            assert group["id"] == default_group_id(project)
            for _, answer in results[-2:]:
                assert answer["port"]["security_groups"] == [group["id"]]
            _, rules = await one.call("GET", f"{RULES}?security_group_id={group['id']}")
            assert len(rules["security_group_rules"]) == 4
    finally:
        for client in clients:
            await client.close()
        await store.close()


async def test_concurrent_rule_adds_keep_group_and_rules_consistent(api: Api) -> None:
    gid = (await _groups(api, P1))[0]["id"]
    results = await asyncio.gather(*[
        _rule(api, gid, protocol="tcp", port_range_min=1000 + i, port_range_max=1000 + i)
        for i in range(10)], *[_rule(api, gid, protocol="udp", port_range_min=53,
                                     port_range_max=53) for _ in range(4)])
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 11 + [409] * 3
    _, group = await api.call("GET", f"{SG}/{gid}", project=P1)
    _, rules = await api.call("GET", f"{RULES}?security_group_id={gid}", project=P1)
    assert {r["id"] for r in group["security_group"]["security_group_rules"]} == \
        {r["id"] for r in rules["security_group_rules"]}
    assert len(rules["security_group_rules"]) == 4 + 11


async def test_rules_as_neutron_shows_them(api: Api) -> None:
    group = await _group(api, name="web")
    for rule in group["security_group_rules"]:
        # Made by the server: no description, no prefix so no normalized CIDR.
        assert rule["description"] is None and rule["normalized_cidr"] is None
        assert rule["revision_number"] == 0
    status, body = await api.call("POST", RULES, {"security_group_rule": {
        "security_group_id": group["id"], "direction": "ingress", "protocol": "icmp"}},
        project=P1)
    assert status == 201
    rule = body["security_group_rule"]
    assert rule["normalized_cidr"] is None and rule["revision_number"] == 0
    assert "tags" not in rule  # Neutron's rules are not taggable
    status, body = await api.call("POST", RULES, {"security_group_rule": {
        "security_group_id": group["id"], "direction": "ingress",
        "remote_ip_prefix": "10.1.2.3/8"}}, project=P1)
    assert body["security_group_rule"]["normalized_cidr"] == "10.0.0.0/8"
    # A rule with no prefix still duplicates one for all addresses.
    status, body = await api.call("POST", RULES, {"security_group_rule": {
        "security_group_id": group["id"], "direction": "ingress", "protocol": "icmp",
        "remote_ip_prefix": "0.0.0.0/0"}}, project=P1)
    assert (status, body["NeutronError"]["type"]) == (409, "SecurityGroupRuleExists")
    status, body = await api.call("GET", f"{RULES}/00000000-0000-4000-8000-000000000000",
                                  project=P1)
    assert (status, body["NeutronError"]["type"]) == (404, "SecurityGroupRuleNotFound")
