"""Intent from Neutron API JSON, as GET /v2.0/... returns it."""

from __future__ import annotations

import pytest

from kumonet.dataplane.intent import (
    AddressPair,
    FixedIp,
    Host,
    HostRoute,
    SecurityGroupRule,
    from_neutron,
    hosts_from_agents,
    network_key,
    port_from_neutron,
    protocol_number,
    security_group_from_neutron,
    security_group_rule_from_neutron,
)

NEUTRON_PORT = {
    "id": "6f1a7b9c-0000-4000-8000-000000000001",
    "network_id": "net-1",
    "mac_address": "FA:16:3E:12:34:56",
    "fixed_ips": [{"subnet_id": "sub-1", "ip_address": "10.0.0.5"}],
    "allowed_address_pairs": [
        {"ip_address": "10.0.0.100/32", "mac_address": "fa:16:3e:12:34:56"},
        {"ip_address": "10.0.1.0/24"},
        {"ip_address": "10.0.0.7", "mac_address": "fa:16:3e:aa:bb:cc"},
    ],
    "port_security_enabled": True,
    "admin_state_up": True,
    "device_owner": "compute:nova",
    "binding:host_id": "compute-1",
    "binding:vif_type": "ovs",
    "security_groups": [],
    "status": "DOWN",
}


def test_port_from_neutron() -> None:
    port = port_from_neutron(NEUTRON_PORT)
    assert port.mac_address == "fa:16:3e:12:34:56"
    assert port.fixed_ips == (FixedIp("sub-1", "10.0.0.5"),)
    assert port.allowed_address_pairs[1] == AddressPair("10.0.1.0/24", "fa:16:3e:12:34:56")
    assert port.host == "compute-1" and port.device_owner == "compute:nova"
    assert port.macs() == ("fa:16:3e:12:34:56", "fa:16:3e:aa:bb:cc")
    assert port.addresses_by_mac() == {
        "fa:16:3e:12:34:56": ["10.0.0.5", "10.0.0.100", "10.0.1.0/24"],
        "fa:16:3e:aa:bb:cc": ["10.0.0.7"],
    }


def test_port_security_absent_means_enabled_and_unbound_means_no_host() -> None:
    body = {
        k: v
        for k, v in NEUTRON_PORT.items()
        if k not in ("port_security_enabled", "binding:host_id")
    }
    port = port_from_neutron(body)
    assert port.port_security_enabled and port.host == ""
    assert not port_from_neutron(
        {**NEUTRON_PORT, "port_security_enabled": False}
    ).port_security_enabled


def test_from_neutron_builds_the_whole_intent() -> None:
    intent = from_neutron(
        [{"id": "net-1", "provider:network_type": "vlan", "provider:segmentation_id": 42,
          "provider:physical_network": "physnet1", "mtu": 1500, "admin_state_up": True},
         {"id": "net-2", "provider:network_type": "vxlan", "provider:segmentation_id": 7,
          "provider:physical_network": None, "mtu": 1450}],
        [{"id": "sub-1", "network_id": "net-1", "cidr": "10.0.0.0/24", "ip_version": 4,
          "gateway_ip": "10.0.0.1", "enable_dhcp": True, "dns_nameservers": ["8.8.8.8"],
          "host_routes": [{"destination": "172.16.0.0/12", "nexthop": "10.0.0.254"}]}],
        [NEUTRON_PORT],
        {"compute-1": "192.0.2.11"},
    )  # fmt: skip
    net = intent.networks["net-1"]
    assert (net.network_type, net.segmentation_id, net.physical_network) == ("vlan", 42, "physnet1")
    assert net.is_provider and intent.networks["net-2"].is_tunneled
    subnet = intent.subnets["sub-1"]
    assert subnet.host_routes == (HostRoute("172.16.0.0/12", "10.0.0.254"),)
    assert subnet.dns_nameservers == ("8.8.8.8",)
    assert intent.hosts == {"compute-1": Host("compute-1", "192.0.2.11")}
    assert [s.id for s in intent.subnets_of("net-1")] == ["sub-1"]


def test_hosts_from_neutron_agents() -> None:
    agents = [
        {"host": "compute-1", "configurations": {"tunneling_ip": "192.0.2.11"}},
        {"host": "l3-1", "configurations": {}},
    ]
    assert hosts_from_agents(agents) == {"compute-1": "192.0.2.11"}


def test_network_key_is_stable_and_distinct() -> None:
    assert network_key("net-1") == network_key("net-1")
    assert len({network_key(f"net-{i}") for i in range(1000)}) == 1000
    assert 0 < network_key("x") < 2**64


