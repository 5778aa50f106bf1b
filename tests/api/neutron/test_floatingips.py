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
from tests.api.neutron.test_routers import P1, P2, action, error, external, project_net, router

F = "/v2.0/floatingips"


async def routed(api: Api) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any],
                                    dict[str, Any]]:
    """ext-net, demo-net/subnet behind router01 with its gateway: seed 002."""
    ext, _ = await external(api)
    net, sub = await project_net(api)
    r = await router(api, external_gateway_info={"network_id": ext["id"]})
    status, _ = await action(api, r["id"], "add_router_interface", {"subnet_id": sub["id"]})
    assert status == 200
    return ext, net, sub, r


async def fip(api: Api, project: str | None = P1, **attrs: Any) -> tuple[int, Any]:
    return await api.call("POST", F, {"floatingip": attrs}, project=project)


async def test_create_associate_disassociate(api: Api) -> None:
    ext, net, sub, r = await routed(api)
    vm = await api.create("ports", "port", project=P1, network_id=net["id"], name="vm01",
                          device_owner="compute:nova", device_id="vm01")
    status, body = await fip(api, floating_network_id=ext["id"])
    assert status == 201, body
    f = body["floatingip"]
    # .101 is the router's gateway: the floating IP gets the next one.
    assert f["floating_ip_address"] == "203.0.113.102"
    assert f["port_id"] is None and f["router_id"] is None and f["fixed_ip_address"] is None
    assert f["status"] == "DOWN" and f["tenant_id"] == P1
    assert "floating_port_id" not in f and "subnet_id" not in f
    _, body = await api.call("GET", f"/v2.0/ports?device_id={f['id']}")
    (held,) = body["ports"]
    assert held["device_owner"] == "network:floatingip" and held["tenant_id"] == ""
    assert held["fixed_ips"][0]["ip_address"] == "203.0.113.102"
    path = f"{F}/{f['id']}"
    status, body = await api.call("PUT", path, {"floatingip": {"port_id": vm["id"]}},
                                  project=P1)
    assert status == 200, body
    assoc = body["floatingip"]
    assert assoc["port_id"] == vm["id"] and assoc["router_id"] == r["id"]
    assert assoc["fixed_ip_address"] == "192.168.1.2"
    assert assoc["port_details"]["device_id"] == "vm01"
    status, body = await api.call("PUT", path, {"floatingip": {"port_id": None}}, project=P1)
    assert status == 200 and body["floatingip"]["port_id"] is None
    assert body["floatingip"]["router_id"] is None
    # Create already associated, with a requested address.
    status, body = await fip(api, project=None, tenant_id=P1, floating_network_id=ext["id"],
                             port_id=vm["id"], floating_ip_address="203.0.113.150")
    assert status == 201, body
    g = body["floatingip"]
    assert g["floating_ip_address"] == "203.0.113.150" and g["router_id"] == r["id"]
    # That fixed IP is taken now; re-associating g elsewhere frees it.
    status, body = await api.call("PUT", path, {"floatingip": {"port_id": vm["id"]}},
                                  project=P1)
    assert (status, error(body)) == (409, "FloatingIPPortAlreadyAssociated")
    vm2 = await api.create("ports", "port", project=P1, network_id=net["id"])
    status, body = await api.call("PUT", f"{F}/{g['id']}", {"floatingip": {
        "port_id": vm2["id"]}}, project=P1)
    assert status == 200 and body["floatingip"]["fixed_ip_address"] == "192.168.1.3"
    status, body = await api.call("PUT", path, {"floatingip": {"port_id": vm["id"]}},
                                  project=P1)
    assert status == 200
    # Filters work on the computed fields.
    _, body = await api.call("GET", f"{F}?port_id={vm['id']}", project=P1)
    assert [x["id"] for x in body["floatingips"]] == [f["id"]]
    _, body = await api.call("GET", F, project=P2)
    assert body["floatingips"] == []
    # The router cannot lose what the floating IPs need.
    status, body = await action(api, r["id"], "remove_router_interface", {"subnet_id": sub["id"]})
    assert (status, error(body)) == (409, "RouterInterfaceInUseByFloatingIP")
    status, body = await api.call("PUT", f"/v2.0/routers/{r['id']}", {"router": {
        "external_gateway_info": None}}, project=P1)
    assert (status, error(body)) == (409, "RouterExternalGatewayInUseByFloatingIp")
    status, body = await api.call("DELETE", f"/v2.0/ports/{held['id']}")
    assert (status, error(body)) == (409, "ServicePortInUse")
    # Deleting the VM port disassociates.
    status, _ = await api.call("DELETE", f"/v2.0/ports/{vm['id']}", project=P1)
    assert status == 204
    _, body = await api.call("GET", path, project=P1)
    assert body["floatingip"]["port_id"] is None and body["floatingip"]["router_id"] is None
    assert body["floatingip"]["revision_number"] > assoc["revision_number"]
    # Deleting a floating IP releases its address and port.
    status, _ = await api.call("DELETE", path, project=P1)
    assert status == 204
    status, _ = await api.call("GET", f"/v2.0/ports/{held['id']}")
    assert status == 404
    status, body = await fip(api, floating_network_id=ext["id"])
    assert body["floatingip"]["floating_ip_address"] == "203.0.113.102"


