from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from kumonet.api.auth import NoAuth
from kumonet.api.config import ServerConfig
from kumonet.api.main import make_app
from kumonet.store.url import open_store
from tests.api.conftest import Api

P1 = "11111111111111111111111111111111"
P2 = "22222222222222222222222222222222"


async def _net_subnet(api: Api, cidr: str = "10.0.0.0/24", **sub: Any
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    net = await api.create("networks", "network", project=P1)
    subnet = await api.create("subnets", "subnet", project=P1, network_id=net["id"],
                              ip_version=4, cidr=cidr, **sub)
    return net, subnet


async def test_port_defaults(api: Api) -> None:
    net, sub = await _net_subnet(api)
    port = await api.create("ports", "port", project=P1, network_id=net["id"], name="p")
    assert port["mac_address"].startswith("fa:16:3e:")
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.0.0.2"}]
    assert port["status"] == "DOWN" and port["admin_state_up"] is True
    assert port["port_security_enabled"] is True and len(port["security_groups"]) == 1
    assert port["binding:vnic_type"] == "normal"
    assert "binding:host_id" not in port and "binding:vif_type" not in port
    _, body = await api.call("GET", f"/v2.0/ports/{port['id']}")
    assert body["port"]["binding:vif_type"] == "unbound"
    assert body["port"]["binding:host_id"] == ""
    status, body = await api.call("POST", "/v2.0/ports", {"port": {
        "network_id": net["id"], "binding:host_id": "h1"}}, project=P1)
    assert status == 403
    status, body = await api.call("PUT", f"/v2.0/ports/{port['id']}",
                                  {"port": {"binding:host_id": "h1"}})
    assert status == 200 and body["port"]["binding:host_id"] == "h1"
    port2 = await api.create("ports", "port", project=P1, network_id=net["id"])
    assert port2["fixed_ips"][0]["ip_address"] == "10.0.0.3"


async def test_requested_addresses_and_macs(api: Api) -> None:
    net, sub = await _net_subnet(api)
    other_net, other_sub = await _net_subnet(api, "10.9.0.0/24")
    port = await api.create("ports", "port", project=P1, network_id=net["id"],
                            mac_address="fa:16:3e:00:00:01",
                            fixed_ips=[{"ip_address": "10.0.0.77"}])
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.0.0.77"}]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"fixed_ips": [{"ip_address": "10.0.0.77"}]}, 409, "IpAddressAlreadyAllocated"),
        ({"mac_address": "fa:16:3e:00:00:01"}, 409, "MacAddressInUse"),
        ({"fixed_ips": [{"ip_address": "10.1.0.5"}]}, 400, "InvalidIpForNetwork"),
        ({"fixed_ips": [{"subnet_id": sub["id"], "ip_address": "10.0.0.255"}]}, 400,
         "InvalidIpForSubnet"),
        ({"fixed_ips": [{"subnet_id": other_sub["id"]}]}, 400, "InvalidInput"),
        ({"fixed_ips": [{"ip_address": "nonsense"}]}, 400, "HTTPBadRequest"),
        ({"mac_address": "01:00:00:00:00:00"}, 400, "HTTPBadRequest"),
        ({"port_security_enabled": False, "security_groups": [sub["id"]]}, 400,
         "PortSecurityAndIPRequiredForSecurityGroups"),
    ]
    for extra, status, kind in cases:
        got, body = await api.call("POST", "/v2.0/ports",
                                   {"port": {"network_id": net["id"], **extra}}, project=P1)
        assert (got, body["NeutronError"]["type"]) == (status, kind), extra
    _, body = await api.call("GET", "/v2.0/ports", project=P1)
    assert len(body["ports"]) == 1
    assert other_net["id"] != net["id"]


async def test_update_fixed_ips(api: Api) -> None:
    net, sub = await _net_subnet(api)
    port = await api.create("ports", "port", project=P1, network_id=net["id"])
    path = f"/v2.0/ports/{port['id']}"
    status, body = await api.call("PUT", path, {"port": {"fixed_ips": [
        {"subnet_id": sub["id"]}, {"ip_address": "10.0.0.9"}]}}, project=P1)
    assert status == 200, body
    assert [ip["ip_address"] for ip in body["port"]["fixed_ips"]] == ["10.0.0.2", "10.0.0.9"]
    status, body = await api.call("PUT", path, {"port": {"fixed_ips": [
        {"ip_address": "10.0.0.9"}]}}, project=P1)
    assert [ip["ip_address"] for ip in body["port"]["fixed_ips"]] == ["10.0.0.9"]
    other = await api.create("ports", "port", project=P1, network_id=net["id"])
    assert other["fixed_ips"][0]["ip_address"] == "10.0.0.2"
    status, body = await api.call("PUT", path, {"port": {"fixed_ips": [
        {"ip_address": "10.0.0.2"}]}}, project=P1)
    assert status == 409 and body["NeutronError"]["type"] == "IpAddressAlreadyAllocated"


