"""Issue 6 end to end: routers on the lab cloud (``l3_cloud``: kumonet-server,
real kumonet-agents, host1..host3 L3 hosts with a router on 2 of them,
host4 a compute host, the upstream 203.0.113.1 on the flat external network).

Seed 002 is built through the API once for the module (``seed``): ext-net,
demo-net 192.168.1.0/24, an HA router with interface and gateway, ICMP and
TCP 22 allowed, a VM on host4 and a floating IP. The failover tests then
fail the master three ways while the upstream pings the floating IP every
50 ms and keeps a TCP connection to the VM's port 22 open through it; the
outage is printed (measured, not asserted: ``bench/failover_bench.py`` holds
the figures to their targets). A partition of the master (or of the standby)
from its peers and the servers must heal without a transition on the host
the servers saw as master; a master cut from the servers only keeps
forwarding; a master that stays dead is replaced by the third L3 host, which
then survives the next failure. The last test of the module removes the
router and checks that nothing of it is left.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kumonet.l3.conntrackd import ConntrackdFiles, ConntrackdProcess
from kumonet.l3.ha_state import RouterHAState
from kumonet.lab.command import run
from kumonet.lab.outage import PingReport, longest_gap
from kumonet.lab.process import netns_list
from kumonet.lab.state import VmRecord
from tests.cloud import Cloud, Network, Tenant, UdpSink, eventually, fixed_ip, send_udp
from tests.l3.failover import QUIET_AFTER, SPARSE_PUSH, TcpServer, TcpTalk

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SSH = 22
COMPUTE = "host4"


@dataclass
class Seed:
    tenant: Tenant
    net: Network
    router_id: str
    gateway_ip: str  # the router's address on ext-net (203.0.113.101 on a fresh cloud)
    vm: VmRecord
    fip: str
    fip_id: str


async def router_addresses(cloud: Cloud, host: str, router_id: str) -> set[str]:
    result = await cloud.lab.router_exec(
        host, router_id, ["ip", "-4", "-o", "addr", "show"], check=False
    )
    return {line.split()[3].split("/")[0] for line in result.stdout.splitlines()}


async def route_to_gateway(cloud: Cloud, vm: str, gateway: str) -> None:
    await cloud.lab.vm_exec(vm, ["ip", "route", "replace", "default", "via", gateway])


async def exactly_one_active(cloud: Cloud, router_id: str) -> str | None:
    states = await cloud.l3_agents_of(router_id)
    active = [host for host, state in states.items() if state == "active"]
    standby = [host for host, state in states.items() if state == "standby"]
    return active[0] if len(active) == 1 and len(standby) == len(states) - 1 else None


async def hosting(cloud: Cloud, router_id: str) -> set[str]:
    return set(await cloud.l3_agents_of(router_id))


async def build_seed(cloud: Cloud, tenant: Tenant) -> Seed:
    net = await tenant.network("192.168.1.0/24")
    router = await tenant.router(ha=True)
    await tenant.add_interface(router["id"], net)
    router = await tenant.set_gateway(router["id"])
    gateway_ip = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    group = await tenant.default_group()
    await tenant.rule(group["id"], protocol="icmp")
    await tenant.rule(group["id"], protocol="tcp", port_range_min=SSH, port_range_max=SSH)
    vm = await tenant.boot(COMPUTE, net, static=True)
    await route_to_gateway(cloud, vm.name, net.gateway)
    fip = await tenant.floating_ip(vm.port_id)
    seed = Seed(tenant, net, router["id"], gateway_ip, vm, fip["floating_ip_address"], fip["id"])

    async def ready() -> bool:
        master = await exactly_one_active(cloud, seed.router_id)
        if master is None:
            return False
        return {net.gateway, gateway_ip, seed.fip} <= await router_addresses(
            cloud, master, seed.router_id
        )

    await eventually(ready, "HA router active with its addresses", time_limit=60)
    return seed


@pytest.fixture(scope="module")
def seed(l3_cloud: Cloud) -> Iterator[Seed]:
    tenant = Tenant(l3_cloud)
    try:
        yield asyncio.run(build_seed(l3_cloud, tenant))
    finally:
        asyncio.run(tenant.close())


async def test_l3_agents_registered_with_the_external_bridge(l3_cloud: Cloud) -> None:
    agents = [a for a in await l3_cloud.agents() if a["agent_type"] == "L3 agent"]
    assert sorted(a["host"] for a in agents) == ["host1", "host2", "host3"]
    for agent in agents:
        assert agent["alive"]
        assert agent["configurations"]["agent_mode"] == "legacy"
    ovs = {a["host"]: a for a in await l3_cloud.agents() if a["agent_type"] == "Open vSwitch agent"}
    assert ovs["host1"]["configurations"]["bridge_mappings"] == {"external": "br-ex"}


async def test_router_namespaces_on_both_hosting_l3_hosts(l3_cloud: Cloud, seed: Seed) -> None:
    hosts = await hosting(l3_cloud, seed.router_id)
    assert len(hosts) == 2  # max_l3_agents_per_router
    namespaces = set(await netns_list())
    for host in l3_cloud.l3_hosts:
        assert (l3_cloud.lab.router_netns(host, seed.router_id) in namespaces) == (host in hosts)
    master = await exactly_one_active(l3_cloud, seed.router_id)
    assert master is not None
    (backup,) = hosts - {master}
    held = await router_addresses(l3_cloud, master, seed.router_id)
    assert {"192.168.1.1", seed.gateway_ip, seed.fip} <= held
    backup_held = await router_addresses(l3_cloud, backup, seed.router_id)
    assert not {"192.168.1.1", seed.gateway_ip, seed.fip} & backup_held

    # Each L3 agent reports the router it hosts, as Neutron's do.
    async def counted() -> bool:
        agents = [a for a in await l3_cloud.agents() if a["agent_type"] == "L3 agent"]
        return all(a["configurations"].get("routers", 0) >= 1 for a in agents if a["host"] in hosts)

    await eventually(counted, "L3 agents' configurations count the router")
    # keepalived's own view agrees with the API.
    assert {h: s.value for h, s in l3_cloud.lab.router_states(seed.router_id).items()} == {
        master: "active",
        backup: "standby",
    }


async def test_vrrp_adverts_come_from_the_master(l3_cloud: Cloud, seed: Seed) -> None:
    master = await exactly_one_active(l3_cloud, seed.router_id)
    assert master is not None
    (backup,) = await hosting(l3_cloud, seed.router_id) - {master}
    master_ha = {
        a
        for a in await router_addresses(l3_cloud, master, seed.router_id)
        if a.startswith("169.254.19")
    }
    links = await l3_cloud.lab.router_exec(backup, seed.router_id, ["ip", "-o", "link"])
    ha = next(w.split("@")[0] for w in links.stdout.split() if w.startswith("ha-"))
    capture = await l3_cloud.lab.router_exec(
        backup,
        seed.router_id,
        ["timeout", "5", "tcpdump", "-c", "3", "-nli", ha, "ip proto 112"],
        check=False,
    )
    sources = {line.split()[2] for line in capture.stdout.splitlines() if " > " in line}
    assert sources and sources <= master_ha, capture.stdout + capture.stderr


async def test_upstream_reaches_gateway_and_floating_ip(l3_cloud: Cloud, seed: Seed) -> None:
    assert await l3_cloud.lab.external_ping(seed.gateway_ip)
    assert await l3_cloud.lab.external_ping(seed.fip)


async def test_vm_reaches_upstream_through_snat(l3_cloud: Cloud, seed: Seed) -> None:
    assert await l3_cloud.lab.ping(seed.vm.name, "203.0.113.1")
    # A VM without a floating IP leaves as the router's gateway address (SNAT);
    # one with a floating IP leaves as that (1:1 NAT, Neutron's rule).
    plain = await seed.tenant.boot(COMPUTE, seed.net, static=True)
    try:
        await route_to_gateway(l3_cloud, plain.name, seed.net.gateway)
        async with UdpSink(l3_cloud.lab.layout.external_netns, 5401) as sink:
            for vm, source in ((plain, seed.gateway_ip), (seed.vm, seed.fip)):
                token, _ = await send_udp(vm.netns, "203.0.113.1", 5401)
                await eventually(lambda t=token: _arrived(sink, t), "UDP at the upstream")
                assert set(sink.got(token)) == {source}
    finally:
        await seed.tenant.unplug(plain.name)


async def _arrived(sink: UdpSink, token: str) -> bool:
    return bool(sink.got(token))


@pytest.mark.parametrize("how", ["agent", "link", "host"])
async def test_failover(l3_cloud: Cloud, seed: Seed, how: str) -> None:
    lab = l3_cloud.lab
    master = await exactly_one_active(l3_cloud, seed.router_id)
    assert master is not None
    (backup,) = await hosting(l3_cloud, seed.router_id) - {master}
    async with (
        lab.external_pinger(seed.fip) as pinger,
        lab.echo_server(seed.vm.name, port=SSH),
        lab.external_tcp_stream(seed.fip, SSH) as stream,
    ):
        await pinger.wait_for_replies(10)
        failure = await lab.fail_host(master, how)
        try:
            await pinger.wait_for_replies(20, after=failure.at)

            async def flipped() -> bool:
                return (await l3_cloud.l3_agents_of(seed.router_id)).get(backup) == "active"

            await eventually(flipped, f"{backup} active in the API after {how} failure")
            assert not stream.broken
        finally:
            await lab.recover_host(master)
    print(f"\n{how}: {pinger.report.describe()}\n{how}: {stream.report.describe()}")
    assert not stream.report.broken, stream.report.describe()

    # Recovery: the failed host comes back as standby (no preemption), and the
    # state settles with exactly one active.
    async def settled() -> bool:
        # keepalived's own view first: the API shows a replaced master's stale
        # "active" as standby before the host is even back.
        if lab.router_states(seed.router_id).get(master) is not RouterHAState.STANDBY:
            return False
        return await exactly_one_active(l3_cloud, seed.router_id) == backup

    await eventually(settled, f"{master} back as standby", time_limit=30)
    await asyncio.sleep(2 * l3_cloud.report_interval)
    assert await exactly_one_active(l3_cloud, seed.router_id) == backup, "flapped after recovery"
    assert await l3_cloud.lab.external_ping(seed.fip)


def conntrackd_of(cloud: Cloud, host: str, router_id: str) -> ConntrackdProcess:
    record = cloud.lab.host(host)
    files = ConntrackdFiles(Path(record.dir) / "agent" / "ha_confs" / router_id)
    return ConntrackdProcess(files, cloud.lab.router_netns(host, router_id))


async def restart_agent(cloud: Cloud, host: str, *, sync: bool) -> None:
    """Restart ``host``'s agent with ``[agent] ha_conntrack_sync = sync``."""
    ini = Path(cloud.lab.host(host).dir) / "agent.ini"
    lines = [line for line in ini.read_text().splitlines() if "ha_conntrack_sync" not in line]
    lines.insert(lines.index("[agent]") + 1, f"ha_conntrack_sync = {str(sync).lower()}")
    ini.write_text("\n".join(lines) + "\n")
    log = Path(cloud.lab.host(host).dir) / "agent.log"
    await cloud.stop_agent(host)
    mark = log.stat().st_size
    await cloud.start_agent(host)

    async def reconciled() -> bool:
        return "routers reconciled" in log.read_text()[mark:]

    await eventually(reconciled, f"{host}'s restarted agent reconciled its routers")


