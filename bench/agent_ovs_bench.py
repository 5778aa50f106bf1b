#!/usr/bin/env python3
"""Benchmark of the agent's OVS adapters against a real, throwaway Open vSwitch.

Starts ovsdb-server + ovs-vswitchd (userspace datapath) in a fresh network namespace
and run dir, then measures:
  (a) installing N flows (default 10,000) with one reconcile: dump + one bundle;
  (b) reconciling the same N flows again (the agent-restart path): nothing applied;
  (c) a 1-flow change (one flow replaced) on top of N installed flows;
  (c') the same, and installing N flows, through the persistent FlowChannel;
  (d) VIF plugged (ovs-vsctl add-port with iface-id) -> PortEvent with its ofport;
  (e) PACKET_OUT to the pipeline -> controller flow -> PACKET_IN in the handler.
Prints each figure next to its target. Not a test: nothing asserts. Needs root.

  .venv/bin/python bench/agent_ovs_bench.py [--flows 10000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from kumonet.agent.flow_channel import FlowChannel
from kumonet.agent.openflow import COOKIE_MARKER_VALUE, InstalledFlows, OpenFlowBridge
from kumonet.agent.ovsdb import BridgeSpec, Ovsdb, OvsdbConfig, PortEventKind
from kumonet.agent.packet_in import PacketIn, PacketInChannel

OFPP_TABLE = 0xFFFFFFF9


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))]


def line(name: str, value: str, target: str) -> None:
    print(f"{name:<58} {value:>22}   target {target}")


def flows(n: int, variant: int = 0) -> dict[int, str]:
    out = {}
    for i in range(n):
        cookie = COOKIE_MARKER_VALUE | variant << 32 | i
        mac = f"fa:16:3e:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
        out[cookie] = (
            f"table=30,priority=100,cookie={cookie:#x},reg6={i % 4096},dl_dst={mac}"
            f" actions=set_field:{i % 100 + 1}->reg7,goto_table:40"
        )
    return out


class Sandbox:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kn6b-", dir="/tmp"))
        self.netns = f"k6b{uuid.uuid4().hex[:5]}"
        self.env = {**os.environ, "OVS_RUNDIR": str(self.dir), "OVS_DBDIR": str(self.dir),
                    "OVS_LOGDIR": str(self.dir)}  # fmt: skip

    def run(self, *argv: str) -> str:
        return subprocess.run(argv, env=self.env, check=True, capture_output=True,
                              text=True).stdout  # fmt: skip

    def start(self) -> None:
        d = self.dir
        self.run("ip", "netns", "add", self.netns)
        self.run("ovsdb-tool", "create", f"{d}/conf.db", "/usr/share/openvswitch/vswitch.ovsschema")
        self.run(
            "ip",
            "netns",
            "exec",
            self.netns,
            "ovsdb-server",
            f"{d}/conf.db",
            f"--remote=punix:{d}/db.sock",
            f"--pidfile={d}/ovsdb-server.pid",
            f"--unixctl={d}/ovsdb-server.ctl",
            f"--log-file={d}/ovsdb-server.log",
            "--detach",
        )
        self.run("ovs-vsctl", f"--db=unix:{d}/db.sock", "--no-wait", "init")
        self.run("ip", "netns", "exec", self.netns, "ovs-vswitchd", f"unix:{d}/db.sock",
                 f"--pidfile={d}/ovs-vswitchd.pid", f"--unixctl={d}/vswitchd.ctl",
                 f"--log-file={d}/ovs-vswitchd.log", "--detach")  # fmt: skip

    def stop(self) -> None:
        for ctl, pidfile in (("vswitchd.ctl", "ovs-vswitchd.pid"),
                             ("ovsdb-server.ctl", "ovsdb-server.pid")):  # fmt: skip
            subprocess.run(["ovs-appctl", "-t", str(self.dir / ctl), "exit"],
                           capture_output=True, check=False)  # fmt: skip
            try:
                pid = int((self.dir / pidfile).read_text())
            except (OSError, ValueError):
                continue
            for _ in range(300):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.01)
        subprocess.run(["ip", "netns", "delete", self.netns], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


async def bench(sandbox: Sandbox, n_flows: int, repeat: int) -> None:
    bridge_name = "br-int"
    remote = f"unix:{sandbox.dir}/db.sock"
    async with await Ovsdb.connect(OvsdbConfig(remote=remote)) as ovsdb:
        await ovsdb.ensure_bridge(BridgeSpec(bridge_name))
        bridge = OpenFlowBridge.for_bridge(sandbox.dir, bridge_name)

        # (a) N flows in one bundle, from empty; 3 runs
        desired = flows(n_flows)
        times = []
        for _ in range(3):
            await bridge.reconcile({})
            t = time.perf_counter()
            await bridge.reconcile(desired)
            times.append(time.perf_counter() - t)
        line(f"(a) install {n_flows} flows (dump+diff+1 bundle), s",
             " / ".join(f"{x:.3f}" for x in times), "<= 0.5")  # fmt: skip

        # (b) re-reconcile the same set: the restart path
        times = []
        for _ in range(3):
            t = time.perf_counter()
            change = await bridge.reconcile(desired)
            times.append(time.perf_counter() - t)
            assert change.empty
        line(f"(b) restart reconcile over {n_flows} flows (no change), s",
             " / ".join(f"{x:.3f}" for x in times), "<= 0.3")  # fmt: skip

        # (c) 1-flow change on top of N installed flows: InstalledFlows (the agent's
        # steady state: diff in memory, one bundle) and reconcile (dump + diff + bundle)
        converge_ms, reconcile_ms = [], []
        current = dict(desired)
        replacement = flows(n_flows, variant=1)
        installed = InstalledFlows(bridge)
        await installed.converge(current)
        for i in range(2 * repeat):
            old = COOKIE_MARKER_VALUE | i
            new = COOKIE_MARKER_VALUE | 1 << 32 | i
            del current[old]
            current[new] = replacement[new]
            t = time.perf_counter()
            change = await (
                installed.converge(current) if i < repeat else bridge.reconcile(current)
            )
            (converge_ms if i < repeat else reconcile_ms).append((time.perf_counter() - t) * 1000)
            assert len(change.add) == 1 and change.delete_cookies == (old,)
        line("(c) 1-flow change, InstalledFlows.converge p50/p99, ms",
             f"{pct(converge_ms, 50):.1f} / {pct(converge_ms, 99):.1f}", "p50 <= 30")  # fmt: skip
        line(f"(c) 1-flow change, reconcile over {n_flows} p50/p99, ms",
             f"{pct(reconcile_ms, 50):.1f} / {pct(reconcile_ms, 99):.1f}",
             "p50 <= 150")  # fmt: skip

        # (c') the same 1-flow change, and N flows at once, through the agent's
        # persistent connection (FlowChannel) instead of an ovs-ofctl process
        channel = FlowChannel(bridge.target)
        fast = InstalledFlows(OpenFlowBridge(target=bridge.target, channel=channel))
        await fast.converge(current)
        channel_ms = []
        for i in range(2 * repeat, 3 * repeat):
            old = COOKIE_MARKER_VALUE | i
            new = COOKIE_MARKER_VALUE | 1 << 32 | i
            del current[old]
            current[new] = replacement[new]
            t = time.perf_counter()
            change = await fast.converge(current)
            channel_ms.append((time.perf_counter() - t) * 1000)
            assert len(change.add) == 1 and change.delete_cookies == (old,)
        line("(c') 1-flow change through FlowChannel p50/p99, ms",
             f"{pct(channel_ms, 50):.1f} / {pct(channel_ms, 99):.1f}", "p50 <= 5")  # fmt: skip
        await fast.converge({})
        t = time.perf_counter()
        await fast.converge(desired)
        line(f"(c') install {n_flows} flows through FlowChannel, s",
             f"{time.perf_counter() - t:.3f}", "(ovs-ofctl: (a))")  # fmt: skip
        await channel.close()
        await bridge.reconcile({})

        # (d) VIF plug -> event with ofport
        while not ovsdb.port_events.empty():
            ovsdb.port_events.get_nowait()
        plug_ms = []
        for i in range(repeat):
            name = f"vif{i}"
            t = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                "ovs-vsctl", f"--db={remote}", "--no-wait", "add-port", bridge_name, name, "--",
                "set", "interface", name, "type=internal", f"external_ids:iface-id=port-{i}",
            )  # fmt: skip
            while True:
                event = await asyncio.wait_for(ovsdb.port_events.get(), 10)
                if event.port.name == name and event.port.ofport is not None:
                    break
            plug_ms.append((time.perf_counter() - t) * 1000)
            await proc.wait()
            assert event.kind in (PortEventKind.ADDED, PortEventKind.CHANGED)
        line("(d) VIF plug (vsctl start) -> PortEvent with ofport p50/p99, ms",
             f"{pct(plug_ms, 50):.1f} / {pct(plug_ms, 99):.1f}", "p50 <= 50")  # fmt: skip

        # (e) packet-in round trip through the pipeline
        cookie = COOKIE_MARKER_VALUE | 0xC0
        to_controller = f"table=0,priority=10,cookie={cookie:#x},in_port=CONTROLLER"
        await bridge.reconcile({cookie: f"{to_controller} actions=controller"})
        arrived: asyncio.Queue[tuple[float, PacketIn]] = asyncio.Queue()

        async def handler(packet_in: PacketIn) -> None:
            arrived.put_nowait((time.perf_counter(), packet_in))

        frame = bytes.fromhex("ffffffffffff02000000000188b5") + bytes(46)
        rtt_ms = []
        async with PacketInChannel(bridge.target, handler) as channel:
            await asyncio.wait_for(channel.wait_ready(), 10)
            for _ in range(repeat * 10):
                t = time.perf_counter()
                await channel.send_packet_out(OFPP_TABLE, frame)
                done, packet_in = await asyncio.wait_for(arrived.get(), 10)
                assert packet_in.cookie == cookie
                rtt_ms.append((done - t) * 1000)
        line("(e) PACKET_OUT -> pipeline -> PACKET_IN handler p50/p99, ms",
             f"{pct(rtt_ms, 50):.2f} / {pct(rtt_ms, 99):.2f}", "p50 <= 5")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    sandbox = Sandbox()
    try:
        sandbox.start()
        asyncio.run(bench(sandbox, args.flows, args.repeat))
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
