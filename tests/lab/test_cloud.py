"""The whole cloud on the lab: kumonet-server, one real kumonet-agent per host,
VMs booted through the API get their addresses by DHCP from their host's
agent and reach each other across hosts (VXLAN) with ping and TCP.

The lab's own check that its agents start in their host namespaces and
serve; the full L2 suite runs on the shared cloud in ``tests/agent/``.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.lab.conftest import LabFactory, api

pytestmark = [pytest.mark.lab, pytest.mark.slow]


async def test_vms_on_two_hosts_get_dhcp_and_talk_over_vxlan(
    server: str, lab_factory: LabFactory
) -> None:
    net = (await api(server, "POST", "/networks", {"network": {"name": "cloudnet"}}))["network"]
    await api(server, "POST", "/subnets", {"subnet": {
        "network_id": net["id"], "cidr": "10.20.0.0/24", "ip_version": 4,
        "dns_nameservers": ["10.20.0.53"]}})
    lab = await lab_factory.up(2, server_urls=[server], agents=True)
    assert lab.state.agents
    await lab.wait_for_agents()
    agents = (await api(server, "GET", "/agents"))["agents"]
    assert {a["host"] for a in agents if a["alive"]} == {"host1", "host2"}

    a = await lab.add_vm("a", "host1", network=net["id"])
    b = await lab.add_vm("b", "host2", network=net["id"])
    lease_a = await lab.vm_dhcp("a", time_limit=30)
    lease_b = await lab.vm_dhcp("b", time_limit=30)
    assert lease_a.address == a.extra["fixed_ips"]
    assert lease_b.address == b.extra["fixed_ips"]
    assert lease_a.mtu == net["mtu"] == 1450
    assert lease_a.gateway == "10.20.0.1" and lease_a.dns == ("10.20.0.53",)

    assert await lab.ping("a", lease_b.address, attempts=20)
    assert await lab.ping("b", lease_a.address, attempts=20)
    assert await lab.tcp_check("a", "b", lease_b.address, size=300_000)


async def test_l3_hosts_carry_the_flat_external_network_to_the_upstream(
    server: str, lab_factory: LabFactory
) -> None:
    """Real agents on L3 hosts map physnet ``external`` to br-ex: a VM port on
    the flat external network (as a router's gateway port will be) reaches
    the upstream 203.0.113.1 through br-int, the patch and br-ex."""
    lab = await lab_factory.up(2, l3_hosts=1, server_urls=[server], agents=True,
                               report_interval=1)
    await lab.wait_for_agents()
    agents = {a["host"]: a for a in (await api(server, "GET", "/agents"))["agents"]
              if a["agent_type"] == "Open vSwitch agent"}
    assert agents["host1"]["configurations"]["bridge_mappings"] == {"external": "br-ex"}
    assert agents["host2"]["configurations"]["bridge_mappings"] == {}
    ext = (await api(server, "POST", "/networks", {"network": {
        "name": "ext-net", "router:external": True, "provider:network_type": "flat",
        "provider:physical_network": "external"}}))["network"]
    await api(server, "POST", "/subnets", {"subnet": {
        "network_id": ext["id"], "cidr": "203.0.113.0/24", "ip_version": 4,
        "gateway_ip": "203.0.113.1", "enable_dhcp": False,
        "allocation_pools": [{"start": "203.0.113.101", "end": "203.0.113.200"}]}})
    vm = await lab.add_vm("e", "host1", network=ext["id"])
    address = vm.extra["fixed_ips"]
    await lab.vm_exec("e", ["ip", "addr", "add", f"{address}/24", "dev", "eth0"])
    assert await lab.ping("e", "203.0.113.1", attempts=20)
    # the default group admits only its members: open ICMP and the echo port
    assert not await lab.external_ping(address, attempts=2, wait=0.5)
    port = (await api(server, "GET", f"/ports/{vm.port_id}"))["port"]
    for protocol, ports in (("icmp", {}), ("tcp", {"port_range_min": 5431,
                                                   "port_range_max": 5431})):
        await api(server, "POST", "/security-group-rules", {"security_group_rule": {
            "security_group_id": port["security_groups"][0], "direction": "ingress",
            "ethertype": "IPv4", "protocol": protocol, "remote_ip_prefix": "0.0.0.0/0",
            **ports}})
    assert await lab.external_ping(address)
    async with lab.echo_server("e", port=5431), \
            lab.external_tcp_stream(address, 5431) as stream:
        await asyncio.sleep(0.5)
    assert not stream.report.broken and stream.report.echoed > 0