async def test_refusals(api: Api) -> None:
    ext, net, _, r = await routed(api)
    unrouted_net, _ = await project_net(api, "10.5.0.0/24")
    unrouted = await api.create("ports", "port", project=P1, network_id=unrouted_net["id"])
    two_ips = await api.create("ports", "port", project=P1, network_id=net["id"],
                               fixed_ips=[{"ip_address": "192.168.1.20"},
                                          {"ip_address": "192.168.1.21"}])
    p2_net, _ = await project_net(api, "10.6.0.0/24", project=P2)
    p2_port = await api.create("ports", "port", project=P2, network_id=p2_net["id"])
    missing = "3f1c58a6-8a6b-4c0e-9a57-0e4f0e0e0e0e"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"floating_network_id": net["id"]}, 400, "BadRequest"),
        ({"floating_network_id": missing}, 404, "NetworkNotFound"),
        ({}, 400, "HTTPBadRequest"),
        ({"floating_network_id": ext["id"], "port_id": unrouted["id"]}, 404,
         "ExternalGatewayForFloatingIPNotFound"),
        ({"floating_network_id": ext["id"], "port_id": two_ips["id"]}, 400, "BadRequest"),
        ({"floating_network_id": ext["id"], "port_id": two_ips["id"],
          "fixed_ip_address": "192.168.1.99"}, 400, "BadRequest"),
        ({"floating_network_id": ext["id"], "fixed_ip_address": "192.168.1.20"}, 400,
         "BadRequest"),
        ({"floating_network_id": ext["id"], "port_id": missing}, 404, "PortNotFound"),
        ({"floating_network_id": ext["id"], "port_id": p2_port["id"]}, 404, "PortNotFound"),
        ({"floating_network_id": ext["id"], "floating_ip_address": "203.0.113.101"}, 409,
         "IpAddressAlreadyAllocated"),
        ({"floating_network_id": ext["id"], "floating_ip_address": "198.51.100.1"}, 400,
         "InvalidIpForNetwork"),
        ({"floating_network_id": ext["id"], "floating_ip_address": "bogus"}, 400,
         "HTTPBadRequest"),
        ({"floating_network_id": ext["id"], "router_id": r["id"]}, 400, "HTTPBadRequest"),
    ]
    for attrs, status, kind in cases:
        # Only admins choose the address.
        project = None if "floating_ip_address" in attrs else P1
        got, body = await fip(api, project=project, **attrs)
        assert (got, error(body)) == (status, kind), attrs
    status, body = await fip(api, project=P1, floating_network_id=ext["id"],
                             floating_ip_address="203.0.113.160")
    assert status == 403, body
    # Nothing was left behind by the refusals.
    _, body = await api.call("GET", "/v2.0/ports?device_owner=network:floatingip")
    assert body["ports"] == []
    status, body = await fip(api, floating_network_id=ext["id"], port_id=two_ips["id"],
                             fixed_ip_address="192.168.1.21")
    assert status == 201 and body["floatingip"]["fixed_ip_address"] == "192.168.1.21"


async def test_pool_exhaustion(api: Api) -> None:
    ext = await api.create("networks", "network", **{"router:external": True})
    await api.create("subnets", "subnet", network_id=ext["id"], ip_version=4,
                     cidr="198.51.100.0/29", allocation_pools=[
                         {"start": "198.51.100.2", "end": "198.51.100.3"}])
    for _ in range(2):
        status, _ = await fip(api, floating_network_id=ext["id"])
        assert status == 201
    status, body = await fip(api, floating_network_id=ext["id"])
    assert (status, error(body)) == (400, "ExternalIpAddressExhausted")