# ------------------------------------------------------------ security groups

# A group as the API stores it (/config/neutron/security_groups/<id>): rules embedded.
STORED_GROUP = {
    "id": "sg-1",
    "name": "default",
    "stateful": True,
    "tenant_id": "p1",
    "security_group_rules": [
        {"id": "r3", "security_group_id": "sg-1", "direction": "ingress", "ethertype": "IPv4",
         "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
         "remote_ip_prefix": "0.0.0.0/0", "normalized_cidr": "0.0.0.0/0",
         "remote_group_id": None, "remote_address_group_id": None},
        {"id": "r1", "security_group_id": "sg-1", "direction": "egress", "ethertype": "IPv6",
         "protocol": None, "port_range_min": None, "port_range_max": None,
         "remote_ip_prefix": None, "normalized_cidr": "::/0", "remote_group_id": None},
        {"id": "r2", "security_group_id": "sg-1", "direction": "ingress", "ethertype": "IPv6",
         "protocol": "icmp", "port_range_min": 128, "port_range_max": None,
         "remote_ip_prefix": None, "remote_group_id": "sg-1"},
        {"id": "r4", "direction": "ingress", "ethertype": "IPv4", "protocol": "112",
         "remote_ip_prefix": "10.0.0.5/24"},
    ],
}  # fmt: skip


def test_security_group_from_neutron() -> None:
    group = security_group_from_neutron(STORED_GROUP)
    assert group.id == "sg-1" and group.stateful
    assert [rule.id for rule in group.rules] == ["r1", "r2", "r3", "r4"]  # order-free value
    r1, r2, r3, r4 = group.rules
    assert r1 == SecurityGroupRule("r1", "egress", "IPv6")
    # ICMP in an IPv6 rule means ICMPv6, as Neutron's drivers read it.
    assert (r2.protocol, r2.port_range_min, r2.port_range_max) == (58, 128, None)
    assert r2.remote_group_id == "sg-1" and r2.is_ipv6
    assert (r3.protocol, r3.port_range_min, r3.port_range_max) == (6, 22, 22)
    assert r3.remote_ip_prefix == "0.0.0.0/0"
    # A protocol number as text; a prefix with host bits set is normalised.
    assert r4.protocol == 112 and r4.remote_ip_prefix == "10.0.0.0/24"
    shuffled = {**STORED_GROUP, "security_group_rules": STORED_GROUP["security_group_rules"][::-1]}
    assert security_group_from_neutron(shuffled) == group
    assert not security_group_from_neutron({**STORED_GROUP, "stateful": False}).stateful


@pytest.mark.parametrize(
    ("value", "ethertype", "number"),
    [(None, "IPv4", None), ("any", "IPv4", None), ("tcp", "IPv4", 6), ("UDP", "IPv4", 17),
     ("icmp", "IPv4", 1), ("icmp", "IPv6", 58), ("ipv6-icmp", "IPv6", 58), ("icmpv6", "IPv6", 58),
     (1, "IPv6", 58), ("6", "IPv4", 6), (132, "IPv4", 132)],
)  # fmt: skip
def test_protocol_by_name_or_number(value: object, ethertype: str, number: int | None) -> None:
    assert protocol_number(value, ethertype) == number


def test_malformed_rules_raise() -> None:
    with pytest.raises(ValueError):
        security_group_rule_from_neutron({"id": "x", "direction": "sideways"})
    with pytest.raises(ValueError):
        security_group_rule_from_neutron(
            {"id": "x", "direction": "ingress", "ethertype": "IPv6",
             "remote_ip_prefix": "10.0.0.0/8"}
        )  # fmt: skip
    with pytest.raises((ValueError, KeyError)):
        security_group_rule_from_neutron({"id": "x", "direction": "ingress", "protocol": "nope"})


def test_ports_carry_their_groups_and_member_addresses() -> None:
    port = port_from_neutron({**NEUTRON_PORT, "security_groups": ["sg-1", "sg-2"]})
    assert port.security_groups == ("sg-1", "sg-2")
    # Fixed IPs and allowed address pairs are the addresses a remote group matches.
    assert port.member_addresses() == ("10.0.0.5", "10.0.0.100", "10.0.1.0/24", "10.0.0.7")
    intent = from_neutron([], [], [NEUTRON_PORT], {}, [STORED_GROUP])
    assert set(intent.security_groups) == {"sg-1"}
    assert port_from_neutron(NEUTRON_PORT).security_groups == ()
