"""An HA router on two "hosts" with real keepalived (VRRPv3): election, who holds
the addresses, NAT through the master, failover on a killed keepalived and on cut
links with the state callback, a TCP connection through the floating IP that
survives, recovery without preemption, and complete removal."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import pytest

from kumonet.l3.ha_state import RouterHAState
from kumonet.l3.interface import host_end_name
from kumonet.l3.namespace import RouterNamespace, list_namespaces
from kumonet.l3.plan import Address, RouterPlan
from kumonet.l3.router import L3Host
from tests.l3.failover import PingTrain, TcpServer, TcpTalk
from tests.l3.netlab import (
    EXTERNAL_IP,
    FLOATING_IP,
    GATEWAY_IP,
    ROUTER_IP,
    VLAN,
    VM_IP,
    Host,
    NetLab,
    RouterPorts,
    router_intent,
    sh,
)
from tests.l3.test_router import ping_eventually, whoami

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ISOLATED = 11  # a VLAN nobody else is on

ACTIVE, STANDBY, FAULT = RouterHAState.ACTIVE, RouterHAState.STANDBY, RouterHAState.FAULT


@dataclass
class HaNode:
    """One host's L3 side for the test: its L3Host and the transitions it reported."""

    host: Host
    ha_ip: str
    ha_port: str
    l3: L3Host = field(init=False)
    transitions: list[tuple[float, RouterHAState]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, router_id: str, state: RouterHAState) -> None:
        self.transitions.append((time.monotonic(), state))
        self.changed.set()

    async def wait_for(self, state: RouterHAState, *, after: float = 0.0) -> float:
        """When (monotonic) the node reported ``state`` at or after ``after``; waits."""
        async with asyncio.timeout(20):
            while True:
                for when, seen in self.transitions:
                    if seen is state and when >= after:
                        return when
                self.changed.clear()
                await self.changed.wait()

    @property
    def last(self) -> RouterHAState | None:
        return self.transitions[-1][1] if self.transitions else None


@asynccontextmanager
async def ha_pair(netlab: NetLab, ports: RouterPorts) -> AsyncIterator[tuple[HaNode, HaNode]]:
    async with AsyncExitStack() as stack:
        nodes = []
        # h1's HA port starts on a VLAN of its own (h1 and h2 cannot hear each
        # other) until the test joins them: see test_ha_router_fails_over_and_recovers.
        members = (
            ("h1", "169.254.192.1", ports.ha1, ISOLATED),
            ("h2", "169.254.192.2", ports.ha2, VLAN["ha"]),
        )
        for name, ha_ip, ha_port, ha_vlan in members:
            host = netlab.hosts[name]
            settings = host.settings(netlab.root / "state", netlab.prefix, 0.1)
            node = HaNode(host, ha_ip, ha_port)
            node.l3 = await stack.enter_async_context(
                L3Host(settings, host.driver(ha_vlan=ha_vlan), on_ha_state=node.record)
            )
            nodes.append(node)
        yield nodes[0], nodes[1]


async def apply(node: HaNode, ports: RouterPorts) -> RouterPlan:
    return (await node.l3.apply(router_intent(ports, ha_ip=node.ha_ip, ha_port=node.ha_port))).plan


async def holds(plan: RouterPlan, cidr: str) -> bool:
    return any(a.cidr == cidr for a in await RouterNamespace(plan.namespace).addresses())


def kill_keepalived(node: HaNode, router_id: str) -> None:
    """SIGKILL both keepalived processes: no priority-0 advert, as when a host dies."""
    process = node.l3.keepalived(router_id)
    parent, child = process.pid, process.vrrp_pid
    assert parent is not None and child is not None
    # The parent is frozen first: it would respawn the child, and the child, told
    # of its parent's death, would send a priority-0 advert (a clean hand-over).
    os.kill(parent, signal.SIGSTOP)
    os.kill(child, signal.SIGKILL)
    os.kill(parent, signal.SIGKILL)


def set_links(node: HaNode, plan: RouterPlan, state: str) -> None:
    for interface in plan.interfaces:
        sh("ip", "-n", node.host.netns, "link", "set", host_end_name(interface.port_id), state)


