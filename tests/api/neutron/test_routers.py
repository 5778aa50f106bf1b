from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from kumonet.api.config import L3HAConfig, ServerConfig
from tests.api.conftest import Api, start_api

P1 = "11111111111111111111111111111111"
P2 = "22222222222222222222222222222222"
R = "/v2.0/routers"


async def external(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    """Seed 002's external network: flat, pool .101-.200, no DHCP."""
    ext = await api.create("networks", "network", name="ext-net", **{
        "router:external": True, "provider:network_type": "flat",
        "provider:physical_network": "extnet"})
    sub = await api.create("subnets", "subnet", network_id=ext["id"], ip_version=4,
                           cidr="203.0.113.0/24", enable_dhcp=False, gateway_ip="203.0.113.1",
                           allocation_pools=[{"start": "203.0.113.101",
                                              "end": "203.0.113.200"}])
    return ext, sub


async def project_net(api: Api, cidr: str = "192.168.1.0/24", project: str = P1,
                      **sub: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    net = await api.create("networks", "network", project=project)
    subnet = await api.create("subnets", "subnet", project=project, network_id=net["id"],
                              ip_version=4, cidr=cidr, **sub)
    return net, subnet


async def router(api: Api, project: str | None = P1, **attrs: Any) -> dict[str, Any]:
    status, body = await api.call("POST", R, {"router": {"name": "router01", **attrs}},
                                  project=project)
    assert status == 201, body
    created: dict[str, Any] = body["router"]
    return created


async def action(api: Api, router_id: str, name: str, body: Any,
                 project: str | None = P1) -> tuple[int, Any]:
    return await api.call("PUT", f"{R}/{router_id}/{name}", body, project=project)


def error(body: Any) -> str:
    kind: str = body["NeutronError"]["type"]
    return kind


async def test_router_crud_and_admin_only_attributes(api: Api) -> None:
    r = await router(api)
    assert r["status"] == "ACTIVE" and r["admin_state_up"] is True
    assert r["external_gateway_info"] is None and r["routes"] == []
    assert "ha" not in r and "distributed" not in r  # admin-only: hidden from members
    assert "interfaces" not in r and "gw_port_id" not in r  # stored, never shown
    _, shown = await api.call("GET", f"{R}/{r['id']}")
    assert shown["router"]["ha"] is False and shown["router"]["distributed"] is False
    for attrs in ({"ha": True}, {"distributed": True}):
        status, body = await api.call("POST", R, {"router": attrs}, project=P1)
        assert status == 403, body
        status, body = await api.call("PUT", f"{R}/{r['id']}", {"router": attrs}, project=P1)
        assert status == 403, body
    admin_ha = await router(api, project=None, ha=True, tenant_id=P1)
    assert admin_ha["ha"] is True and admin_ha["tenant_id"] == P1
    # ha/distributed change only while the router is down (Neutron's migration rule).
    status, body = await api.call("PUT", f"{R}/{r['id']}", {"router": {"ha": True}})
    assert (status, error(body)) == (400, "BadRequest")
    status, body = await api.call("PUT", f"{R}/{r['id']}", {"router": {
        "admin_state_up": False}}, project=P1)
    assert status == 200
    status, body = await api.call("PUT", f"{R}/{r['id']}", {"router": {"ha": True,
                                                                       "distributed": True}})
    assert status == 200 and body["router"]["ha"] is True
    assert body["router"]["distributed"] is True
    # Other projects neither see nor change it.
    for method in ("GET", "DELETE"):
        status, _ = await api.call(method, f"{R}/{r['id']}", project=P2)
        assert status == 404
    _, body = await api.call("GET", R, project=P2)
    assert body["routers"] == []
    _, body = await api.call("GET", f"{R}?name=router01", project=P1)
    assert {x["id"] for x in body["routers"]} == {r["id"], admin_ha["id"]}
    status, _ = await api.call("DELETE", f"{R}/{r['id']}", project=P1)
    assert status == 204
    status, body = await api.call("GET", f"{R}/{r['id']}", project=P1)
    assert (status, error(body)) == (404, "RouterNotFound")


async def test_ha_defaults_from_l3_ha(tmp_path: Path, server_config: ServerConfig) -> None:
    config = replace(server_config, l3=L3HAConfig(l3_ha=True))
    api, store = await start_api(f"sqlite:///{tmp_path}/ha.db", config)
    try:
        r = await router(api, project=None)
        assert r["ha"] is True
        legacy = await router(api, project=None, ha=False)
        assert legacy["ha"] is False
    finally:
        await api.client.close()
        await store.close()


async def test_gateway_takes_lowest_pool_address(api: Api) -> None:
    ext, ext_sub = await external(api)
    r = await router(api, external_gateway_info={"network_id": ext["id"]})
    info = r["external_gateway_info"]
    assert info == {"network_id": ext["id"], "enable_snat": True, "external_fixed_ips": [
        {"subnet_id": ext_sub["id"], "ip_address": "203.0.113.101"}]}
    # The gateway port, as Neutron makes it (admin sees it; it has no project).
    _, body = await api.call("GET", f"/v2.0/ports?device_id={r['id']}")
    (port,) = body["ports"]
    assert port["device_owner"] == "network:router_gateway" and port["tenant_id"] == ""
    assert port["fixed_ips"] == info["external_fixed_ips"]
    assert port["security_groups"] == []
    _, body = await api.call("GET", "/v2.0/ports", project=P1)
    assert body["ports"] == []
    # Members may not choose SNAT or addresses; admins may.
    for extra in ({"enable_snat": False}, {"external_fixed_ips": [{"subnet_id": ext_sub["id"]}]}):
        status, body = await api.call("PUT", f"{R}/{r['id']}", {"router": {
            "external_gateway_info": {"network_id": ext["id"], **extra}}}, project=P1)
        assert status == 403, body
    status, body = await api.call("PUT", f"{R}/{r['id']}", {"router": {
        "external_gateway_info": {"network_id": ext["id"], "enable_snat": False,
                                  "external_fixed_ips": [{"ip_address": "203.0.113.150"}]}}})
    assert status == 200, body
    info = body["router"]["external_gateway_info"]
    assert info["enable_snat"] is False
    assert info["external_fixed_ips"] == [{"subnet_id": ext_sub["id"],
                                           "ip_address": "203.0.113.150"}]
    # A second router gets .101 again (it was freed).
    r2 = await router(api, external_gateway_info={"network_id": ext["id"]})
    assert r2["external_gateway_info"]["external_fixed_ips"][0]["ip_address"] == \
        "203.0.113.101"
    # The external network cannot go while gateways use it.
    status, body = await api.call("DELETE", f"/v2.0/networks/{ext['id']}")
    assert (status, error(body)) == (409, "NetworkInUse")
    # Direct port deletes are refused; clearing the gateway deletes the port.
    status, body = await api.call("DELETE", f"/v2.0/ports/{port['id']}")
    assert (status, error(body)) == (409, "ServicePortInUse")
    status, body = await api.call("PUT", f"{R}/{r['id']}", {"router": {
        "external_gateway_info": {}}}, project=P1)
    assert status == 200 and body["router"]["external_gateway_info"] is None
    _, body = await api.call("GET", f"/v2.0/ports?device_id={r['id']}")
    assert body["ports"] == []
    # Deleting a router deletes its gateway port.
    status, _ = await api.call("DELETE", f"{R}/{r2['id']}", project=P1)
    assert status == 204
    status, _ = await api.call("DELETE", f"/v2.0/networks/{ext['id']}")
    assert status == 204


async def test_gateway_refusals(api: Api) -> None:
    ext, _ = await external(api)
    plain, _ = await project_net(api)
    r = await router(api)
    cases: list[tuple[Any, int, str]] = [
        ({"network_id": plain["id"]}, 400, "BadRequest"),
        ({"network_id": "3f1c58a6-8a6b-4c0e-9a57-0e4f0e0e0e0e"}, 404, "NetworkNotFound"),
        ({"enable_snat": True}, 400, "HTTPBadRequest"),
        ({"network_id": ext["id"], "bogus": 1}, 400, "HTTPBadRequest"),
        ("nope", 400, "HTTPBadRequest"),
    ]
    for info, status, kind in cases:
        got, body = await api.call("PUT", f"{R}/{r['id']}", {"router": {
            "external_gateway_info": info}}, project=P1)
        assert (got, error(body)) == (status, kind), info
    # A failed gateway on create leaves no router behind.
    status, body = await api.call("POST", R, {"router": {"name": "x", "external_gateway_info": {
        "network_id": plain["id"]}}}, project=P1)
    assert status == 400
    _, body = await api.call("GET", f"{R}?name=x", project=P1)
    assert body["routers"] == []


async def test_interfaces_by_subnet_and_port(api: Api) -> None:
    net, sub = await project_net(api)
    r = await router(api)
    status, info = await action(api, r["id"], "add_router_interface", {"subnet_id": sub["id"]})
    assert status == 200, info
    # Neutron 29's keys: project_id but no tenant_id.
    assert set(info) == {"id", "project_id", "port_id", "network_id", "subnet_id",
                         "subnet_ids"}
    assert info["id"] == r["id"] and info["subnet_id"] == sub["id"]
    assert info["subnet_ids"] == [sub["id"]] and info["project_id"] == P1
    _, body = await api.call("GET", f"/v2.0/ports/{info['port_id']}", project=P1)
    port = body["port"]
    assert port["device_owner"] == "network:router_interface"
    assert port["device_id"] == r["id"] and port["tenant_id"] == P1
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "192.168.1.1"}]
    # router-port-list: ports filtered by device_id
    _, body = await api.call("GET", f"/v2.0/ports?device_id={r['id']}", project=P1)
    assert [p["id"] for p in body["ports"]] == [port["id"]]
    # By port: an unattached port on another subnet.
    net2, sub2 = await project_net(api, "10.2.0.0/24")
    free = await api.create("ports", "port", project=P1, network_id=net2["id"])
    status, info2 = await action(api, r["id"], "add_router_interface", {"port_id": free["id"]})
    assert status == 200 and info2["port_id"] == free["id"]
    assert info2["subnet_id"] == sub2["id"]
    _, body = await api.call("GET", f"/v2.0/ports/{free['id']}", project=P1)
    assert body["port"]["device_owner"] == "network:router_interface"
    # Things that use the interface cannot go.
    for path, kind in ((f"{R}/{r['id']}", "RouterInUse"),
                       (f"/v2.0/ports/{port['id']}", "ServicePortInUse"),
                       (f"/v2.0/subnets/{sub['id']}", "SubnetInUse"),
                       (f"/v2.0/networks/{net['id']}", "NetworkInUse")):
        status, body = await api.call("DELETE", path, project=P1)
        assert (status, error(body)) == (409, kind), path
    # Remove by subnet (port deleted) and by port (port deleted too).
    status, out = await action(api, r["id"], "remove_router_interface", {"subnet_id": sub["id"]})
    assert status == 200 and out["port_id"] == port["id"] and out["subnet_id"] == sub["id"]
    status, _ = await api.call("GET", f"/v2.0/ports/{port['id']}", project=P1)
    assert status == 404
    status, out = await action(api, r["id"], "remove_router_interface", {"port_id": free["id"]})
    assert status == 200 and out["subnet_ids"] == [sub2["id"]]
    status, _ = await api.call("GET", f"/v2.0/ports/{free['id']}", project=P1)
    assert status == 404
    status, _ = await api.call("DELETE", f"/v2.0/subnets/{sub['id']}", project=P1)
    assert status == 204
    status, _ = await api.call("DELETE", f"{R}/{r['id']}", project=P1)
    assert status == 204