SNAT_CASES = [("agent", True), ("link", True), ("link", False)]


@pytest.mark.parametrize(
    ("how", "sync"), SNAT_CASES, ids=[f"{h}-{'synced' if s else 'unsynced'}" for h, s in SNAT_CASES]
)
async def test_snat_connection_survives_failover_with_conntrack_sync(
    l3_cloud: Cloud, seed: Seed, how: str, sync: bool
) -> None:
    """A VM without a floating IP holds a TCP connection to the upstream through
    SNAT; the upstream speaks first after the failover (the VM only answers), so
    the new master must know the connection's translation: with conntrackd it
    does and the same connection carries on; without (``ha_conntrack_sync =
    false``), the upstream's segments are dropped and the connection stalls."""
    lab = l3_cloud.lab
    master = await exactly_one_active(l3_cloud, seed.router_id)
    assert master is not None
    (backup,) = await hosting(l3_cloud, seed.router_id) - {master}
    hosts = {master, backup}
    if not sync:
        for host in sorted(hosts):
            await restart_agent(l3_cloud, host, sync=False)
    plain = await seed.tenant.boot(COMPUTE, seed.net, static=True)
    try:
        for host in hosts:
            assert conntrackd_of(l3_cloud, host, seed.router_id).running is sync
        await route_to_gateway(l3_cloud, plain.name, seed.net.gateway)
        assert await lab.ping(plain.name, "203.0.113.1")
        port = 7100 + SNAT_CASES.index((how, sync))
        server = TcpServer(lab.layout.external_netns, "203.0.113.1", port, "push", str(SPARSE_PUSH))
        try:
            answer = TcpTalk(plain.netns, "203.0.113.1", port, seconds=8, mode="answer")
            for _ in range(3):  # established, and synced to the standby
                await asyncio.to_thread(answer.next_line)
            # Failed while no segment is in flight (see SPARSE_PUSH).
            await asyncio.sleep(QUIET_AFTER)
            failure = await lab.fail_host(master, how)
            try:

                async def flipped() -> bool:
                    return (await l3_cloud.l3_agents_of(seed.router_id)).get(backup) == "active"

                await eventually(flipped, f"{backup} active in the API after {how} failure")
            finally:
                # Back before its agent counts as dead: the talk goes on for seconds,
                # and a host dead that long has the router moved off it.
                await lab.recover_host(master)
            result = await asyncio.to_thread(answer.result)
        finally:
            server.stop()
        print(f"\nSNAT {how} failure, sync={sync}: {result} (failed at {failure.at:.3f})")
        if sync:
            # The same connection, lines both ways after the failover too.
            assert result.error is None, result
            assert result.echoed >= 3 + 6, result
        else:
            assert result.error is not None, result

        async def settled() -> bool:
            if lab.router_states(seed.router_id).get(master) is not RouterHAState.STANDBY:
                return False
            return await exactly_one_active(l3_cloud, seed.router_id) == backup

        await eventually(settled, f"{master} back as standby", time_limit=30)
    finally:
        await seed.tenant.unplug(plain.name)
        if not sync:
            for host in sorted(hosts):
                await restart_agent(l3_cloud, host, sync=True)
            for host in hosts:
                assert conntrackd_of(l3_cloud, host, seed.router_id).running