async def test_concurrent_creates_on_two_servers_never_share_an_address(
        tmp_path: Path, server_config: ServerConfig) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/fip.db")
    clients: list[TestClient[Any, Any]] = []
    try:
        for _ in range(2):
            client: TestClient[Any, Any] = TestClient(TestServer(
                make_app(store, server_config, NoAuth()), host="127.0.0.1"))
            await client.start_server()
            clients.append(client)
        one, two = Api(clients[0]), Api(clients[1])
        ext, _ = await external(one)
        results = await asyncio.gather(*[
            fip(api, floating_network_id=ext["id"]) for _ in range(25) for api in (one, two)])
        assert all(status == 201 for status, _ in results), results
        addresses = [body["floatingip"]["floating_ip_address"] for _, body in results]
        assert len(set(addresses)) == 50
        assert sorted(addresses, key=lambda a: int(a.rsplit(".", 1)[1]))[0] == "203.0.113.101"
        # One fixed IP, many floating IPs associating at once: exactly one wins.
        net, sub = await project_net(one)
        r = await router(one, external_gateway_info={"network_id": ext["id"]})
        await action(one, r["id"], "add_router_interface", {"subnet_id": sub["id"]})
        vm = await one.create("ports", "port", project=P1, network_id=net["id"])
        fips = [body["floatingip"] for _, body in results[:10]]
        outcomes = await asyncio.gather(*[
            api.call("PUT", f"{F}/{f['id']}", {"floatingip": {"port_id": vm["id"]}})
            for f, api in zip(fips, [one, two] * 5, strict=True)])
        assert sorted(status for status, _ in outcomes) == [200] + [409] * 9
        _, body = await one.call("GET", f"{F}?port_id={vm['id']}")
        assert len(body["floatingips"]) == 1
    finally:
        for client in clients:
            await client.close()
        await store.close()


async def test_floating_ip_keys_as_neutron_without_dns_qos_or_forwardings(api: Api) -> None:
    ext, _, _, _ = await routed(api)
    status, body = await fip(api, floating_network_id=ext["id"])
    assert status == 201
    f = body["floatingip"]
    assert not {"dns_domain", "dns_name", "qos_policy_id", "port_forwardings"} & set(f)
    assert "port_details" in f and f["revision_number"] == 0
    status, body = await api.call("GET", f"{F}/00000000-0000-4000-8000-000000000000",
                                  project=P1)
    assert (status, error(body)) == (404, "FloatingIPNotFound")


async def test_fixed_ip_of_a_floating_ip_cannot_be_taken_away(api: Api) -> None:
    ext, net, sub, _ = await routed(api)
    vm = await api.create("ports", "port", project=P1, network_id=net["id"])
    status, _ = await fip(api, floating_network_id=ext["id"], port_id=vm["id"])
    assert status == 201
    status, body = await api.call("PUT", f"/v2.0/ports/{vm['id']}", {"port": {"fixed_ips": [
        {"subnet_id": sub["id"], "ip_address": "192.168.1.77"}]}}, project=P1)
    assert (status, error(body)) == (400, "BadRequest")
    # Adding an address and keeping the floating IP's is fine.
    status, body = await api.call("PUT", f"/v2.0/ports/{vm['id']}", {"port": {"fixed_ips": [
        *vm["fixed_ips"], {"subnet_id": sub["id"], "ip_address": "192.168.1.77"}]}},
        project=P1)
    assert status == 200, body


async def test_gateway_held_by_a_router_cannot_move(api: Api) -> None:
    _, _, sub, _ = await routed(api)
    for gateway in (None, "192.168.1.254"):
        status, body = await api.call("PUT", f"/v2.0/subnets/{sub['id']}",
                                      {"subnet": {"gateway_ip": gateway}}, project=P1)
        assert (status, error(body)) == (409, "GatewayIpInUse"), gateway
    status, _ = await api.call("PUT", f"/v2.0/subnets/{sub['id']}",
                               {"subnet": {"gateway_ip": "192.168.1.1"}}, project=P1)
    assert status == 200
