"""Intent from Neutron API JSON, as GET /v2.0/... returns it."""

from __future__ import annotations

from kumonet.dataplane.intent import (
    AddressPair,
    FixedIp,
    Host,
    HostRoute,
    from_neutron,
    hosts_from_agents,
    network_key,
    port_from_neutron,
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