def outage_after(report: PingReport, at: float) -> float:
    """Seconds without a reply after ``at`` (beyond one ping interval)."""
    gap = longest_gap([r.at for r in report.replies], at, report.stopped)
    return max(0.0, gap.seconds - report.interval)


def transitions(log: Path, mark: int) -> list[str]:
    """The agent's VRRP transitions logged after ``mark`` (a file offset)."""
    return [line for line in log.read_text()[mark:].splitlines() if " is now " in line]


async def ha_address(cloud: Cloud, host: str, router_id: str) -> ipaddress.IPv4Address:
    """The router's address on its HA network on ``host`` (169.254.192.0/18)."""
    ha_net = ipaddress.ip_network("169.254.192.0/18")
    (address,) = [
        a
        for a in map(ipaddress.IPv4Address, await router_addresses(cloud, host, router_id))
        if a in ha_net
    ]
    return address


async def swap_roles(cloud: Cloud, router_id: str, master: str, backup: str) -> None:
    """Make ``backup`` the master: a failover by ``master``'s agent, recovered."""
    await cloud.lab.fail_host(master, "agent")
    try:

        async def flipped() -> bool:
            return (await cloud.l3_agents_of(router_id)).get(backup) == "active"

        await eventually(flipped, f"{backup} active")
    finally:
        await cloud.lab.recover_host(master)

    async def settled() -> bool:
        if cloud.lab.router_states(router_id).get(master) is not RouterHAState.STANDBY:
            return False  # its keepalived is not back yet (the API shows a replaced
            # master's stale "active" as standby already)
        return await exactly_one_active(cloud, router_id) == backup

    await eventually(settled, f"{master} back as standby", time_limit=30)
    await asyncio.sleep(2 * cloud.report_interval)


