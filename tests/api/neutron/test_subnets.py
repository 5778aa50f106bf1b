from __future__ import annotations

from typing import Any

from tests.api.conftest import Api

P1 = "11111111111111111111111111111111"
P2 = "22222222222222222222222222222222"


async def _net(api: Api, **attrs: Any) -> dict[str, Any]:
    return await api.create("networks", "network", project=P1, **attrs)


async def test_subnet_defaults_and_network_subnets(api: Api) -> None:
    net = await _net(api)
    sub = await api.create("subnets", "subnet", project=P1, network_id=net["id"],
                           ip_version=4, cidr="192.168.1.0/24", name="demo-subnet")
    assert sub["gateway_ip"] == "192.168.1.1"
    assert sub["allocation_pools"] == [{"start": "192.168.1.2", "end": "192.168.1.254"}]
    assert sub["enable_dhcp"] is True and sub["subnetpool_id"] is None
    assert sub["tenant_id"] == P1 and sub["dns_nameservers"] == []
    _, body = await api.call("GET", f"/v2.0/networks/{net['id']}", project=P1)
    assert body["network"]["subnets"] == [sub["id"]]


async def test_seed_external_subnet(api: Api) -> None:
    ext = await api.create("networks", "network", name="ext-net",
                           **{"router:external": True, "provider:network_type": "flat",
                              "provider:physical_network": "extnet"})
    sub = await api.create("subnets", "subnet", network_id=ext["id"], ip_version=4,
                           cidr="203.0.113.0/24", name="ext-subnet", enable_dhcp=False,
                           gateway_ip="203.0.113.1",
                           allocation_pools=[{"start": "203.0.113.101",
                                              "end": "203.0.113.200"}])
    assert sub["enable_dhcp"] is False
    port = await api.create("ports", "port", network_id=ext["id"],
                            device_owner="network:router_gateway")
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "203.0.113.101"}]
    # external subnets are visible to every project
    _, body = await api.call("GET", "/v2.0/subnets", project=P2)
    assert [s["id"] for s in body["subnets"]] == [sub["id"]]


async def test_gateway_none_and_middle(api: Api) -> None:
    net = await _net(api)
    sub = await api.create("subnets", "subnet", project=P1, network_id=net["id"],
                           ip_version=4, cidr="10.0.0.0/29", gateway_ip=None)
    assert sub["gateway_ip"] is None
    assert sub["allocation_pools"] == [{"start": "10.0.0.1", "end": "10.0.0.6"}]
    sub2 = await api.create("subnets", "subnet", project=P1, network_id=net["id"],
                            ip_version=4, cidr="10.0.1.0/29", gateway_ip="10.0.1.3")
    assert sub2["allocation_pools"] == [{"start": "10.0.1.1", "end": "10.0.1.2"},
                                        {"start": "10.0.1.4", "end": "10.0.1.6"}]


async def test_ipv6_subnet(api: Api) -> None:
    net = await _net(api)
    sub = await api.create("subnets", "subnet", project=P1, network_id=net["id"],
                           ip_version=6, cidr="2001:db8:1::/64", ipv6_ra_mode="slaac",
                           ipv6_address_mode="slaac")
    # Neutron's IPv6 default gateway is the subnet-router anycast address.
    assert sub["gateway_ip"] == "2001:db8:1::"
    assert sub["allocation_pools"] == [{"start": "2001:db8:1::1",
                                        "end": "2001:db8:1:0:ffff:ffff:ffff:ffff"}]
    port = await api.create("ports", "port", project=P1, network_id=net["id"],
                            mac_address="fa:16:3e:11:22:33")
    assert port["fixed_ips"] == [{"subnet_id": sub["id"],
                                  "ip_address": "2001:db8:1:0:f816:3eff:fe11:2233"}]


async def test_bad_subnets(api: Api) -> None:
    net = await _net(api)
    base = {"network_id": net["id"], "ip_version": 4}
    cases: list[tuple[dict[str, Any], int]] = [
        ({"cidr": "10.0.0.0/33"}, 400),
        ({"cidr": "nonsense"}, 400),
        ({"cidr": "2001:db8::/64"}, 400),  # version mismatch
        ({"cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.255"}, 400),  # broadcast
        ({"cidr": "10.0.0.0/24", "gateway_ip": "2001:db8::1"}, 400),
        ({"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.1.1",
                                                        "end": "10.0.1.5"}]}, 400),
        ({"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.0.1",
                                                        "end": "10.0.0.5"}]}, 409),
        ({"cidr": "10.0.0.0/24", "allocation_pools": [
            {"start": "10.0.0.10", "end": "10.0.0.20"},
            {"start": "10.0.0.15", "end": "10.0.0.30"}]}, 409),
        ({"cidr": "10.0.0.0/24", "ipv6_ra_mode": "slaac"}, 400),
        ({"cidr": "10.0.0.0/24", "subnetpool_id": "x"}, 400),
        ({"cidr": "10.0.0.0/24", "bogus": 1}, 400),
    ]
    for extra, status in cases:
        got, body = await api.call("POST", "/v2.0/subnets", {"subnet": {**base, **extra}},
                                   project=P1)
        assert got == status, (extra, body)
        assert set(body["NeutronError"]) == {"type", "message", "detail"}
    _, body = await api.call("GET", "/v2.0/subnets", project=P1)
    assert body["subnets"] == []
    await api.create("subnets", "subnet", project=P1, **base, cidr="10.0.0.0/24")
    got, body = await api.call("POST", "/v2.0/subnets",
                               {"subnet": {**base, "cidr": "10.0.0.128/25"}}, project=P1)
    assert got == 400 and "overlaps" in body["NeutronError"]["message"]