async def test_interface_refusals(api: Api) -> None:
    net, sub = await project_net(api)
    _, overlapping = await project_net(api, "192.168.0.0/16")
    _, no_gateway = await project_net(api, "10.9.0.0/24", gateway_ip=None)
    r = await router(api)
    other = await router(api)
    status, _ = await action(api, r["id"], "add_router_interface", {"subnet_id": sub["id"]})
    assert status == 200
    used = await api.create("ports", "port", project=P1, network_id=net["id"],
                            device_id="vm-1", device_owner="compute:nova")
    bare_net = await api.create("networks", "network", project=P1)
    bare = await api.create("ports", "port", project=P1, network_id=bare_net["id"])
    _, p2_sub = await project_net(api, "172.16.0.0/24", project=P2)
    missing = "3f1c58a6-8a6b-4c0e-9a57-0e4f0e0e0e0e"
    cases: list[tuple[Any, int, str]] = [
        ({}, 400, "BadRequest"),
        ({"subnet_id": sub["id"], "port_id": used["id"]}, 400, "BadRequest"),
        ({"subnet_id": sub["id"]}, 400, "BadRequest"),  # already on the router
        ({"subnet_id": overlapping["id"]}, 400, "BadRequest"),
        ({"subnet_id": no_gateway["id"]}, 400, "BadRequest"),
        ({"port_id": used["id"]}, 409, "PortInUse"),
        ({"port_id": bare["id"]}, 400, "BadRequest"),  # no fixed IP
        ({"subnet_id": missing}, 404, "SubnetNotFound"),
        ({"subnet_id": p2_sub["id"]}, 404, "SubnetNotFound"),
        ({"port_id": missing}, 404, "PortNotFound"),
        ({"subnet_id": "nope"}, 400, "HTTPBadRequest"),
        ({"network_id": net["id"]}, 400, "HTTPBadRequest"),
    ]
    for body_in, status, kind in cases:
        got, body = await action(api, r["id"], "add_router_interface", body_in)
        assert (got, error(body)) == (status, kind), body_in
    # The same subnet's gateway address is taken on another router.
    got, body = await action(api, other["id"], "add_router_interface", {"subnet_id": sub["id"]})
    assert (got, error(body)) == (409, "IpAddressAlreadyAllocated")
    got, body = await action(api, r["id"], "add_router_interface", {"subnet_id": sub["id"]},
                             project=P2)
    assert got == 404
    for body_in, status, kind in (({"subnet_id": overlapping["id"]}, 404,
                                   "RouterInterfaceNotFoundForSubnet"),
                                  ({"port_id": used["id"]}, 404, "RouterInterfaceNotFound")):
        got, body = await action(api, r["id"], "remove_router_interface", body_in)
        assert (got, error(body)) == (status, kind), body_in
    got, body = await action(api, missing, "add_router_interface", {"subnet_id": sub["id"]})
    assert (got, error(body)) == (404, "RouterNotFound")