@pytest.mark.parametrize("hold", [1.5, None], ids=["short", "long"])
async def test_partition_heals_without_a_second_failover(
    l3_cloud: Cloud, seed: Seed, hold: float | None
) -> None:
    """The master is cut from its peers AND the servers (links and management
    network). The other host takes over; when the partition heals, it stays
    master (no transition there, no outage) and the cut-off host comes back
    as standby. ``short`` heals before the cut-off host's lease expires (the
    new master's takeover boost decides); ``long`` once the router was moved
    off the lost host to the spare one (the cut-off host lowered itself, and
    hears the new master through its HA port, kept while it was lost)."""
    lab = l3_cloud.lab
    master = await exactly_one_active(l3_cloud, seed.router_id)
    assert master is not None
    (backup,) = await hosting(l3_cloud, seed.router_id) - {master}
    if await ha_address(l3_cloud, master, seed.router_id) < await ha_address(
        l3_cloud, backup, seed.router_id
    ):
        # Cut the host VRRP's tie-break favours (the higher address): left to
        # VRRP, it would take the master role back on the heal.
        await swap_roles(l3_cloud, seed.router_id, master, backup)
        master, backup = backup, master
    backup_log = Path(lab.host(backup).dir) / "agent.log"
    async with (
        lab.external_pinger(seed.fip) as pinger,
        lab.echo_server(seed.vm.name, port=SSH),
        lab.external_tcp_stream(seed.fip, SSH) as stream,
    ):
        await pinger.wait_for_replies(10)
        failure = await lab.fail_host(master, "link", management=True)
        try:
            await pinger.wait_for_replies(10, after=failure.at)

            async def took_over() -> bool:
                return (await l3_cloud.l3_agents_of(seed.router_id)).get(backup) == "active"

            await eventually(took_over, f"{backup} active in the API")
            if hold is not None:
                await asyncio.sleep(max(0.0, failure.at + hold - time.time()))
            else:

                async def moved() -> bool:
                    return master not in await hosting(l3_cloud, seed.router_id)

                await eventually(moved, f"router moved off {master}", time_limit=60)
            mark = backup_log.stat().st_size
            healed = time.time()
        finally:
            await lab.recover_host(master)

        async def yielded() -> bool:
            return lab.router_states(seed.router_id).get(master) is not RouterHAState.ACTIVE

        await eventually(yielded, f"{master} no longer master after the heal")
        await asyncio.sleep(2 * l3_cloud.report_interval)
    heal = outage_after(pinger.report, healed)
    held = f"{hold:g} s" if hold is not None else f"{time.time() - failure.at:.1f} s (moved)"
    print(
        f"\npartition {held}: {pinger.report.describe()}; after the heal"
        f" {heal * 1000:.0f} ms without replies\n{stream.report.describe()}"
    )
    assert transitions(backup_log, mark) == [], f"{backup} changed role on the heal"
    assert lab.router_states(seed.router_id)[backup] is RouterHAState.ACTIVE
    assert not stream.report.broken, stream.report.describe()

    async def settled() -> bool:
        return await exactly_one_active(l3_cloud, seed.router_id) == backup

    await eventually(settled, "exactly one active after the heal", time_limit=30)