async def test_cross_project_port_is_404(api: Api) -> None:
    net, _ = await _net_subnet(api)
    port = await api.create("ports", "port", project=P1, network_id=net["id"])
    status, _ = await api.call("GET", f"/v2.0/ports/{port['id']}", project=P2)
    assert status == 404
    status, body = await api.call("POST", "/v2.0/ports", {"port": {"network_id": net["id"]}},
                                  project=P2)
    assert status == 404 and body["NeutronError"]["type"] == "NetworkNotFound"


async def _create_many(clients: list[Api], network_id: str, total: int
                       ) -> list[tuple[int, Any]]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    results: list[tuple[int, Any]] = []

    async def worker(api: Api) -> None:
        while True:
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            results.append(await api.call("POST", "/v2.0/ports",
                                          {"port": {"network_id": network_id}}, project=P1))

    await asyncio.gather(*(worker(clients[i % len(clients)]) for i in range(8)))
    return results


def _check_unique(results: list[tuple[int, Any]], pool_size: int) -> None:
    created = [b["port"] for s, b in results if s == 201]
    refused = [(s, b["NeutronError"]["type"]) for s, b in results if s != 201]
    assert len(created) == pool_size
    assert set(refused) == {(409, "IpAddressGenerationFailure")}
    ips = [p["fixed_ips"][0]["ip_address"] for p in created]
    macs = [p["mac_address"] for p in created]
    assert len(set(ips)) == len(ips) == pool_size
    assert len(set(macs)) == len(macs)


async def test_eight_clients_500_ports_on_a_24(api: Api) -> None:
    net, _ = await _net_subnet(api)
    results = await _create_many([api], net["id"], 500)
    _check_unique(results, 253)
    _, body = await api.call("GET", "/v2.0/ports", project=P1)
    assert len(body["ports"]) == 253


async def test_two_servers_on_one_store_never_double_allocate(
        tmp_path: Path, server_config: ServerConfig) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/shared.db")
    clients = []
    try:
        for _ in range(2):
            client: TestClient[Any, Any] = TestClient(TestServer(
                make_app(store, server_config, NoAuth()), host="127.0.0.1"))
            await client.start_server()
            clients.append(Api(client))
        net, _ = await _net_subnet(clients[0], "10.0.0.0/25")
        results = await _create_many(clients, net["id"], 200)
        _check_unique(results, 125)
        # A port deleted through one server frees its address for the other.
        _, body = await clients[0].call("GET", "/v2.0/ports?fixed_ips=ip_address=10.0.0.7",
                                        project=P1)
        (victim,) = body["ports"]
        status, _ = await clients[0].call("DELETE", f"/v2.0/ports/{victim['id']}", project=P1)
        assert status == 204
        again = await clients[0].create("ports", "port", project=P1, network_id=net["id"])
        assert again["fixed_ips"][0]["ip_address"] == "10.0.0.7"
    finally:
        for api in clients:
            await api.client.close()
        await store.close()


async def test_address_freed_by_another_server_is_found_when_pool_looks_full(
        tmp_path: Path, server_config: ServerConfig) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/shared.db")
    clients = []
    try:
        for _ in range(2):
            client: TestClient[Any, Any] = TestClient(TestServer(
                make_app(store, server_config, NoAuth()), host="127.0.0.1"))
            await client.start_server()
            clients.append(Api(client))
        a, b = clients
        net, _ = await _net_subnet(a, "10.0.0.0/29")  # 5 addresses after the gateway
        ports = [await a.create("ports", "port", project=P1, network_id=net["id"])
                 for _ in range(5)]
        status, _ = await b.call("DELETE", f"/v2.0/ports/{ports[2]['id']}", project=P1)
        assert status == 204
        again = await a.create("ports", "port", project=P1, network_id=net["id"])
        assert again["fixed_ips"][0]["ip_address"] == ports[2]["fixed_ips"][0]["ip_address"]
        status, body = await a.call("POST", "/v2.0/ports", {"port": {"network_id": net["id"]}},
                                    project=P1)
        assert status == 409 and body["NeutronError"]["type"] == "IpAddressGenerationFailure"
    finally:
        for api in clients:
            await api.client.close()
        await store.close()


