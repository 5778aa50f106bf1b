"""Failure injection: each kind takes away what it should, recover brings it
back, other hosts are untouched, and ``down`` after a failure leaves nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kumonet.lab.command import in_netns, run, wait_until
from kumonet.lab.errors import LabError
from kumonet.lab.failure import (
    Failure,
    FailureKind,
    claim_failure,
    clear_failure,
    failure_kind,
    keepalived_pids,
    management_cut_rules,
    read_failure,
)
from kumonet.lab.lab import Lab
from kumonet.lab.process import is_alive, netns_list, owned_pid, stop_pids
from kumonet.lab.teardown import delete_netns, netns_pids
from tests.lab.conftest import LabFactory, leftovers, recovered
from tests.lab.test_lab import wire_by_hand

KEEPALIVED_CONF = """\
vrrp_instance r {{
    state BACKUP
    interface ha-x
    virtual_router_id {vrid}
    priority 50
    advert_int 1
    nopreempt
    virtual_ipaddress {{
        169.254.0.{vrid}/24 dev ha-x
    }}
}}
"""


def write_conf(conf_dir: Path, vrid: int) -> Path:
    conf_dir.mkdir(parents=True, exist_ok=True)
    conf = conf_dir / "keepalived.conf"
    conf.write_text(KEEPALIVED_CONF.format(vrid=vrid))
    return conf


async def router_with_keepalived(lab: Lab, host: str, router: str, conf_dir: Path) -> list[int]:
    """A router namespace of ``host`` (named as the L3 agent names them) with
    keepalived running in it from ``conf_dir``; its pids (parent, VRRP child)."""
    ns = f"{lab.layout.router_netns_prefix(host)}qrouter-{router}"
    await run(["ip", "netns", "add", ns])
    # no dummy module on this machine: a veth pair inside the namespace
    await run(["ip", "-n", ns, "link", "add", "ha-x", "type", "veth", "peer", "name", "ha-y"])
    await run(["ip", "-n", ns, "link", "set", "ha-x", "up"])
    await run(["ip", "-n", ns, "link", "set", "ha-y", "up"])
    conf = write_conf(conf_dir, vrid=int(router[1:]))
    await run(in_netns(ns, [
        "keepalived", f"--use-file={conf}", f"--pid={conf_dir / 'keepalived.pid'}",
        f"--vrrp_pid={conf_dir / 'keepalived-vrrp.pid'}", "--vrrp", "--no-syslog",
    ]))
    pidfiles = [conf_dir / "keepalived.pid", conf_dir / "keepalived-vrrp.pid"]
    await wait_until(lambda: all(owned_pid(p, str(conf)) for p in pidfiles),
                     "keepalived did not start")
    return [pid for p in pidfiles if (pid := owned_pid(p, str(conf))) is not None]


@pytest.fixture
async def no_routers_left(l3_lab: Lab) -> AsyncIterator[None]:
    """Router namespaces (and their keepalived) a test made go afterwards."""
    yield
    routers = [ns for ns in await netns_list()
               if ns.startswith(f"{l3_lab.layout.prefix}-host") and "-qrouter-" in ns]
    for ns in routers:
        await stop_pids(await netns_pids(ns))
    await delete_netns(routers)


def alive(pids: list[int]) -> bool:
    return all(is_alive(pid) for pid in pids)


async def link_state(ns: str, name: str) -> str:
    out = (await run(["ip", "-n", ns, "-o", "link", "show", "dev", name])).stdout
    return "UP" if ",UP" in out.split(">")[0] or "<UP" in out else "DOWN"


@pytest.mark.lab
@pytest.mark.usefixtures("no_routers_left")
async def test_agent_failure_kills_agent_and_keepalived_of_that_host_only(
    l3_lab: Lab, tmp_path: Path
) -> None:
    lab = l3_lab
    host1_dir = Path(lab.host("host1").dir)
    # found by its file under the agent's state path, and by its namespace
    by_file = await router_with_keepalived(lab, "host1", "r1", host1_dir / "agent/ha_confs/r1")
    by_netns = await router_with_keepalived(lab, "host1", "r2", tmp_path / "r2")
    other = await router_with_keepalived(lab, "host2", "r3", Path(lab.host("host2").dir)
                                         / "agent/ha_confs/r3")
    ovs_before = [owned_pid(lab.ovs("host1").vswitchd_pidfile, str(host1_dir))]
    agent_before = owned_pid(host1_dir / "agent.pid", str(host1_dir))
    assert agent_before is not None and alive([*by_file, *by_netns, *other])
    status = {h.name: h for h in (await lab.status()).hosts}
    assert set(status["host1"].keepalived) == {*by_file, *by_netns}
    assert len(status["host1"].router_namespaces) == 2

    async with recovered(lab, "host1"):
        failure = await lab.fail_host("host1", "agent")
        assert failure.how is FailureKind.AGENT
        assert set(failure.killed) == {agent_before, *by_file, *by_netns}
        assert not any(is_alive(pid) for pid in failure.killed)
        assert alive(other)  # host2's keepalived is not host1's
        assert alive([pid for pid in ovs_before if pid])  # OVS keeps forwarding
        assert keepalived_pids(host1_dir, [lab.host("host1").netns]) == []
        status = {h.name: h for h in (await lab.status()).hosts}
        assert status["host1"].failure == "agent" and status["host2"].failure is None
        agent = {p.name: p.alive for p in status["host1"].processes}
        assert agent == {"ovsdb-server": True, "ovs-vswitchd": True, "kumonet-agent": False}
        with pytest.raises(LabError, match="failed already"):
            await lab.fail_host("host1", "link")

        await lab.recover_host("host1")
        agent_after = owned_pid(host1_dir / "agent.pid", str(host1_dir))
        assert agent_after is not None and agent_after != agent_before
        assert lab.failure("host1") is None and lab.failures() == {}
    with pytest.raises(LabError, match="has not failed"):
        await lab.recover_host("host1")


@pytest.mark.lab
async def test_link_failure_cuts_underlay_and_external_and_recovers(l3_lab: Lab) -> None:
    lab = l3_lab
    layout = lab.layout
    host1 = lab.host("host1")
    await lab.host_exec("host1", ["ip", "addr", "replace", "203.0.113.31/24", "dev", "br-ex"])
    assert await lab.external_ping("203.0.113.31")
    assert (await lab.host_exec("host3", ["ping", "-c1", "-W2", "192.0.2.1"], check=False)).ok
    cables = [
        (layout.underlay_netns, layout.underlay_port("host1")),
        (host1.netns, layout.host_uplink),
        (layout.external_switch_netns, layout.external_port("host1")),
        (host1.netns, layout.host_external_link),
    ]
    async with recovered(lab, "host1"):
        failure = await lab.fail_host("host1", "link")
        assert sorted(failure.links) == sorted(cables)
        assert [await link_state(ns, name) for ns, name in cables] == ["DOWN"] * 4
        assert not await lab.external_ping("203.0.113.31", attempts=2, wait=0.3)
        cut = await lab.host_exec("host3", ["ping", "-c1", "-W1", "192.0.2.1"], check=False)
        assert not cut.ok
        # host2's cables are untouched; processes all run
        assert await link_state(layout.underlay_netns, layout.underlay_port("host2")) == "UP"
        status = {h.name: h for h in (await lab.status()).hosts}
        assert status["host1"].failure == "link"
        assert all(p.alive for p in status["host1"].processes)

        await lab.recover_host("host1")
        assert [await link_state(ns, name) for ns, name in cables] == ["UP"] * 4
        assert await lab.external_ping("203.0.113.31")
        assert (await lab.host_exec("host3", ["ping", "-c1", "-W2", "192.0.2.1"],
                                    check=False)).ok
    await lab.host_exec("host1", ["ip", "addr", "del", "203.0.113.31/24", "dev", "br-ex"])


@pytest.mark.lab
@pytest.mark.usefixtures("no_routers_left")
async def test_host_failure_stops_everything_of_the_host_and_recovers(
    l3_lab: Lab, tmp_path: Path
) -> None:
    lab = l3_lab
    host1_dir = Path(lab.host("host1").dir)
    ovs = lab.ovs("host1")
    await lab.host_exec("host1", ["ip", "addr", "replace", "203.0.113.32/24", "dev", "br-ex"])
    keepalived = await router_with_keepalived(lab, "host1", "r4", tmp_path / "r4")
    before = {name: owned_pid(path, str(host1_dir)) for name, path in (
        ("ovsdb", ovs.ovsdb_pidfile), ("vswitchd", ovs.vswitchd_pidfile),
        ("agent", host1_dir / "agent.pid"))}
    # a process running on the host that the lab knows nothing about
    stray = await asyncio.create_subprocess_exec(
        *in_netns(lab.host("host1").netns, ["sleep", "300"]), start_new_session=True)
    others = [owned_pid(lab.ovs(h).vswitchd_pidfile, lab.host(h).dir) for h in ("host2", "host3")]
    try:
        async with recovered(lab, "host1"):
            failure = await lab.fail_host("host1", "host")
            assert {*before.values(), *keepalived, stray.pid} <= set(failure.killed)
            assert await asyncio.wait_for(stray.wait(), 5) < 0
            status = {h.name: h for h in (await lab.status()).hosts}
            assert status["host1"].failure == "host"
            assert not any(p.alive for p in status["host1"].processes)
            assert status["host1"].keepalived == ()
            assert alive([pid for pid in others if pid])
            assert not await lab.external_ping("203.0.113.32", attempts=2, wait=0.3)

            await lab.recover_host("host1")
            status = {h.name: h for h in (await lab.status()).hosts}
            assert all(p.alive for p in status["host1"].processes), status["host1"]
            after = {name: owned_pid(path, str(host1_dir)) for name, path in (
                ("ovsdb", ovs.ovsdb_pidfile), ("vswitchd", ovs.vswitchd_pidfile),
                ("agent", host1_dir / "agent.pid"))}
            assert all(after.values()) and set(after.values()).isdisjoint(before.values())
            # OVS came back from its database, with the underlay address and br-ex
            assert (await ovs.vsctl("list-ports", "br-ex")).split() == [
                lab.layout.host_external_link]
            assert (await lab.host_exec("host3", ["ping", "-c1", "-W2", "192.0.2.1"],
                                        check=False)).ok
            assert await lab.external_ping("203.0.113.32")
    finally:
        if stray.returncode is None:
            stray.kill()
            await stray.wait()
        await lab.host_exec("host1", ["ip", "addr", "del", "203.0.113.32/24", "dev", "br-ex"],
                            check=False)


@pytest.mark.lab
async def test_unknown_failure_and_host_are_refused(l3_lab: Lab) -> None:
    with pytest.raises(LabError, match="unknown failure"):
        await l3_lab.fail_host("host2", "meteor")
    with pytest.raises(LabError, match="no host"):
        await l3_lab.fail_host("host9", "link")
    assert l3_lab.failures() == {}


@pytest.mark.parametrize("how", ["link", "host", "agent"])
@pytest.mark.lab
async def test_down_after_a_failure_leaves_nothing(lab_factory: LabFactory, how: str) -> None:
    lab = await lab_factory.up(2, l3_hosts=1, agents=True,
                               agent_command=(sys.executable, "-c",
                                              "import signal; signal.pause()"))
    await lab.fail_host("host1", how)
    await lab.down()
    assert await leftovers(lab.layout.prefix) == []


@pytest.mark.lab
def test_cli_fail_status_recover(l3_lab: Lab) -> None:
    prefix = l3_lab.layout.prefix
    kumonet = [sys.executable, "-m", "kumonet.cli.main", "lab"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*kumonet, *args, "--prefix", prefix],
                              capture_output=True, text=True, check=False)

    try:
        failed = cli("host", "fail", "host2", "--how", "link")
        assert failed.returncode == 0, failed.stderr
        assert "host2 failed (link)" in failed.stdout
        status = cli("status")
        assert "FAILED (link" in status.stdout, status.stdout
        again = cli("host", "fail", "host2", "--how", "agent")
        assert again.returncode == 1 and "failed already" in again.stderr
        back = cli("host", "recover", "host2")
        assert back.returncode == 0 and "recovered from link" in back.stdout, back.stderr
        assert "FAILED" not in cli("status").stdout
    finally:
        if l3_lab.failure("host2") is not None:
            asyncio.run(l3_lab.recover_host("host2"))


async def connects(lab: Lab, host: str, address: str, port: int) -> bool:
    probe = (f"import socket; socket.create_connection(({address!r}, {port}), 1).close()")
    return (await lab.host_exec(host, [sys.executable, "-c", probe], check=False)).ok


@pytest.mark.lab
async def test_link_failure_can_cut_the_management_network_too(l3_lab: Lab) -> None:
    lab = l3_lab
    # the agents reach the (default) server through the relay in their namespace
    assert lab.state.server_urls == ("http://127.0.0.1:9696",)
    assert await connects(lab, "host2", "127.0.0.1", 9696)
    with pytest.raises(LabError, match="only a link failure"):
        await lab.fail_host("host2", "agent", management=True)
    async with recovered(lab, "host2"):
        failure = await lab.fail_host("host2", "link", management=True)
        assert failure.management and lab.failure("host2") == failure
        assert not await connects(lab, "host2", "127.0.0.1", 9696)
        assert await connects(lab, "host3", "127.0.0.1", 9696)
        await lab.recover_host("host2")
        assert await connects(lab, "host2", "127.0.0.1", 9696)
        tables = await lab.host_exec("host2", ["nft", "list", "tables"])
        assert "kumonet_lab_cut" not in tables.stdout
    # without management the agent keeps its server
    async with recovered(lab, "host2"):
        await lab.fail_host("host2", "link")
        assert await connects(lab, "host2", "127.0.0.1", 9696)


# -- pure ---------------------------------------------------------------------------


def test_failure_record_round_trips_and_one_failure_per_host(tmp_path: Path) -> None:
    failure = Failure("host1", FailureKind.LINK, 12.5, links=(("kl-ul", "kl-ul-h1"),),
                      management=True)
    assert Failure.from_json(failure.to_json()) == failure
    claim_failure(tmp_path, failure)
    assert read_failure(tmp_path) == failure
    with pytest.raises(LabError, match=r"failed already \(link\)"):
        claim_failure(tmp_path, Failure("host1", FailureKind.AGENT, 13.0))
    clear_failure(tmp_path)
    assert read_failure(tmp_path) is None
    assert failure_kind("host") is FailureKind.HOST
    with pytest.raises(LabError, match="agent, link, management, host"):
        failure_kind("power")


def test_management_cut_drops_the_relayed_servers_only() -> None:
    rules = management_cut_rules([("127.0.0.1", 9696), ("127.0.0.2", 9697)])
    assert "table inet kumonet_lab_cut" in rules
    assert "ip daddr 127.0.0.1 tcp dport 9696 drop" in rules
    assert "ip daddr 127.0.0.2 tcp dport 9697 drop" in rules
    assert "hook output" in rules and "policy accept" in rules


# -- real VRRP across the lab: each failure makes the standby take over -------------

HA_CONF = """\
global_defs {{
    vrrp_version 3
}}
vrrp_instance ha {{
    state BACKUP
    interface ha-r9
    virtual_router_id 9
    priority 50
    advert_int 0.2
    nopreempt
    virtual_ipaddress {{
        169.254.0.9/24 dev ha-r9
    }}
}}
"""


async def ha_router(lab: Lab, host: str, index: int) -> None:
    """A router namespace of ``host`` on the "HA network" (br-int, VXLAN to the
    other host) with keepalived in it, as the L3 agent will build one."""
    ns = lab.router_netns(host, "r9")
    outer = f"tapr9h{index}"
    await run(["ip", "netns", "add", ns])
    await run(["ip", "link", "add", outer, "netns", lab.host(host).netns, "type", "veth",
               "peer", "name", "ha-r9", "netns", ns])
    await run(["ip", "-n", ns, "addr", "add", f"169.254.192.{index}/18", "dev", "ha-r9"])
    for netns, dev in ((ns, "ha-r9"), (lab.host(host).netns, outer)):
        await run(in_netns(netns, ["ethtool", "-K", dev, "tx", "off"]))
        await run(["ip", "-n", netns, "link", "set", dev, "up"])
    await lab.ovs(host).vsctl("add-port", "br-int", outer)
    directory = Path(lab.host(host).dir) / "agent" / "ha_confs" / "r9"
    conf = write_keepalived_conf(directory, HA_CONF)
    await run(in_netns(ns, [
        "keepalived", f"--use-file={conf}", f"--pid={directory / 'keepalived.pid'}",
        f"--vrrp_pid={directory / 'keepalived-vrrp.pid'}", "--vrrp", "--no-syslog",
    ]))


def write_keepalived_conf(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "keepalived.conf").write_text(text)
    return directory / "keepalived.conf"


async def holds_vip(lab: Lab, host: str) -> bool:
    shown = await lab.router_exec(host, "r9", ["ip", "-4", "-o", "addr", "show", "ha-r9"])
    return "169.254.0.9/" in shown.stdout


async def masters(lab: Lab, hosts: tuple[str, ...]) -> set[str]:
    return {host for host in hosts if await holds_vip(lab, host)}


async def wait_for_master(lab: Lab, host: str, time_limit: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    while not await holds_vip(lab, host):
        if loop.time() > deadline:
            raise AssertionError(f"{host} did not become master within {time_limit:g} s")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("how", ["agent", "link", "host"])
@pytest.mark.lab
async def test_each_failure_makes_the_standby_router_take_over(
    lab_factory: LabFactory, how: str
) -> None:
    lab = await lab_factory.up(2, l3_hosts=2, agents=True,
                               agent_command=(sys.executable, "-c",
                                              "import signal; signal.pause()"))
    await wire_by_hand(lab)
    hosts = ("host1", "host2")
    await ha_router(lab, "host1", 1)
    await wait_for_master(lab, "host1")  # alone, it takes the VIP
    await ha_router(lab, "host2", 2)
    # the routers hear each other across the tunnel: host2 stays standby
    ping = await lab.router_exec("host2", "r9", ["ping", "-c1", "-W2", "169.254.192.1"],
                                 check=False)
    assert ping.ok, ping.stdout
    assert await masters(lab, hosts) == {"host1"}

    await lab.fail_host("host1", how)
    await wait_for_master(lab, "host2")
    assert lab.failures().keys() == {"host1"}