async def test_a_standby_cut_off_comes_back_without_disturbing_the_master(
    l3_cloud: Cloud, seed: Seed
) -> None:
    """The standby is cut from its peers and the servers: it becomes master
    in its own partition (unacknowledged by the servers, so at a lowered
    priority). On the heal it yields; the master makes no transition and
    loses no packet, even when the standby has the address VRRP prefers."""
    lab = l3_cloud.lab
    master = await exactly_one_active(l3_cloud, seed.router_id)
    assert master is not None
    (backup,) = await hosting(l3_cloud, seed.router_id) - {master}
    if await ha_address(l3_cloud, backup, seed.router_id) < await ha_address(
        l3_cloud, master, seed.router_id
    ):
        await swap_roles(l3_cloud, seed.router_id, master, backup)
        master, backup = backup, master
    log = Path(lab.host(master).dir) / "agent.log"
    async with lab.external_pinger(seed.fip) as pinger:
        await pinger.wait_for_replies(10)
        mark = log.stat().st_size
        await lab.fail_host(backup, "link", management=True)
        try:

            async def isolated_master() -> bool:
                return lab.router_states(seed.router_id).get(backup) is RouterHAState.ACTIVE

            await eventually(isolated_master, f"{backup} master in its own partition")
            await asyncio.sleep(1)
        finally:
            await lab.recover_host(backup)

        async def yielded() -> bool:
            return lab.router_states(seed.router_id).get(backup) is RouterHAState.STANDBY

        await eventually(yielded, f"{backup} standby after the heal")
        await asyncio.sleep(2 * l3_cloud.report_interval)
    print(f"\nstandby cut off: {pinger.report.describe()}")
    assert transitions(log, mark) == [], f"{master} changed role"
    assert pinger.report.lost == 0, pinger.report.describe()
    assert await exactly_one_active(l3_cloud, seed.router_id) == master