async def test_ha_router_fails_over_and_recovers(netlab: NetLab) -> None:
    ports = RouterPorts()
    ext, vm, vm2 = netlab.ns("ext"), netlab.ns("vm"), netlab.ns("vm2")
    async with ha_pair(netlab, ports) as (n1, n2):
        p1, p2 = await apply(n1, ports), await apply(n2, ports)
        # Apart, each elects itself; joined, two masters of equal priority meet and
        # the one with the highest HA address (h2) stays master: the rule that decides
        # a simultaneous start. (Started one after the other, the first one up stays
        # master: with nopreempt a backup never takes over from a live master.)
        await n1.wait_for(ACTIVE)
        await n2.wait_for(ACTIVE)
        joined_at = time.monotonic()
        n1.host.set_vlan(ports.ha1, VLAN["ha"])
        await n1.wait_for(STANDBY, after=joined_at)
        await asyncio.sleep(0.5)
        assert n2.last is ACTIVE and n1.last is STANDBY
        assert n2.l3.ha_state(ports.router_id) is ACTIVE
        assert (n1.l3.keepalived(ports.router_id).files.state.read_text().strip()) == "standby"
        for cidr in (ROUTER_IP + "/24", GATEWAY_IP + "/24", FLOATING_IP + "/32"):
            assert await holds(p2, cidr) and not await holds(p1, cidr), cidr
        assert await RouterNamespace(p1.namespace).addresses() == {
            Address("169.254.192.1/18", f"ha-{ports.ha1[:11]}")
        }

        assert ping_eventually(vm, EXTERNAL_IP)
        assert ping_eventually(ext, FLOATING_IP)
        server = TcpServer(ext, EXTERNAL_IP, 7010)
        try:
            assert await asyncio.to_thread(whoami, vm2, EXTERNAL_IP, 7010) == GATEWAY_IP
        finally:
            server.stop()

        # 1. The master's keepalived dies (SIGKILL) under a ping train and a busy
        #    TCP connection through the floating IP.
        server = TcpServer(vm, VM_IP, 7011)
        try:
            talk = TcpTalk(ext, FLOATING_IP, 7011, seconds=5)
            train = PingTrain(ext, FLOATING_IP, seconds=5)
            await asyncio.sleep(1.5)
            killed_at = time.monotonic()
            kill_keepalived(n2, ports.router_id)
            took_over = await n1.wait_for(ACTIVE, after=killed_at)
            pings = await asyncio.to_thread(train.result)
            tcp = await asyncio.to_thread(talk.result)
        finally:
            server.stop()
        print(
            f"\nkeepalived killed: callback after {(took_over - killed_at) * 1000:.0f} ms, "
            f"ping outage {pings.outage_ms:.0f} ms ({pings.lost} lost), "
            f"TCP longest gap {tcp.max_gap_ms:.0f} ms"
        )
        assert tcp.error is None, tcp
        assert pings.answered_tail(10), pings
        assert await holds(p1, FLOATING_IP + "/32")

        # Recovery: h2's L3Host saw keepalived exit and re-applied the router by
        # itself: the addresses the killed master left are gone and a new keepalived
        # runs as standby (no preemption).
        await n2.wait_for(STANDBY, after=killed_at)
        await asyncio.sleep(1.0)  # ten adverts: enough to see a wrongful takeover
        assert n1.last is ACTIVE and n2.last is STANDBY
        assert n2.l3.keepalived(ports.router_id).running
        assert not await holds(p2, FLOATING_IP + "/32")
        assert not await holds(p2, ROUTER_IP + "/24")
        assert ping_eventually(ext, FLOATING_IP)
        # The agent's next apply finds nothing to do.
        assert not (
            await n2.l3.apply(router_intent(ports, ha_ip=n2.ha_ip, ha_port=n2.ha_port))
        ).changed

        # 2. The master's links are cut: it goes to FAULT, the other takes over.
        #    Also a connection through SNAT (stateful: the new master has no entry).
        server = TcpServer(vm, VM_IP, 7012)
        snat_server = TcpServer(ext, EXTERNAL_IP, 7013)
        try:
            talk = TcpTalk(ext, FLOATING_IP, 7012, seconds=5)
            snat_talk = TcpTalk(vm2, EXTERNAL_IP, 7013, seconds=5)
            train = PingTrain(ext, FLOATING_IP, seconds=5)
            await asyncio.sleep(1.5)
            cut_at = time.monotonic()
            set_links(n1, p1, "down")
            took_over = await n2.wait_for(ACTIVE, after=cut_at)
            await n1.wait_for(FAULT, after=cut_at)
            pings = await asyncio.to_thread(train.result)
            tcp = await asyncio.to_thread(talk.result)
            snat_tcp = await asyncio.to_thread(snat_talk.result)
        finally:
            server.stop()
            snat_server.stop()
        print(
            f"links cut: callback after {(took_over - cut_at) * 1000:.0f} ms, "
            f"ping outage {pings.outage_ms:.0f} ms ({pings.lost} lost), "
            f"TCP longest gap {tcp.max_gap_ms:.0f} ms"
        )
        assert tcp.error is None, tcp
        assert snat_tcp.error is None, snat_tcp
        assert pings.answered_tail(10), pings

        # Links back: h1 returns as standby; exactly one active.
        restored_at = time.monotonic()
        set_links(n1, p1, "up")
        await n1.wait_for(STANDBY, after=restored_at)
        await asyncio.sleep(1.0)
        assert n1.last is STANDBY and n2.last is ACTIVE
        assert await holds(p2, FLOATING_IP + "/32") and not await holds(p1, FLOATING_IP + "/32")

        # Removal leaves nothing behind on either host.
        processes = [n.l3.keepalived(ports.router_id) for n in (n1, n2)]
        pids = [pid for p in processes for pid in (p.pid, p.vrrp_pid) if pid is not None]
        assert len(pids) == 4
        for node in (n1, n2):
            await node.l3.remove(ports.router_id)
        for pid in pids:
            assert _gone(pid)
        assert p1.namespace not in list_namespaces() and p2.namespace not in list_namespaces()
        for node in (n1, n2):
            assert await node.host.driver().router_ports() == {}


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its (init) parent has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True
