"""L3 hosts and the external network: br-ex wired to the upstream namespace."""

from __future__ import annotations

import asyncio
import configparser
import subprocess
import sys
from pathlib import Path

import pytest

from kumonet.lab.command import in_netns, run
from kumonet.lab.errors import LabError
from kumonet.lab.lab import Lab
from kumonet.lab.outage import EchoServer
from tests.lab.conftest import LabFactory, leftovers

pytestmark = pytest.mark.lab


async def plug_on_br_ex(lab: Lab, host: str, name: str, address: str) -> str:
    """A VM-like namespace with ``address`` on a veth whose other end is a
    port of ``host``'s br-ex (named after the lab, so teardown removes it)."""
    ns = lab.layout.vm_netns(name)
    record = lab.host(host)
    outer = f"xv{name}"[:15]
    await run(["ip", "netns", "add", ns])
    await run(["ip", "-n", ns, "link", "set", "lo", "up"])
    await run(["ip", "link", "add", outer, "netns", record.netns, "type", "veth",
               "peer", "name", "eth0", "netns", ns])
    await run(in_netns(ns, ["ethtool", "-K", "eth0", "tx", "off"]))
    await run(in_netns(record.netns, ["ethtool", "-K", outer, "tx", "off"]))
    await run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0"])
    await run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    await run(["ip", "-n", record.netns, "link", "set", outer, "up"])
    await lab.ovs(host).vsctl("add-port", "br-ex", outer)
    return ns


async def test_l3_hosts_have_br_ex_on_the_external_network(l3_lab: Lab) -> None:
    layout = l3_lab.layout
    assert [h.l3 for h in l3_lab.state.hosts] == [True, True, False]
    for host in ("host1", "host2"):
        ports = (await l3_lab.ovs(host).vsctl("list-ports", "br-ex")).split()
        assert ports == [layout.host_external_link]
        assert (await l3_lab.ovs(host).vsctl("get", "Bridge", "br-ex", "datapath_type")
                ).strip() == "netdev"
    assert "br-ex" not in (await l3_lab.ovs("host3").vsctl("list-br")).split()
    host3_links = (await l3_lab.host_exec("host3", ["ip", "-o", "link"])).stdout
    assert layout.host_external_link + "@" not in host3_links
    # the upstream holds 203.0.113.1/24; the switch ports are the L3 hosts and it
    upstream = await l3_lab.external_exec(["ip", "-4", "-o", "addr", "show", "eth0"])
    assert "203.0.113.1/24" in upstream.stdout
    ports = await run(["ip", "-n", layout.external_switch_netns, "-o", "link", "show",
                       "master", layout.external_bridge])
    names = {line.split(":")[1].strip().split("@")[0] for line in ports.stdout.splitlines()}
    assert names == {layout.external_port("host1"), layout.external_port("host2"),
                     layout.external_uplink_port}
    # no checksum offload on any external veth end (TCP would break)
    for ns, dev in (
        (layout.external_netns, "eth0"),
        (layout.external_switch_netns, layout.external_uplink_port),
        (layout.external_switch_netns, layout.external_port("host1")),
        (l3_lab.host("host1").netns, layout.host_external_link),
    ):
        features = await run(in_netns(ns, ["ethtool", "-k", dev]))
        assert "tx-checksumming: off" in features.stdout, (ns, dev)


async def test_l3_agent_config(l3_lab: Lab) -> None:
    parsed = {}
    for host in ("host1", "host3"):
        config = configparser.ConfigParser(interpolation=None)
        config.read(Path(l3_lab.host(host).dir) / "agent.ini")
        parsed[host] = config
    one, three = parsed["host1"], parsed["host3"]
    assert one["agent"]["l3_agent"] == "true" and one["agent"]["agent_mode"] == "legacy"
    assert one["ovs"]["bridge_mappings"] == "external:br-ex"
    assert one["kumonet"]["router_namespace_prefix"] == f"{l3_lab.layout.prefix}-host1-"
    assert three["agent"]["l3_agent"] == "false"
    assert three["ovs"]["bridge_mappings"] == ""
    assert "router_namespace_prefix" not in three["kumonet"]


