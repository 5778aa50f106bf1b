"""Seed 002's walkthrough against the real ``kumonet-server`` process:
through openstacksdk, and a few commands through the ``openstack`` CLI."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.test_main import VENV_BIN, Server, _cli


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, "sqlite:///kumonet.db")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_openstacksdk_seed_002(server: Server) -> None:
    import openstack

    conn = openstack.connection.Connection(
        auth_type="none", auth={"endpoint": server.url},
        network_endpoint_override=server.url + "/")
    try:
        net = conn.network
        ext = net.create_network(name="ext-net", is_router_external=True,
                                 provider_network_type="flat",
                                 provider_physical_network="extnet")
        ext_sub = net.create_subnet(
            network_id=ext.id, name="ext-subnet", cidr="203.0.113.0/24", ip_version=4,
            is_dhcp_enabled=False, gateway_ip="203.0.113.1",
            allocation_pools=[{"start": "203.0.113.101", "end": "203.0.113.200"}])
        demo = net.create_network(name="demo-net")
        assert demo.provider_network_type == "vxlan"
        demo_sub = net.create_subnet(network_id=demo.id, name="demo-subnet",
                                     cidr="192.168.1.0/24", ip_version=4,
                                     gateway_ip="192.168.1.1", dns_nameservers=["8.8.4.4"])
        router = net.create_router(name="router01")
        assert router.status == "ACTIVE" and router.is_ha is False
        info = net.add_interface_to_router(router, subnet_id=demo_sub.id)
        assert info["subnet_id"] == demo_sub.id and info["id"] == router.id
        router = net.update_router(router, external_gateway_info={"network_id": ext.id})
        assert router.external_gateway_info["external_fixed_ips"] == [
            {"subnet_id": ext_sub.id, "ip_address": "203.0.113.101"}]
        assert router.external_gateway_info["enable_snat"] is True
        # router-port-list
        owners = {p.device_owner: p for p in net.ports(device_id=router.id)}
        assert set(owners) == {"network:router_interface", "network:router_gateway"}
        assert owners["network:router_interface"].fixed_ips[0]["ip_address"] == "192.168.1.1"
        # security group rules on the default group: ICMP and SSH from anywhere
        default = net.find_security_group("default", ignore_missing=False)
        assert default is not None
        net.create_security_group_rule(security_group_id=default.id, direction="ingress",
                                       protocol="icmp", remote_ip_prefix="0.0.0.0/0")
        net.create_security_group_rule(security_group_id=default.id, direction="ingress",
                                       protocol="tcp", port_range_min=22, port_range_max=22,
                                       remote_ip_prefix="0.0.0.0/0")
        assert len(net.get_security_group(default.id).security_group_rules) == 6
        vm = net.create_port(network_id=demo.id, name="vm01", device_owner="compute:nova")
        assert vm.security_group_ids == [default.id]
        assert vm.fixed_ips[0]["ip_address"] == "192.168.1.2"
        fip = net.create_ip(floating_network_id=ext.id)
        assert fip.floating_ip_address == "203.0.113.102"
        fip = net.update_ip(fip, port_id=vm.id)
        assert fip.router_id == router.id and fip.fixed_ip_address == "192.168.1.2"
        assert [f.id for f in net.ips(port_id=vm.id)] == [fip.id]
        # tear down in the order the seed's cleanup does
        net.update_ip(fip, port_id=None)
        net.delete_ip(fip)
        net.delete_port(vm)
        net.update_router(router, external_gateway_info={})
        net.remove_interface_from_router(router, subnet_id=demo_sub.id)
        net.delete_router(router)
        assert list(net.ports(network_id=ext.id)) == []
    finally:
        conn.close()


def test_openstack_cli_l3(server: Server) -> None:
    _cli(server, "network", "create", "--external", "--provider-network-type", "flat",
         "--provider-physical-network", "extnet", "ext-net")
    _cli(server, "subnet", "create", "--network", "ext-net", "--subnet-range",
         "203.0.113.0/24", "--no-dhcp", "--gateway", "203.0.113.1", "--allocation-pool",
         "start=203.0.113.101,end=203.0.113.200", "ext-subnet")
    _cli(server, "network", "create", "demo-net")
    demo_sub = _cli(server, "subnet", "create", "--network", "demo-net", "--subnet-range",
                    "192.168.1.0/24", "demo-subnet")
    router = _cli(server, "router", "create", "router01")
    assert router["name"] == "router01"
    _cli_plain(server, "router", "add", "subnet", "router01", "demo-subnet")
    _cli_plain(server, "router", "set", "--external-gateway", "ext-net", "router01")
    shown = _cli(server, "router", "show", "router01")
    gateway = shown["external_gateway_info"]
    assert gateway["external_fixed_ips"][0]["ip_address"] == "203.0.113.101"
    ports = _cli(server, "port", "list", "--router", "router01")
    assert len(ports) == 2
    rule = _cli(server, "security", "group", "rule", "create", "--protocol", "tcp",
                "--dst-port", "22", "--remote-ip", "0.0.0.0/0", "default")
    assert rule["port_range_min"] == 22 and rule["protocol"] == "tcp"
    fip = _cli(server, "floating", "ip", "create", "ext-net")
    assert fip["floating_ip_address"] == "203.0.113.102"
    assert demo_sub["gateway_ip"] == "192.168.1.1"


def _cli_plain(server: Server, *args: str) -> None:
    """Commands that print nothing (no ``-f json``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    subprocess.run([str(VENV_BIN / "openstack"), "--os-auth-type", "none", "--os-endpoint",
                    server.url + "/", *args], capture_output=True, check=True, env=env,
                   timeout=120)
