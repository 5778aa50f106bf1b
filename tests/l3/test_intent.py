from __future__ import annotations

import pytest

from kumonet.l3.intent import (
    ExtraRoute,
    FloatingIp,
    RouterIntentError,
    router_from_neutron,
)

R = "rrrrrrrr-0000-4000-8000-000000000001"
EXT_NET = "eeeeeeee-0000-4000-8000-000000000001"
EXT_SUBNET = "eeeeeeee-1111-4000-8000-000000000001"
SUBNET_A = "aaaaaaaa-1111-4000-8000-000000000001"
HA_SUBNET = "hhhhhhhh-1111-4000-8000-000000000001"

SUBNETS = [
    {
        "id": EXT_SUBNET,
        "network_id": EXT_NET,
        "cidr": "203.0.113.0/24",
        "gateway_ip": "203.0.113.1",
    },
    {"id": SUBNET_A, "network_id": "net-a", "cidr": "192.168.1.0/24", "gateway_ip": "192.168.1.1"},
]


def _port(pid: str, owner: str, ip: str, subnet: str, **extra: object) -> dict[str, object]:
    return {
        "id": pid,
        "device_id": R,
        "device_owner": owner,
        "mac_address": f"fa:16:3e:00:00:{pid[-2:]}",
        "network_id": "net",
        "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}],
        **extra,
    }


PORTS = [
    _port("qr000000-0001", "network:router_interface", "192.168.1.1", SUBNET_A),
    _port("qg000000-0002", "network:router_gateway", "203.0.113.101", EXT_SUBNET),
    _port(
        "ha000000-0003",
        "network:router_ha_interface",
        "169.254.192.3",
        HA_SUBNET,
        **{"binding:host_id": "host-a"},
    ),
    _port(
        "ha000000-0004",
        "network:router_ha_interface",
        "169.254.192.4",
        HA_SUBNET,
        **{"binding:host_id": "host-b"},
    ),
    {**_port("vm000000-0005", "compute:nova", "192.168.1.5", SUBNET_A), "device_id": "vm"},
]
ROUTER = {
    "id": R,
    "project_id": "p1",
    "ha": True,
    "ha_vr_id": 9,
    "external_gateway_info": {"network_id": EXT_NET, "enable_snat": False},
    "routes": [{"destination": "10.99.0.0/16", "nexthop": "192.168.1.254"}],
}
FIPS = [
    {
        "floating_ip_address": "203.0.113.105",
        "fixed_ip_address": "192.168.1.5",
        "router_id": R,
        "port_id": "vm000000-0005",
    },
    {
        "floating_ip_address": "203.0.113.106",
        "fixed_ip_address": None,
        "router_id": None,
        "port_id": None,
    },
    {
        "floating_ip_address": "203.0.113.107",
        "fixed_ip_address": "10.0.0.9",
        "router_id": "another-router",
        "port_id": "x",
    },
]


def test_router_from_neutron_for_one_host() -> None:
    intent = router_from_neutron(ROUTER, PORTS, SUBNETS, host="host-a", floatingips=FIPS)
    assert intent.id == R and intent.project_id == "p1"
    assert [(i.port_id, i.cidrs) for i in intent.internal] == [
        ("qr000000-0001", ("192.168.1.1/24",))
    ]
    assert intent.gateway is not None
    assert intent.gateway.cidrs == ("203.0.113.101/24",)
    assert intent.gateway.gateway_ips == ("203.0.113.1",)
    assert intent.gateway.enable_snat is False
    assert intent.floating_ips == (FloatingIp("203.0.113.105", "192.168.1.5"),)
    assert intent.routes == (ExtraRoute("10.99.0.0/16", "192.168.1.254"),)
    assert intent.ha is not None
    assert intent.ha.vrrp_id == 9
    # The HA subnet is not visible to the caller: its fixed /18 is assumed.
    assert intent.ha.interface.cidr == "169.254.192.3/18"
    assert intent.ha.interface.port_id == "ha000000-0003"
    assert intent.ha.peer_ips == ("169.254.192.4",)
    other = router_from_neutron(ROUTER, PORTS, SUBNETS, host="host-b", floatingips=FIPS)
    assert other.ha is not None and other.ha.interface.cidr == "169.254.192.4/18"


def test_ha_router_without_a_port_on_this_host_is_refused() -> None:
    with pytest.raises(RouterIntentError):
        router_from_neutron(ROUTER, PORTS, SUBNETS, host="host-c")


def test_gateway_info_without_a_port_yet_means_no_gateway() -> None:
    ports = [p for p in PORTS if p["device_owner"] != "network:router_gateway"]
    intent = router_from_neutron({**ROUTER, "ha": False}, ports, SUBNETS, host="host-a")
    assert intent.gateway is None and intent.ha is None


def test_unknown_subnet_is_an_error() -> None:
    with pytest.raises(RouterIntentError):
        router_from_neutron({**ROUTER, "ha": False}, PORTS, SUBNETS[:1], host="host-a")