@pytest.mark.parametrize("hold", [2.5, 8.0], ids=["short", "long"])
async def test_a_master_cut_from_the_servers_only_keeps_forwarding(
    l3_cloud: Cloud, seed: Seed, hold: float
) -> None:
    """Only the control plane is cut (the master's agent loses the servers;
    VRRP and the data links stay): no transition anywhere, no lost packet.
    The master lowers its priority while cut off (its peers keep hearing it:
    ``nopreempt`` keeps them standby) and restores it afterwards. ``long``
    outlasts its lease: the servers declare the agent dead but do not move
    the router, since its live host is standby (the master is alive)."""
    lab = l3_cloud.lab
    master = await exactly_one_active(l3_cloud, seed.router_id)
    assert master is not None
    hosts = await hosting(l3_cloud, seed.router_id)
    logs = {h: Path(lab.host(h).dir) / "agent.log" for h in hosts}
    marks = {h: log.stat().st_size for h, log in logs.items()}
    async with lab.external_pinger(seed.fip) as pinger:
        await pinger.wait_for_replies(10)
        await lab.fail_host(master, "management")
        try:
            await asyncio.sleep(hold)
        finally:
            await lab.recover_host(master)
        await pinger.wait_for_replies(20, after=time.time())
    print(f"\nservers cut {hold:g} s: {pinger.report.describe()}")
    for host, log in logs.items():
        assert transitions(log, marks[host]) == [], f"{host} changed role"
    assert pinger.report.lost == 0, pinger.report.describe()

    async def restored() -> bool:
        return await exactly_one_active(l3_cloud, seed.router_id) == master

    await eventually(restored, f"{master} still the one active", time_limit=30)


