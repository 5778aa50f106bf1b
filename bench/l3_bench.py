"""L3 benchmark: HA router failover outage and plan-to-traffic times, next to their targets.

    .venv/bin/python bench/l3_bench.py [--runs 5] [--advert-int 0.1]

Two simulated L3 hosts (namespaces with their own OVS, see tests/l3/netlab.py) host
one HA router (real keepalived, VRRPv3) with a floating IP. The "external"
namespace pings the floating IP every 50 ms while one TCP connection through it
sends a line every 50 ms; then the master fails, ``--runs`` times each way:

- keepalived killed: the agent (its L3Host) stops, then SIGKILL of both keepalived
  processes (no priority-0 advert; the dead master's addresses stay behind until
  the agent restarts and re-applies the router);
- links cut: the master's router ports lose carrier (as a host or NIC failure).

After each run the failed side recovers (agent re-applies / links back) as standby.
Outage = the longest time without a ping reply, less one interval. Also: the time
from ``L3Host.apply`` to the first reply for a new router, and for a floating IP
associated on an active HA router. Needs root. Not a test: nothing asserts.
Anchors: Neutron L3HA about 6.8 s, OVN BFD 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kumonet.l3.ha_state import RouterHAState
from kumonet.l3.interface import host_end_name
from kumonet.l3.plan import RouterPlan
from kumonet.l3.router import L3Host
from tests.l3.failover import PingTrain, TcpServer, TcpTalk
from tests.l3.netlab import (
    EXTERNAL_IP,
    FLOATING_IP,
    VM_IP,
    NetLab,
    RouterPorts,
    router_intent,
    sh,
)

ACTIVE, STANDBY = RouterHAState.ACTIVE, RouterHAState.STANDBY
_REPLY_TIME = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from", re.MULTILINE)


def line(name: str, value: str, target: str) -> None:
    print(f"{name:<52} {value:>26}   target {target}", flush=True)


class Node:
    def __init__(self, lab: NetLab, name: str, ha_ip: str, ha_port: str, advert: float) -> None:
        self.host = lab.hosts[name]
        self.name = name
        self.ha_ip = ha_ip
        self.ha_port = ha_port
        self.settings = self.host.settings(lab.root / "state", lab.prefix, advert)
        self.events: list[tuple[float, RouterHAState]] = []
        self.changed = asyncio.Event()
        self.l3 = L3Host(self.settings, self.host.driver(), on_ha_state=self._record)
        self.plan: RouterPlan | None = None

    async def stop_agent(self) -> None:
        """As the agent dying: nothing watches keepalived or its FIFO any more."""
        await self.l3.__aexit__(None, None, None)

    async def start_agent(self, ports: RouterPorts) -> None:
        self.l3 = L3Host(self.settings, self.host.driver(), on_ha_state=self._record)
        await self.l3.__aenter__()
        await self.apply(ports)

    def _record(self, router_id: str, state: RouterHAState) -> None:
        self.events.append((time.monotonic(), state))
        self.changed.set()

    @property
    def state(self) -> RouterHAState | None:
        return self.events[-1][1] if self.events else None

    async def wait_for(self, state: RouterHAState, after: float) -> float:
        async with asyncio.timeout(30):
            while True:
                for when, seen in self.events:
                    if seen is state and when >= after:
                        return when
                self.changed.clear()
                await self.changed.wait()

    async def apply(self, ports: RouterPorts, *, fips: bool = True) -> None:
        intent = router_intent(ports, ha_ip=self.ha_ip, ha_port=self.ha_port, fips=fips)
        self.plan = (await self.l3.apply(intent)).plan

    def kill_keepalived(self, router_id: str) -> None:
        process = self.l3.keepalived(router_id)
        parent, child = process.pid, process.vrrp_pid
        assert parent is not None and child is not None
        os.kill(parent, signal.SIGSTOP)
        os.kill(child, signal.SIGKILL)
        os.kill(parent, signal.SIGKILL)

    def set_links(self, state: str) -> None:
        assert self.plan is not None
        for interface in self.plan.interfaces:
            sh("ip", "-n", self.host.netns, "link", "set", host_end_name(interface.port_id), state)


async def failover_runs(
    lab: NetLab, nodes: tuple[Node, Node], ports: RouterPorts, how: str, runs: int, port: int
) -> None:
    outages: list[float] = []
    callbacks: list[float] = []
    tcp_gaps: list[float] = []
    tcp_survived = 0
    snat_survived = 0
    ext, vm = lab.ns("ext"), lab.ns("vm")
    for run in range(runs):
        master = next(n for n in nodes if n.state is ACTIVE)
        backup = next(n for n in nodes if n is not master)
        server = TcpServer(vm, VM_IP, port + run)
        # A second connection from a VM without a floating IP, through SNAT (stateful).
        snat_server = TcpServer(ext, EXTERNAL_IP, port + 50 + run)
        try:
            snat_talk = TcpTalk(lab.ns("vm2"), EXTERNAL_IP, port + 50 + run, seconds=4)
            talk = TcpTalk(ext, FLOATING_IP, port + run, seconds=4)
            train = PingTrain(ext, FLOATING_IP, seconds=4)
            await asyncio.sleep(1.2)
            failed_at = time.monotonic()
            if how == "killed":
                await master.stop_agent()
                master.kill_keepalived(ports.router_id)
            else:
                master.set_links("down")
            took_over = await backup.wait_for(ACTIVE, failed_at)
            pings = await asyncio.to_thread(train.result)
            tcp = await asyncio.to_thread(talk.result)
            snat = await asyncio.to_thread(snat_talk.result)
        finally:
            server.stop()
            snat_server.stop()
        outages.append(pings.outage_ms)
        callbacks.append((took_over - failed_at) * 1000)
        tcp_gaps.append(tcp.max_gap_ms)
        tcp_survived += tcp.error is None
        snat_survived += snat.error is None
        print(
            f"  {how} run {run + 1}: {master.name} → {backup.name}: outage {pings.outage_ms:.0f} ms"
            f" ({pings.lost} lost: {pings.missing or '-'}), callback {callbacks[-1]:.0f} ms,"
            f" TCP gap {tcp.max_gap_ms:.0f} ms{'' if tcp.error is None else ' BROKEN'},"
            f" SNAT TCP gap {snat.max_gap_ms:.0f} ms"
            f"{'' if snat.error is None else ' BROKEN: ' + snat.error}",
            flush=True,
        )
        recovered_at = time.monotonic()
        if how == "killed":
            await master.start_agent(ports)
        else:
            master.set_links("up")
        await master.wait_for(STANDBY, recovered_at)
        await asyncio.sleep(1.0)
        if not (master.state is STANDBY and backup.state is ACTIVE):
            print(
                f"  !! after recovery: {master.name} {master.state}, {backup.name} {backup.state}"
            )
    line(
        f"failover ({how}) outage median / max",
        f"{statistics.median(outages):.0f} / {max(outages):.0f} ms",
        "<= 500 / <= 1000 ms",
    )
    line(
        f"failover ({how}) state callback median / max",
        f"{statistics.median(callbacks):.0f} / {max(callbacks):.0f} ms",
        "<= 1000 ms (issue: ha_state within 1 s)",
    )
    line(
        f"failover ({how}) TCP via FIP survived, longest gap",
        f"{tcp_survived}/{runs}, {max(tcp_gaps):.0f} ms",
        f"{runs}/{runs}",
    )
    line(
        f"failover ({how}) TCP via SNAT (stateful) survived",
        f"{snat_survived}/{runs}",
        "- (no conntrackd: see the report)",
    )


def first_reply_after(ns: str, address: str, start: float, seconds: float) -> subprocess.Popen[str]:
    del start
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, "ping", "-n", "-D", "-i", "0.01", "-W", "1",
         "-w", str(seconds), address],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def first_reply_ms(proc: subprocess.Popen[str], start: float) -> float | None:
    out, _ = proc.communicate()
    match = _REPLY_TIME.search(out)
    return (float(match.group(1)) - start) * 1000 if match else None


async def plan_to_traffic(lab: NetLab, nodes: tuple[Node, Node], ports: RouterPorts) -> None:
    ext = lab.ns("ext")
    master = next(n for n in nodes if n.state is ACTIVE)
    backup = next(n for n in nodes if n is not master)
    samples: list[float] = []
    applies: list[float] = []
    for _ in range(5):
        # Disassociate on both hosts, then associate on both (standby first, as an
        # agent would in any order) and time the master's apply → first reply.
        await backup.apply(ports, fips=False)
        await master.apply(ports, fips=False)
        await asyncio.sleep(0.3)
        proc = first_reply_after(ext, FLOATING_IP, 0, 3)
        await asyncio.sleep(0.2)  # the pinger is running, unanswered
        start = time.time()
        began = time.monotonic()
        await master.apply(ports, fips=True)
        applies.append((time.monotonic() - began) * 1000)
        await backup.apply(ports, fips=True)
        delay = first_reply_ms(proc, start)
        samples.append(delay if delay is not None else float("inf"))
    line(
        "HA floating IP associate → traffic median / max",
        f"{statistics.median(samples):.0f} / {max(samples):.0f} ms",
        "<= 300 ms",
    )
    line(
        "  of which L3Host.apply on the master (median)",
        f"{statistics.median(applies):.0f} ms",
        "-",
    )

    # A new non-HA router from nothing: namespace, veths, addresses, NAT.
    h1 = lab.hosts["h1"]
    settings = replace(h1.settings(lab.root / "state-single", lab.prefix, 0.1),
                       namespace_prefix=f"{lab.prefix}single-")  # fmt: skip
    single = RouterPorts()
    # The HA router holds the same addresses: take it away for this measurement.
    for node in nodes:
        await node.l3.remove(ports.router_id)
    async with L3Host(settings, h1.driver(), on_ha_state=lambda r, s: None) as l3:
        proc = first_reply_after(ext, FLOATING_IP, 0, 5)
        await asyncio.sleep(0.2)
        start = time.time()
        began = time.monotonic()
        await l3.apply(router_intent(single, ha_ip=None))
        applied = (time.monotonic() - began) * 1000
        delay = first_reply_ms(proc, start)
        line("new router: L3Host.apply (non-HA, 2 interfaces)", f"{applied:.0f} ms", "-")
        line(
            "new router: apply start → first FIP reply",
            f"{delay:.0f} ms" if delay is not None else "no reply",
            "<= 300 ms",
        )
        began = time.monotonic()
        await l3.apply(router_intent(single, ha_ip=None))
        line(
            "re-apply unchanged router (no-op)", f"{(time.monotonic() - began) * 1000:.0f} ms", "-"
        )
        await l3.remove(single.router_id)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--advert-int", type=float, default=0.1)
    parser.add_argument(
        "--failures", default="killed,cut", help="which failures to run, in order (killed,cut)"
    )
    args = parser.parse_args()
    lab = NetLab.create()
    try:
        ports = RouterPorts()
        n1 = Node(lab, "h1", "169.254.192.1", ports.ha1, args.advert_int)
        n2 = Node(lab, "h2", "169.254.192.2", ports.ha2, args.advert_int)
        async with n1.l3, n2.l3:
            started = time.monotonic()
            await n1.apply(ports)
            await n1.wait_for(ACTIVE, started)
            await n2.apply(ports)
            await n2.wait_for(STANDBY, started)
            print(f"advert_int {args.advert_int} s, {args.runs} runs per failure", flush=True)
            for index, how in enumerate(args.failures.split(",")):
                await failover_runs(lab, (n1, n2), ports, how, args.runs, 7100 + 100 * index)
            await plan_to_traffic(lab, (n1, n2), ports)
            for node in (n1, n2):
                await node.l3.remove(ports.router_id)
    finally:
        lab.destroy()


if __name__ == "__main__":
    asyncio.run(main())