async def test_extra_routes(api: Api) -> None:
    _, sub = await project_net(api)
    r = await router(api)
    await action(api, r["id"], "add_router_interface", {"subnet_id": sub["id"]})
    path = f"{R}/{r['id']}"
    routes = [{"destination": "10.10.0.0/16", "nexthop": "192.168.1.254"}]
    status, body = await api.call("PUT", path, {"router": {"routes": routes}}, project=P1)
    assert status == 200 and body["router"]["routes"] == routes
    for bad, kind in (([{"destination": "10.0.0.0/8", "nexthop": "172.16.0.1"}], "InvalidRoutes"),
                      ([{"destination": "10.0.0.0/8", "nexthop": "192.168.1.1"}],
                       "InvalidRoutes"),
                      ([{"destination": "10.0.0.1/8", "nexthop": "192.168.1.9"}],
                       "HTTPBadRequest"),
                      ([{"destination": "10.0.0.0/8"}], "HTTPBadRequest")):
        status, body = await api.call("PUT", path, {"router": {"routes": bad}}, project=P1)
        assert (status, error(body)) == (400, kind), bad
    status, body = await action(api, r["id"], "remove_router_interface", {"subnet_id": sub["id"]})
    assert (status, error(body)) == (409, "RouterInterfaceInUseByRoute")
    more = {"destination": "10.20.0.0/16", "nexthop": "192.168.1.253"}
    status, body = await action(api, r["id"], "add_extraroutes", {"router": {"routes": [more]}})
    assert status == 200 and body["router"]["routes"] == [*routes, more]
    status, body = await action(api, r["id"], "remove_extraroutes",
                                {"router": {"routes": routes}})
    assert status == 200 and body["router"]["routes"] == [more]
    status, _ = await api.call("PUT", path, {"router": {"routes": []}}, project=P1)
    assert status == 200
    status, _ = await action(api, r["id"], "remove_router_interface", {"subnet_id": sub["id"]})
    assert status == 200


