"""End-to-end tests of the lab on real namespaces and Open vSwitch."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kumonet.lab.command import run, wait_until
from kumonet.lab.errors import LabError
from kumonet.lab.lab import Lab
from kumonet.lab.layout import DEFAULT_ROOT
from kumonet.lab.process import is_alive, netns_list, read_pidfile
from tests.lab.conftest import LabFactory, VmFactory, leftovers, unique_prefix

pytestmark = pytest.mark.lab

PORT_A = "7a1e5b1c-0001-4000-8000-00000000000a"
PORT_B = "7a1e5b1c-0002-4000-8000-00000000000b"


async def wire_by_hand(lab: Lab) -> None:
    """What the agent and compiler will do, done by hand to prove the plumbing:
    a full mesh of VXLAN tunnels and a NORMAL (learning switch) flow."""
    for host in lab.state.hosts:
        ovs = lab.ovs(host.name)
        await ovs.ofctl("add-flow", "br-int", "priority=0,actions=NORMAL")
        for remote in lab.state.hosts:
            if remote.name == host.name:
                continue
            port = f"vxlan-{remote.underlay_ip}"
            await ovs.vsctl(
                "add-port", "br-int", port, "--", "set", "Interface", port, "type=vxlan",
                "options:key=flow", f"options:local_ip={host.underlay_ip}",
                f"options:remote_ip={remote.underlay_ip}",
            )


async def test_up_then_down_leaves_nothing(lab_factory: LabFactory) -> None:
    lab = await lab_factory.up(2)
    prefix = lab.layout.prefix
    namespaces = await netns_list()
    assert {f"{prefix}-host1", f"{prefix}-host2", f"{prefix}-ul"} <= set(namespaces)
    status = await lab.status()
    assert [h.name for h in status.hosts] == ["host1", "host2"]
    for host in status.hosts:
        assert host.netns_exists
        assert {p.name for p in host.processes if p.alive} == {"ovsdb-server", "ovs-vswitchd"}
    # each host: br-int secure/netdev, br-phy holding the underlay address
    ovs = lab.ovs("host2")
    assert (await ovs.vsctl("get", "Bridge", "br-int", "fail_mode")).strip() == "secure"
    assert (await ovs.vsctl("get", "Bridge", "br-int", "datapath_type")).strip() == "netdev"
    addr = (await lab.host_exec("host2", ["ip", "-4", "-o", "addr", "show", "br-phy"])).stdout
    assert "192.0.2.2/24" in addr
    # the underlay carries host-to-host traffic
    ping = await lab.host_exec("host1", ["ping", "-c1", "-W2", "192.0.2.2"], check=False)
    assert ping.ok, ping.stdout + ping.stderr
    assert await leftovers(prefix) != []

    report = await lab.down()
    assert report.run_dir_removed
    assert await leftovers(prefix) == []
    again = await Lab.teardown(prefix)
    assert not again.anything


async def test_up_refuses_an_existing_lab(lab_factory: LabFactory) -> None:
    lab = await lab_factory.up(1)
    with pytest.raises(LabError, match="exists"):
        await Lab.up(1, prefix=lab.layout.prefix, agents=False)
    assert Lab.load(lab.layout.prefix).state == lab.state
    assert (await lab.status()).hosts[0].netns_exists


async def test_of_two_concurrent_ups_one_wins_intact(lab_factory: LabFactory) -> None:
    prefix = lab_factory.new_prefix()
    results = await asyncio.gather(
        Lab.up(2, prefix=prefix, agents=False), Lab.up(2, prefix=prefix, agents=False),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, Lab)]
    losers = [r for r in results if isinstance(r, LabError)]
    assert len(winners) == 1 and len(losers) == 1, results
    status = await Lab.load(prefix).status()
    assert all(h.netns_exists and all(p.alive for p in h.processes) for h in status.hosts)


async def test_vm_is_plugged_as_nova_plugs_it(lab: Lab, vms: VmFactory) -> None:
    vm = await vms.add("plug1", "host2", port_id=PORT_A, mac="fa:16:3e:11:22:33")
    assert vm.tap == "tap" + PORT_A[:11] and len(vm.tap) <= 15
    ovs = lab.ovs("host2")
    assert (await ovs.vsctl("port-to-br", vm.tap)).strip() == "br-int"
    ids = await ovs.vsctl("get", "Interface", vm.tap, "external_ids")
    assert f'iface-id="{PORT_A}"' in ids
    assert 'attached-mac="fa:16:3e:11:22:33"' in ids
    assert "iface-status=active" in ids
    assert int((await ovs.vsctl("get", "Interface", vm.tap, "ofport")).strip()) > 0
    link = (await lab.vm_exec("plug1", ["ip", "-o", "link", "show", "eth0"])).stdout
    assert "fa:16:3e:11:22:33" in link
    retrans = await lab.vm_exec(
        "plug1", ["sysctl", "-n", "net.ipv4.neigh.eth0.retrans_time_ms"]
    )
    assert retrans.stdout.strip() == "100"
    for offload in (
        await lab.vm_exec("plug1", ["ethtool", "-k", "eth0"]),
        await lab.host_exec("host2", ["ethtool", "-k", vm.tap]),
    ):
        assert "tx-checksumming: off" in offload.stdout
    assert "plug1" in lab.vms()

    await lab.del_vm("plug1")
    assert "plug1" not in lab.vms()
    assert lab.layout.vm_netns("plug1") not in await netns_list()
    assert vm.tap not in await ovs.vsctl("list-ports", "br-int")


async def test_a_vm_whose_tap_name_is_taken_is_refused(lab: Lab, vms: VmFactory) -> None:
    first = await vms.add("clash1", "host3", port_id=PORT_A, mac="fa:16:3e:00:00:0a")
    same_tap = PORT_A[:11] + "ffff-4000-8000-0000000000ff"
    with pytest.raises(LabError, match="used by clash1"):
        await vms.add("clash2", "host3", port_id=same_tap, mac="fa:16:3e:00:00:0b")
    assert "clash2" not in lab.vms()
    assert lab.layout.vm_netns("clash2") not in await netns_list()
    # the first VM is untouched
    assert first.tap in await lab.ovs("host3").vsctl("list-ports", "br-int")
    # on another host the same tap name is fine (each host has its own namespace)
    await vms.add("clash3", "host1", port_id=same_tap, mac="fa:16:3e:00:00:0b")


async def test_vms_on_two_hosts_ping_and_tcp_over_vxlan(lab_factory: LabFactory) -> None:
    lab = await lab_factory.up(2)
    await wire_by_hand(lab)
    # a real VM learns its MTU (1450 on a 1500 VXLAN underlay) by DHCP; set it here
    await lab.add_vm("a", "host1", port_id=PORT_A, mac="fa:16:3e:00:00:0a", mtu=1450)
    await lab.add_vm("b", "host2", port_id=PORT_B, mac="fa:16:3e:00:00:0b", mtu=1450)
    await lab.vm_exec("a", ["ip", "addr", "add", "10.0.0.10/24", "dev", "eth0"])
    await lab.vm_exec("b", ["ip", "addr", "add", "10.0.0.11/24", "dev", "eth0"])

    assert await lab.ping("a", "10.0.0.11")
    assert await lab.ping("b", "10.0.0.10")
    # TCP (checksum offload would break it while ping still works), full-size segments
    assert await lab.tcp_check("a", "b", "10.0.0.11", size=300_000)
    assert await lab.tcp_check("b", "a", "10.0.0.10", size=300_000)
    # it really went through the tunnel
    flows = await lab.ovs("host1").appctl("dpctl/dump-flows")
    assert "tnl_push" in flows.stdout or "vxlan" in flows.stdout
    assert any("actions=NORMAL" in f for f in await lab.dump_flows("host1"))


async def test_two_labs_side_by_side(lab_factory: LabFactory) -> None:
    one, two = await asyncio.gather(lab_factory.up(2), lab_factory.up(2))
    for lab in (one, two):
        await wire_by_hand(lab)
        # the same names, MACs and addresses in both: the labs are separate worlds
        await lab.add_vm("a", "host1", port_id=PORT_A, mac="fa:16:3e:00:00:0a")
        await lab.add_vm("b", "host2", port_id=PORT_B, mac="fa:16:3e:00:00:0b")
        await lab.vm_exec("a", ["ip", "addr", "add", "10.0.0.10/24", "dev", "eth0"])
        await lab.vm_exec("b", ["ip", "addr", "add", "10.0.0.11/24", "dev", "eth0"])
    assert await one.ping("a", "10.0.0.11")
    assert await two.ping("a", "10.0.0.11")

    await one.down()
    assert await leftovers(one.layout.prefix) == []
    assert await two.ping("b", "10.0.0.10")
    assert await two.tcp_check("a", "b", "10.0.0.11", size=1000)
    assert len((await two.status()).vms) == 2


async def test_status_shows_a_dead_vswitchd(lab_factory: LabFactory) -> None:
    lab = await lab_factory.up(2)
    pid = read_pidfile(lab.ovs("host1").vswitchd_pidfile)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await wait_until(lambda: not is_alive(pid), "ovs-vswitchd survived SIGKILL")
    status = await lab.status()
    by_host = {h.name: {p.name: p.alive for p in h.processes} for h in status.hosts}
    assert by_host == {
        "host1": {"ovsdb-server": True, "ovs-vswitchd": False},
        "host2": {"ovsdb-server": True, "ovs-vswitchd": True},
    }


async def test_failed_up_cleans_up_after_itself(lab_skip: None) -> None:
    prefix = unique_prefix()
    # an underlay MTU the kernel refuses makes host creation fail midway
    with pytest.raises(LabError):
        await Lab.up(2, prefix=prefix, agents=False, underlay_mtu=10)
    assert await leftovers(prefix) == []
    assert not (await Lab.teardown(prefix)).anything


def test_cli_up_status_exec_down(lab_skip: None, tmp_path: Path) -> None:
    prefix = unique_prefix()
    kumonet = [sys.executable, "-m", "kumonet.cli.main", "lab"]
    try:
        up = subprocess.run([*kumonet, "up", "--hosts", "2", "--prefix", prefix, "--no-agents"],
                            capture_output=True, text=True, check=False)
        assert up.returncode == 0, up.stderr
        assert "host2: netns" in up.stdout
        status = subprocess.run([*kumonet, "status", "--prefix", prefix],
                                capture_output=True, text=True, check=False)
        assert status.returncode == 0, status.stderr
        assert "ovs-vswitchd pid" in status.stdout and "DEAD" not in status.stdout
        shown = subprocess.run(
            [*kumonet, "host", "exec", "host1", "--prefix", prefix, "--", "ovs-vsctl",
             "br-exists", "br-int"], capture_output=True, text=True, check=False)
        assert shown.returncode == 0, shown.stderr
        missing = subprocess.run([*kumonet, "status", "--prefix", unique_prefix()],
                                 capture_output=True, text=True, check=False)
        assert missing.returncode == 1 and "no lab" in missing.stderr
        lab = Lab.load(prefix)
        asyncio.run(lab.add_vm("v", "host2", port_id=PORT_A, mac="fa:16:3e:00:00:0a"))
        shown = subprocess.run(
            [*kumonet, "vm", "exec", "v", "--prefix", prefix, "--", "ip", "-o", "link"],
            capture_output=True, text=True, check=False)
        assert shown.returncode == 0 and "fa:16:3e:00:00:0a" in shown.stdout, shown.stderr
        failed = subprocess.run(
            [*kumonet, "vm", "exec", "--prefix", prefix, "v", "--", "false"], check=False)
        assert failed.returncode == 1
        flows = subprocess.run([*kumonet, "flows", "host2", "--prefix", prefix],
                               capture_output=True, text=True, check=False)
        assert flows.returncode == 0 and flows.stdout == ""  # secure, no flows yet
        status = subprocess.run([*kumonet, "status", "--prefix", prefix, "--json"],
                                capture_output=True, text=True, check=False)
        assert json.loads(status.stdout)["vms"][0]["host"] == "host2"
        down = subprocess.run(
            [*kumonet, "down", "--prefix", prefix, "--keep-logs", str(tmp_path)],
            capture_output=True, text=True, check=False)
        assert down.returncode == 0, down.stderr
        assert "down:" in down.stdout and "logs kept" in down.stdout
        kept = next(tmp_path.iterdir())
        assert (kept / "hosts" / "host1" / "ovs-vswitchd.log").exists()
        assert not Path(DEFAULT_ROOT / prefix).exists()
    finally:
        asyncio.run(Lab.teardown(prefix))


def _write_state(lab: Lab, host: str, router_id: str, state: str) -> None:
    directory = Path(lab.host(host).dir) / "agent" / "ha_confs" / router_id
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "state").write_text(state + "\n")


async def test_router_helpers_name_and_read_what_the_l3_agent_keeps(l3_lab: Lab) -> None:
    router = "0c1d2e3f-0000-4000-8000-000000000001"
    ns = l3_lab.router_netns("host2", router)
    assert ns == f"{l3_lab.layout.prefix}-host2-qrouter-{router}"
    _write_state(l3_lab, "host1", router, "standby")
    _write_state(l3_lab, "host2", router, "active")
    states = l3_lab.router_states(router)
    assert {host: state.value for host, state in states.items()} == {
        "host1": "standby", "host2": "active"}
    assert l3_lab.router_states("no-such-router") == {}
    await run(["ip", "netns", "add", ns])
    try:
        shown = await l3_lab.router_exec("host2", router, ["ip", "-o", "link"])
        assert "lo" in shown.stdout
    finally:
        await run(["ip", "netns", "del", ns])