async def test_upstream_reaches_a_namespace_behind_br_ex(l3_lab: Lab) -> None:
    # br-ex of a lab without a real agent forwards NORMAL (standalone)
    ns = await plug_on_br_ex(l3_lab, "host2", "exta", "203.0.113.21")
    try:
        ping = await run(in_netns(ns, ["ping", "-c1", "-W2", "203.0.113.1"]), check=False)
        assert ping.ok, ping.stdout
        assert await l3_lab.external_ping("203.0.113.21")
        # TCP too, full-size segments (offloads)
        async with EchoServer(ns, port=5401):
            result = await l3_lab.external_exec(
                [sys.executable, "-c",
                 "import socket; c = socket.create_connection(('203.0.113.21', 5401), 5);"
                 "d = b'x' * 200000 + b'\\n'; c.sendall(d); r = b''\n"
                 "while len(r) < len(d): r += c.recv(65536)\n"
                 "print(r == d)"],
                time_limit=20,
            )
            assert result.stdout.strip() == "True"
    finally:
        await run(["ip", "netns", "del", ns])
        await l3_lab.ovs("host2").vsctl("--if-exists", "del-port", "br-ex", "xvexta")


async def test_external_exec_needs_the_external_network(lab: Lab) -> None:
    with pytest.raises(LabError, match="no external network"):
        await lab.external_exec(["true"])
    assert lab.state.external is False


def test_cli_up_with_l3_hosts_external_exec_and_down(lab_factory: LabFactory) -> None:
    prefix = lab_factory.new_prefix()
    kumonet = [sys.executable, "-m", "kumonet.cli.main", "lab"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*kumonet, *args], capture_output=True, text=True, check=False)

    up = cli("up", "--hosts", "2", "--l3-hosts", "1", "--prefix", prefix, "--no-agents")
    assert up.returncode == 0, up.stderr
    assert "host1: netns" in up.stdout and "L3" in up.stdout
    assert "203.0.113.1" in up.stdout
    shown = cli("external", "exec", "--prefix", prefix, "--", "ip", "-4", "-o", "addr")
    assert shown.returncode == 0, shown.stderr
    assert "203.0.113.1/24" in shown.stdout
    failed = cli("external", "exec", "--prefix", prefix, "--", "false")
    assert failed.returncode == 1
    status = cli("status", "--prefix", prefix)
    assert "external: upstream 203.0.113.1/24" in status.stdout, status.stdout
    assert "host1 L3" in status.stdout
    too_many = cli("up", "--hosts", "1", "--l3-hosts", "2", "--prefix", lab_factory.new_prefix(),
                   "--no-agents")
    assert too_many.returncode == 1 and "--l3-hosts" in too_many.stderr
    down = cli("down", "--prefix", prefix)
    assert down.returncode == 0, down.stderr
    assert f"{prefix}-ext" in down.stdout and f"{prefix}-exsw" in down.stdout
    assert asyncio.run(leftovers(prefix)) == []


async def test_a_vm_reaches_the_upstream_through_br_int_and_br_ex(
    lab_factory: LabFactory,
) -> None:
    """What the agent will do for a flat external network, done by hand in a
    private lab: br-int patched to br-ex, both NORMAL; then the VM-side probes
    (ping train, TCP stream to an echo server in the upstream)."""
    lab = await lab_factory.up(1, l3_hosts=1)
    ovs = lab.ovs("host1")
    await ovs.vsctl(
        "add-port", "br-int", "int-br-ex", "--", "set", "Interface", "int-br-ex",
        "type=patch", "options:peer=phy-br-ex",
        "--", "add-port", "br-ex", "phy-br-ex", "--", "set", "Interface", "phy-br-ex",
        "type=patch", "options:peer=int-br-ex",
    )
    await ovs.ofctl("add-flow", "br-int", "priority=0,actions=NORMAL")
    await lab.add_vm("v", "host1", port_id="7a1e5b1c-0003-4000-8000-00000000000c",
                     mac="fa:16:3e:00:00:0c")
    await lab.vm_exec("v", ["ip", "addr", "add", "203.0.113.60/24", "dev", "eth0"])
    assert await lab.ping("v", "203.0.113.1")
    async with lab.vm_pinger("v", "203.0.113.1") as pinger, \
            lab.external_echo_server(port=5421), \
            lab.vm_tcp_stream("v", "203.0.113.1", 5421) as stream:
        await pinger.wait_for_replies(10)
    assert pinger.report.received >= 10
    assert not stream.report.broken and stream.report.echoed > 0, stream.report.describe()