async def test_extensions_listed(api: Api) -> None:
    _, body = await api.call("GET", "/v2.0/extensions")
    aliases = {e["alias"] for e in body["extensions"]}
    assert {"router", "ext-gw-mode", "extraroute", "extraroute-atomic", "l3-ha", "dvr",
            "security-group", "stateful-security-group"} <= aliases


async def test_racing_interface_adds_leave_no_orphan_ports(api: Api) -> None:
    """Two overlapping subnets added at once: one wins; the loser's port is
    removed again. A delete racing adds leaves no interface port behind."""
    for _ in range(4):
        _, a = await project_net(api, "10.1.0.0/24")
        _, b = await project_net(api, "10.1.0.0/16")
        r = await router(api)
        results = await asyncio.gather(*[
            action(api, r["id"], "add_router_interface", {"subnet_id": s["id"]})
            for s in (a, b)])
        assert sorted(status for status, _ in results) == [200, 400]
        _, body = await api.call("GET", f"/v2.0/ports?device_id={r['id']}", project=P1)
        assert len(body["ports"]) == 1
        winner = next(info for status, info in results if status == 200)
        assert [p["id"] for p in body["ports"]] == [winner["port_id"]]
        status, _ = await action(api, r["id"], "remove_router_interface",
                                 {"port_id": winner["port_id"]})
        assert status == 200
        # delete racing an add
        outcomes = await asyncio.gather(
            action(api, r["id"], "add_router_interface", {"subnet_id": a["id"]}),
            api.call("DELETE", f"{R}/{r['id']}", project=P1))
        status, _ = await api.call("GET", f"{R}/{r['id']}", project=P1)
        _, body = await api.call("GET", f"/v2.0/ports?device_id={r['id']}", project=P1)
        if status == 404:
            assert outcomes[1][0] == 204 and body["ports"] == []
        else:
            assert outcomes[1][0] == 409 and len(body["ports"]) == 1