async def test_router_moves_off_a_host_that_stays_dead(l3_cloud: Cloud, seed: Seed) -> None:
    """Master A dies for good: B takes over at once, then the router is
    placed on the spare L3 host C, whose namespace comes up as standby; when
    B dies too, C takes over and the floating IP passes traffic again."""
    lab = l3_cloud.lab
    a = await exactly_one_active(l3_cloud, seed.router_id)
    assert a is not None
    hosts = await hosting(l3_cloud, seed.router_id)
    (b,) = hosts - {a}
    (c,) = set(l3_cloud.l3_hosts) - hosts
    async with lab.external_pinger(seed.fip) as pinger:
        await pinger.wait_for_replies(10)
        first = await lab.fail_host(a, "host")
        try:
            await pinger.wait_for_replies(10, after=first.at)

            async def moved() -> bool:
                return await l3_cloud.l3_agents_of(seed.router_id) == {
                    b: "active",
                    c: "standby",
                }

            await eventually(moved, f"router moved off {a} onto {c}", time_limit=60)

            async def standby_on_c() -> bool:
                return lab.router_states(seed.router_id).get(c) is RouterHAState.STANDBY

            await eventually(standby_on_c, f"{c}'s keepalived standby")
            held = await router_addresses(l3_cloud, c, seed.router_id)
            assert not {seed.net.gateway, seed.gateway_ip, seed.fip} & held
            second = await lab.fail_host(b, "host")
            try:
                await pinger.wait_for_replies(20, after=second.at)

                async def c_active() -> bool:
                    return (await l3_cloud.l3_agents_of(seed.router_id)).get(c) == "active"

                await eventually(c_active, f"{c} active after {b} died too")
                assert {seed.net.gateway, seed.gateway_ip, seed.fip} <= await router_addresses(
                    l3_cloud, c, seed.router_id
                )
            finally:
                await lab.recover_host(b)
        finally:
            await lab.recover_host(a)
    print(f"\nlost host then its replacement's peer: {pinger.report.describe()}")

    # A comes back without the router (no longer placed there: its agent
    # removes what was left); B comes back as standby.
    async def settled() -> bool:
        if lab.router_netns(a, seed.router_id) in set(await netns_list()):
            return False
        return await l3_cloud.l3_agents_of(seed.router_id) == {b: "standby", c: "active"}

    await eventually(settled, f"{a} cleaned up, {b} standby, {c} active", time_limit=60)
    assert await lab.external_ping(seed.fip)


async def test_agent_restart_causes_no_failover(l3_cloud: Cloud, seed: Seed) -> None:
    lab = l3_cloud.lab
    master = await exactly_one_active(l3_cloud, seed.router_id)
    assert master is not None
    ha_confs = Path(lab.host(master).dir) / "agent" / "ha_confs" / seed.router_id
    keepalived = (ha_confs / "keepalived.pid").read_text()
    log = Path(lab.host(master).dir) / "agent.log"
    async with lab.external_pinger(seed.fip) as pinger:
        await pinger.wait_for_replies(5)
        await l3_cloud.stop_agent(master)
        mark = log.stat().st_size
        await l3_cloud.start_agent(master)

        async def reconciled() -> bool:
            return "routers reconciled" in log.read_text()[mark:]

        await eventually(reconciled, f"{master}'s restarted agent reconciled its routers")
        await pinger.wait_for_replies(10, after=time.time())
    # The same keepalived, no transition, no lost packet.
    assert (ha_confs / "keepalived.pid").read_text() == keepalived
    assert "is now" not in log.read_text()[mark:]
    assert await exactly_one_active(l3_cloud, seed.router_id) == master
    assert pinger.report.lost == 0, pinger.report.describe()


