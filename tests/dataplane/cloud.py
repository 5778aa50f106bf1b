"""A small cloud used by the dataplane tests: three hosts, tunnelled and provider networks.

Host h1 is the one under test.  Its ofports: local ports 1..6, tunnel ports 20
(to h2) and 21 (to h3), the physnet1 patch 30.
"""

from __future__ import annotations

from typing import Any

from kumonet.dataplane.intent import HostFacts, Intent, from_neutron

H1, H2, H3 = "192.0.2.1", "192.0.2.2", "192.0.2.3"
TUN_H2, TUN_H3, PATCH = 20, 21, 30

MAC = {name: f"fa:16:3e:00:00:{i:02x}" for i, name in enumerate(
    ["a1", "a2", "a3", "a4", "b1", "b2", "v1", "v2", "u1", "f1", "d1", "x"], start=1
)}  # fmt: skip
PAIR_MAC = "fa:16:3e:aa:aa:aa"


def network(id_: str, kind: str, seg: int | None, physnet: str | None = None) -> dict[str, Any]:
    return {
        "id": id_,
        "provider:network_type": kind,
        "provider:segmentation_id": seg,
        "provider:physical_network": physnet,
        "mtu": 1450 if kind == "vxlan" else 1500,
        "admin_state_up": True,
    }


def subnet(id_: str, net: str, cidr: str, *, dhcp: bool = True, gateway: str | None = None,
           **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "id": id_,
        "network_id": net,
        "cidr": cidr,
        "ip_version": 6 if ":" in cidr else 4,
        "gateway_ip": gateway,
        "enable_dhcp": dhcp,
        "dns_nameservers": [],
        "host_routes": [],
        **extra,
    }


def port(
    name: str, net: str, host: str, ips: list[tuple[str, str]], **extra: Any
) -> dict[str, Any]:
    return {
        "id": f"port-{name}",
        "network_id": net,
        "mac_address": MAC[name],
        "fixed_ips": [{"subnet_id": s, "ip_address": ip} for s, ip in ips],
        "binding:host_id": host,
        "admin_state_up": True,
        "port_security_enabled": True,
        "allowed_address_pairs": [],
        "device_owner": "compute:nova",
        "security_groups": [OPEN_GROUP],
        **extra,
    }


# The L2 tests put every port in a group that allows everything, statefully;
# the security group tests build their own groups.
OPEN_GROUP = "sg-open"


def rule(id_: str, direction: str, ethertype: str = "IPv4", **extra: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "direction": direction,
        "ethertype": ethertype,
        "protocol": None,
        "port_range_min": None,
        "port_range_max": None,
        "remote_ip_prefix": None,
        "remote_group_id": None,
        **extra,
    }


def group(id_: str, rules: list[dict[str, Any]], stateful: bool = True) -> dict[str, Any]:
    return {"id": id_, "name": id_, "stateful": stateful, "security_group_rules": rules}


def open_group() -> dict[str, Any]:
    return group(OPEN_GROUP, [
        rule(f"open-{direction}-{ether}", direction, ether)
        for direction in ("ingress", "egress") for ether in ("IPv4", "IPv6")
    ])  # fmt: skip


def neutron_dicts() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    networks = [
        network("net-a", "vxlan", 100),
        network("net-b", "vxlan", 200),
        network("net-v", "vlan", 42, "physnet1"),
        network("net-f", "flat", None, "physnet1"),
        network("net-d", "vxlan", 300),
    ]
    subnets = [
        subnet("sub-a", "net-a", "10.0.0.0/24", gateway="10.0.0.1"),
        subnet("sub-a6", "net-a", "2001:db8::/64", gateway="2001:db8::1"),
        subnet("sub-b", "net-b", "10.0.0.0/24", gateway="10.0.0.1"),
        subnet("sub-v", "net-v", "10.1.0.0/24", gateway="10.1.0.1"),
        subnet("sub-f", "net-f", "10.2.0.0/24", gateway="10.2.0.1"),
        subnet("sub-d", "net-d", "10.3.0.0/24", dhcp=False),
    ]
    ports = [
        port("a1", "net-a", "h1", [("sub-a", "10.0.0.11"), ("sub-a6", "2001:db8::11")],
             allowed_address_pairs=[{"ip_address": "10.0.0.100"},
                                    {"ip_address": "10.0.0.200/32", "mac_address": PAIR_MAC}]),
        port("a2", "net-a", "h1", [("sub-a", "10.0.0.12")]),
        port("a3", "net-a", "h2", [("sub-a", "10.0.0.13")]),
        port("a4", "net-a", "h3", [("sub-a", "10.0.0.14")]),
        port("b1", "net-b", "h1", [("sub-b", "10.0.0.11")]),
        port("b2", "net-b", "h2", [("sub-b", "10.0.0.12")]),
        port("v1", "net-v", "h1", [("sub-v", "10.1.0.11")]),
        port("v2", "net-v", "h2", [("sub-v", "10.1.0.12")]),
        port("u1", "net-a", "h1", [("sub-a", "10.0.0.21")], port_security_enabled=False),
        port("f1", "net-f", "h1", [("sub-f", "10.2.0.11")]),
        port("d1", "net-d", "h1", [("sub-d", "10.3.0.11")]),
    ]  # fmt: skip
    return networks, subnets, ports


OFPORT = {"port-a1": 1, "port-a2": 2, "port-b1": 3, "port-v1": 4, "port-u1": 5, "port-f1": 6,
          "port-d1": 7}  # fmt: skip


def cloud_intent() -> Intent:
    networks, subnets, ports = neutron_dicts()
    return from_neutron(networks, subnets, ports, {"h1": H1, "h2": H2, "h3": H3}, [open_group()])


def h1_facts(bridge: str = "br-int", **overrides: Any) -> HostFacts:
    values: dict[str, Any] = {
        "host": "h1",
        "tunnel_ip": H1,
        "tunnel_types": ("vxlan", "gre"),
        "local_ofports": OFPORT,
        "tunnel_ofports": {f"vxlan-{H2}": TUN_H2, f"vxlan-{H3}": TUN_H3},
        "patch_ofports": {"physnet1": PATCH},
        "bridge_mappings": {"physnet1": "br-ex"},
        "integration_bridge": bridge,
    }
    values.update(overrides)
    return HostFacts(**values)
