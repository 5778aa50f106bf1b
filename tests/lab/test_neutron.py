"""VMs booted through the real Neutron API of kumonet-server, as Nova does."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from kumonet.lab.command import wait_until
from kumonet.lab.errors import LabError
from kumonet.lab.process import find_by_marker
from tests.lab.conftest import LabFactory, api

pytestmark = pytest.mark.lab


async def test_vm_add_creates_or_binds_the_port_like_nova(
    server: str, lab_factory: LabFactory
) -> None:
    net = (await api(server, "POST", "/networks", {"network": {"name": "labnet"}}))["network"]
    await api(server, "POST", "/subnets", {"subnet": {
        "network_id": net["id"], "cidr": "10.9.0.0/24", "ip_version": 4}})
    given = (await api(server, "POST", "/ports", {"port": {"network_id": net["id"]}}))["port"]
    lab = await lab_factory.up(2, server_urls=[server])

    booted = await lab.add_vm("vm1", "host1", network="labnet")
    port = (await api(server, "GET", f"/ports/{booted.port_id}"))["port"]
    assert port["binding:host_id"] == "host1"
    assert port["device_owner"] == "compute:nova"
    assert port["name"] == "vm1"
    assert booted.mac == port["mac_address"] and booted.created_port
    ids = await lab.ovs("host1").vsctl("get", "Interface", booted.tap, "external_ids")
    assert f'iface-id="{port["id"]}"' in ids
    # os-vif sets the tap's MTU to the network's
    tap = await lab.host_exec("host1", ["ip", "link", "show", booted.tap])
    assert f"mtu {net['mtu']}" in tap.stdout

    bound = await lab.add_vm("vm2", "host2", port=given["id"])
    assert bound.mac == given["mac_address"] and not bound.created_port
    port = (await api(server, "GET", f"/ports/{given['id']}"))["port"]
    assert port["binding:host_id"] == "host2" and port["device_owner"] == "compute:nova"

    with pytest.raises(LabError, match="networks named"):
        await lab.add_vm("vm3", "host1", network="no-such-net")
    assert "vm3" not in lab.vms()

    # Nova deletes the port it created and unbinds the one it was given
    await lab.del_vm("vm1")
    ports = {p["id"]: p for p in (await api(server, "GET", "/ports"))["ports"]}
    assert booted.port_id not in ports
    await lab.down()
    port = (await api(server, "GET", f"/ports/{given['id']}"))["port"]
    assert port["binding:host_id"] == "" and port["device_id"] == ""


async def test_agents_start_in_their_hosts_and_reach_server_and_ovs(
    server: str, lab_factory: LabFactory
) -> None:
    await api(server, "POST", "/networks", {"network": {"name": "seen-by-agents"}})
    standin = [sys.executable, str(Path(__file__).with_name("standin_agent.py"))]
    lab = await lab_factory.up(2, server_urls=[server], agents=True, agent_command=standin)
    assert lab.state.agents

    for host in lab.state.hosts:
        found_file = Path(host.dir) / "agent" / "standin.json"
        await wait_until(found_file.exists, f"the agent of {host.name} reported nothing")
        found = json.loads(found_file.read_text())
        host_netns = os.stat(f"/run/netns/{host.netns}").st_ino
        assert found == {
            "host": host.name,
            "networks": ["seen-by-agents"],
            "bridges": ["br-int", "br-phy"],
            "br_int_reachable": True,
            "ovs_rundir": host.dir,
            "netns_inode": host_netns,
        }
    status = await lab.status()
    for host_status in status.hosts:
        assert {p.name: p.alive for p in host_status.processes}["kumonet-agent"]
    assert status.relay is not None and status.relay.alive
    await lab.down()
    assert find_by_marker(f"{lab.layout.run_dir}/") == []