async def test_subnet_in_use_and_network_in_use(api: Api) -> None:
    net = await _net(api)
    sub = await api.create("subnets", "subnet", project=P1, network_id=net["id"],
                           ip_version=4, cidr="10.0.0.0/24")
    port = await api.create("ports", "port", project=P1, network_id=net["id"])
    dhcp = await api.create("ports", "port", network_id=net["id"], device_owner="network:dhcp",
                            tenant_id=P1)
    status, body = await api.call("DELETE", f"/v2.0/subnets/{sub['id']}", project=P1)
    assert status == 409 and body["NeutronError"]["type"] == "SubnetInUse"
    status, body = await api.call("DELETE", f"/v2.0/networks/{net['id']}", project=P1)
    assert status == 409 and body["NeutronError"]["type"] == "NetworkInUse"
    status, _ = await api.call("DELETE", f"/v2.0/ports/{port['id']}", project=P1)
    assert status == 204
    status, _ = await api.call("DELETE", f"/v2.0/subnets/{sub['id']}", project=P1)
    assert status == 204
    _, body = await api.call("GET", f"/v2.0/ports/{dhcp['id']}")
    assert body["port"]["fixed_ips"] == []
    _, body = await api.call("GET", f"/v2.0/networks/{net['id']}")
    assert body["network"]["subnets"] == []
    status, _ = await api.call("DELETE", f"/v2.0/networks/{net['id']}", project=P1)
    assert status == 204
    status, _ = await api.call("GET", f"/v2.0/ports/{dhcp['id']}")
    assert status == 404


async def test_update_subnet(api: Api) -> None:
    net = await _net(api)
    sub = await api.create("subnets", "subnet", project=P1, network_id=net["id"],
                           ip_version=4, cidr="10.0.0.0/24")
    status, body = await api.call("PUT", f"/v2.0/subnets/{sub['id']}", {"subnet": {
        "allocation_pools": [{"start": "10.0.0.50", "end": "10.0.0.60"}],
        "dns_nameservers": ["8.8.8.8"], "enable_dhcp": False}}, project=P1)
    assert status == 200, body
    assert body["subnet"]["allocation_pools"] == [{"start": "10.0.0.50", "end": "10.0.0.60"}]
    port = await api.create("ports", "port", project=P1, network_id=net["id"])
    assert port["fixed_ips"][0]["ip_address"] == "10.0.0.50"
    status, body = await api.call("PUT", f"/v2.0/subnets/{sub['id']}", {"subnet": {
        "gateway_ip": "10.0.0.55"}}, project=P1)
    assert status == 409
    status, body = await api.call("PUT", f"/v2.0/subnets/{sub['id']}", {"subnet": {
        "cidr": "10.0.1.0/24"}}, project=P1)
    assert status == 400


async def test_subnet_as_neutron_29_answers(api: Api) -> None:
    net = await _net(api)
    base = {"network_id": net["id"], "ip_version": 4}
    # Host bits are cleared, not refused; a gateway outside the subnet is allowed.
    sub = await api.create("subnets", "subnet", project=P1, **base, cidr="10.1.0.1/24",
                           gateway_ip="10.9.0.1")
    assert sub["cidr"] == "10.1.0.0/24" and sub["gateway_ip"] == "10.9.0.1"
    assert sub["allocation_pools"] == [{"start": "10.1.0.1", "end": "10.1.0.254"}]
    # New subnets start at revision 0; no segment_id without the segments extension.
    assert sub["revision_number"] == 0 and "segment_id" not in sub
    assert sub["router:external"] is False
    status, body = await api.call("PUT", f"/v2.0/subnets/{sub['id']}",
                                  {"subnet": {"name": "s"}}, project=P1)
    assert body["subnet"]["revision_number"] == 1
    status, body = await api.call("POST", "/v2.0/subnets", {"subnet": base}, project=P1)
    assert (status, body["NeutronError"]["type"]) == (400, "BadRequest")
    for cidr in ("10.0.0.0/33", "nonsense"):
        status, body = await api.call("POST", "/v2.0/subnets",
                                      {"subnet": {**base, "cidr": cidr}}, project=P1)
        assert (status, body["NeutronError"]["type"]) == (400, "InvalidInput"), cidr


async def test_subnet_router_external_follows_its_network(api: Api) -> None:
    ext = await api.create("networks", "network", **{"router:external": True})
    sub = await api.create("subnets", "subnet", network_id=ext["id"], ip_version=4,
                           cidr="203.0.113.0/24")
    assert sub["router:external"] is True
    status, _ = await api.call("PUT", f"/v2.0/networks/{ext['id']}",
                               {"network": {"router:external": False}})
    assert status == 200
    _, body = await api.call("GET", f"/v2.0/subnets/{sub['id']}")
    assert body["subnet"]["router:external"] is False
    await api.call("PUT", f"/v2.0/networks/{ext['id']}", {"network": {"router:external": True}})
    _, body = await api.call("GET", "/v2.0/subnets?router:external=true")
    assert [s["id"] for s in body["subnets"]] == [sub["id"]]