async def test_router_removal_cleans_up(l3_cloud: Cloud, seed: Seed) -> None:
    cloud, tenant, router_id = l3_cloud, seed.tenant, seed.router_id
    await tenant.associate(seed.fip_id, None)
    await tenant.remove_interface(router_id, seed.net)
    await tenant.clear_gateway(router_id)
    await cloud.api("DELETE", f"/routers/{router_id}")
    tenant.routers.remove(router_id)

    async def gone() -> bool:
        namespaces = set(await netns_list())
        if any(cloud.lab.router_netns(h, router_id) in namespaces for h in cloud.l3_hosts):
            return False
        keepalived = await run(["pgrep", "-f", f"ha_confs/{router_id}/"], check=False)
        return not keepalived.stdout.strip()

    await eventually(gone, "router namespaces and keepalived removed", time_limit=30)
    ports = (await cloud.api("GET", f"/ports?device_id={router_id}"))["ports"]
    assert ports == []
    ha_networks = (await cloud.api("GET", f"/networks?name=HA network tenant {tenant.project}"))[
        "networks"
    ]
    assert ha_networks == []


# -- non-HA routers --------------------------------------------------------------


async def test_legacy_router_two_subnets_fips_and_routes(
    l3_cloud: Cloud, l3_tenant: Tenant
) -> None:
    cloud, tenant = l3_cloud, l3_tenant
    a = await tenant.network("10.71.0.0/24")
    b = await tenant.network("10.72.0.0/24")
    router = await tenant.router(ha=False)
    rid = router["id"]
    await tenant.add_interface(rid, a)
    await tenant.add_interface(rid, b)
    await tenant.set_gateway(rid)
    group = await tenant.default_group()
    await tenant.rule(group["id"], protocol="icmp")
    await tenant.rule(group["id"], protocol="udp")
    vm_a = await tenant.boot(COMPUTE, a, static=True)
    vm_b = await tenant.boot("host2", b, static=True)
    vm_c = await tenant.boot(COMPUTE, a, static=True)
    for vm, net in ((vm_a, a), (vm_b, b), (vm_c, a)):
        await route_to_gateway(cloud, vm.name, net.gateway)
    (host,) = (await cloud.l3_agents_of(rid)).keys()

    # Two subnets behind one router reach each other.
    assert await cloud.lab.ping(vm_a.name, fixed_ip(vm_b), attempts=30)
    assert await cloud.lab.ping(vm_b.name, fixed_ip(vm_a))

    # Floating IP: associate, re-associate, disassociate.
    fip = await tenant.floating_ip(vm_a.port_id)
    address = fip["floating_ip_address"]
    assert await cloud.lab.external_ping(address)
    await tenant.associate(fip["id"], vm_c.port_id)

    async def answered_by(vm: VmRecord) -> bool:
        async with UdpSink(vm.netns, 5402) as sink:
            token, _ = await send_udp(cloud.lab.layout.external_netns, address, 5402, count=3)
            return bool(sink.got(token))

    await eventually(lambda: answered_by(vm_c), "re-associated floating IP reaches the new VM")
    assert not await answered_by(vm_a)
    await tenant.associate(fip["id"], None)

    async def released() -> bool:
        return address not in await router_addresses(cloud, host, rid)

    await eventually(released, "floating IP released by the router")
    assert not await cloud.lab.external_ping(address, attempts=2, wait=0.5)

    # Extra routes land in the router's namespace.
    nexthop = fixed_ip(vm_c)
    await tenant.update_router(rid, routes=[{"destination": "10.99.0.0/24", "nexthop": nexthop}])

    async def routed() -> bool:
        result = await cloud.lab.router_exec(host, rid, ["ip", "-4", "route"], check=False)
        return f"10.99.0.0/24 via {nexthop}" in result.stdout

    await eventually(routed, "extra route in the router")
    await tenant.update_router(rid, routes=[])