async def test_bulk_create_is_all_or_nothing(api: Api) -> None:
    net, _ = await _net_subnet(api)
    status, body = await api.call("POST", "/v2.0/ports", {"ports": [
        {"network_id": net["id"], "name": "a"},
        {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.0.0.2"}]}]}, project=P1)
    assert status == 409, body
    _, body = await api.call("GET", "/v2.0/ports", project=P1)
    assert body["ports"] == []
    status, body = await api.call("POST", "/v2.0/ports", {"ports": [
        {"network_id": net["id"], "name": "a"}, {"network_id": net["id"], "name": "b"}]},
        project=P1)
    assert status == 201 and [p["name"] for p in body["ports"]] == ["a", "b"]


async def test_network_owner_sees_ports_of_others_and_pairs_get_the_port_mac(api: Api) -> None:
    net = await api.create("networks", "network", shared=True, tenant_id=P1)
    await api.create("subnets", "subnet", project=P1, network_id=net["id"], ip_version=4,
                     cidr="10.0.0.0/24")
    port = await api.create("ports", "port", project=P2, network_id=net["id"],
                            allowed_address_pairs=[{"ip_address": "10.0.0.100/32"}])
    assert port["allowed_address_pairs"] == [{"ip_address": "10.0.0.100/32",
                                              "mac_address": port["mac_address"]}]
    status, _ = await api.call("GET", f"/v2.0/ports/{port['id']}", project=P1)
    assert status == 200
    status, _ = await api.call("GET", f"/v2.0/ports/{port['id']}",
                               project="33333333333333333333333333333333")
    assert status == 404


async def test_member_on_a_shared_network_may_not_choose_mac_ip_or_network_owner(
        api: Api) -> None:
    net = await api.create("networks", "network", shared=True, tenant_id=P1)
    await api.create("subnets", "subnet", project=P1, network_id=net["id"], ip_version=4,
                     cidr="10.0.0.0/24")
    for extra in ({"mac_address": "fa:16:3e:00:00:09"},
                  {"fixed_ips": [{"ip_address": "10.0.0.9"}]},
                  {"device_owner": "network:router_interface"}):
        status, body = await api.call("POST", "/v2.0/ports",
                                      {"port": {"network_id": net["id"], **extra}}, project=P2)
        assert status == 403 and body["NeutronError"]["type"] == "PolicyNotAuthorized", extra
    # the network's owner may
    port = await api.create("ports", "port", project=P1, network_id=net["id"],
                            fixed_ips=[{"ip_address": "10.0.0.9"}])
    assert port["fixed_ips"][0]["ip_address"] == "10.0.0.9"


async def test_a_bulk_of_ports_is_made_concurrently_and_still_all_or_nothing(api: Api) -> None:
    net, _ = await _net_subnet(api)
    status, body = await api.call("POST", "/v2.0/ports", {"ports": [
        {"network_id": net["id"], "name": f"vm{i}"} for i in range(30)]}, project=P1)
    assert status == 201, body
    assert [p["name"] for p in body["ports"]] == [f"vm{i}" for i in range(30)]
    addresses = [p["fixed_ips"][0]["ip_address"] for p in body["ports"]]
    assert len(set(addresses)) == 30
    assert len({p["mac_address"] for p in body["ports"]}) == 30
    # One item that cannot be made (a network that does not exist) undoes all.
    status, body = await api.call("POST", "/v2.0/ports", {"ports": [
        *({"network_id": net["id"], "name": f"x{i}"} for i in range(5)),
        {"network_id": "00000000-0000-0000-0000-000000000000", "name": "bad"}]}, project=P1)
    assert status == 404, body
    _, body = await api.call("GET", "/v2.0/ports", project=P1)
    assert sorted(p["name"] for p in body["ports"]) == sorted(f"vm{i}" for i in range(30))


async def test_a_bulk_with_chosen_distinct_addresses_is_made_whole(api: Api) -> None:
    net, subnet = await _net_subnet(api)
    status, body = await api.call("POST", "/v2.0/ports", {"ports": [
        {"network_id": net["id"], "fixed_ips": [{"subnet_id": subnet["id"],
                                                 "ip_address": f"10.0.0.{10 + i}"}]}
        for i in range(10)]}, project=P1)
    assert status == 201, body
    assert [p["fixed_ips"][0]["ip_address"] for p in body["ports"]] == [
        f"10.0.0.{10 + i}" for i in range(10)]


async def test_port_on_a_missing_subnet_is_404(api: Api) -> None:
    net, _ = await _net_subnet(api)
    status, body = await api.call("POST", "/v2.0/ports", {"port": {
        "network_id": net["id"],
        "fixed_ips": [{"subnet_id": "00000000-0000-4000-8000-000000000000"}]}}, project=P1)
    assert (status, body["NeutronError"]["type"]) == (404, "SubnetNotFound")
    # A subnet that exists but on another network stays a bad request.
    _, other = await _net_subnet(api, cidr="10.1.0.0/24")
    status, body = await api.call("POST", "/v2.0/ports", {"port": {
        "network_id": net["id"], "fixed_ips": [{"subnet_id": other["id"]}]}}, project=P1)
    assert (status, body["NeutronError"]["type"]) == (400, "InvalidInput")


async def test_slaac_address_added_to_chosen_addresses(api: Api) -> None:
    net, v4 = await _net_subnet(api)
    slaac = await api.create("subnets", "subnet", project=P1, network_id=net["id"],
                             ip_version=6, cidr="2001:db8:5::/64", ipv6_ra_mode="slaac")
    port = await api.create("ports", "port", project=P1, network_id=net["id"],
                            mac_address="fa:16:3e:00:00:05",
                            fixed_ips=[{"subnet_id": v4["id"], "ip_address": "10.0.0.50"}])
    assert port["fixed_ips"] == [
        {"subnet_id": v4["id"], "ip_address": "10.0.0.50"},
        {"subnet_id": slaac["id"], "ip_address": "2001:db8:5:0:f816:3eff:fe00:5"}]
    # A router's interface takes only what it asks for.
    router = await api.create("routers", "router", project=P1)
    status, _ = await api.call("PUT", f"/v2.0/routers/{router['id']}/add_router_interface",
                               {"subnet_id": v4["id"]}, project=P1)
    assert status == 200
    _, body = await api.call("GET", f"/v2.0/ports?device_id={router['id']}", project=P1)
    assert [ip["subnet_id"] for ip in body["ports"][0]["fixed_ips"]] == [v4["id"]]


async def test_slaac_address_stays_on_update_and_follows_the_mac(api: Api) -> None:
    net, v4 = await _net_subnet(api)
    slaac = await api.create("subnets", "subnet", project=P1, network_id=net["id"],
                             ip_version=6, cidr="2001:db8:6::/64", ipv6_address_mode="slaac")
    port = await api.create("ports", "port", project=P1, network_id=net["id"],
                            mac_address="fa:16:3e:00:00:06")
    path = f"/v2.0/ports/{port['id']}"
    status, body = await api.call("PUT", path, {"port": {"fixed_ips": [
        {"subnet_id": v4["id"], "ip_address": "10.0.0.60"}]}}, project=P1)
    assert status == 200, body
    assert body["port"]["fixed_ips"] == [
        {"subnet_id": v4["id"], "ip_address": "10.0.0.60"},
        {"subnet_id": slaac["id"], "ip_address": "2001:db8:6:0:f816:3eff:fe00:6"}]
    status, body = await api.call("PUT", path, {"port": {"mac_address": "fa:16:3e:00:00:07"}},
                                  project=P1)
    assert status == 200, body
    assert body["port"]["fixed_ips"] == [
        {"subnet_id": v4["id"], "ip_address": "10.0.0.60"},
        {"subnet_id": slaac["id"], "ip_address": "2001:db8:6:0:f816:3eff:fe00:7"}]
    # The old EUI-64 address is free again, the new one taken.
    other = await api.create("ports", "port", project=P1, network_id=net["id"],
                             mac_address="fa:16:3e:00:00:06")
    assert other["fixed_ips"][1]["ip_address"] == "2001:db8:6:0:f816:3eff:fe00:6"