async def test_admin_lists_show_no_stored_only_keys(api: Api) -> None:
    ext, _ = await external(api)
    _, sub = await project_net(api)
    r = await router(api, external_gateway_info={"network_id": ext["id"]})
    status, _ = await action(api, r["id"], "add_router_interface", {"subnet_id": sub["id"]})
    assert status == 200
    for path in (R, f"{R}?fields=interfaces&fields=gw_port_id&fields=id"):
        _, body = await api.call("GET", path)
        (shown,) = body["routers"]
        assert "interfaces" not in shown and "gw_port_id" not in shown, path
    _, body = await api.call("GET", f"{R}/{r['id']}")
    assert "interfaces" not in body["router"]


async def test_extraroutes_answer_has_neutrons_extra_keys(api: Api) -> None:
    ext, _ = await external(api)
    _, sub = await project_net(api)
    # Members may not choose SNAT (Neutron's policy): the admin makes it.
    r = await router(api, project=None, tenant_id=P1,
                     external_gateway_info={"network_id": ext["id"], "enable_snat": False})
    await action(api, r["id"], "add_router_interface", {"subnet_id": sub["id"]})
    status, body = await action(api, r["id"], "add_extraroutes", {"router": {"routes": [
        {"destination": "10.9.0.0/16", "nexthop": "192.168.1.9"}]}})
    assert status == 200, body
    shown = body["router"]
    assert shown["enable_snat"] is False and shown["ha_vr_id"] == 0
    assert shown["gw_port_id"] is not None
    assert shown["enable_default_route_bfd"] is False
    assert shown["enable_default_route_ecmp"] is False
