#!/usr/bin/env python3
"""Port bring-up through the whole cloud: API port create → server → agents →
flows → the new VM answers pings from a VM on another host.

The same method as OVN's anchor (``/work/shared/bench/ovn/ovnbench.py``), so
the figures compare: a cloud of 3 hosts (kumonet-server on SQLite, one real
kumonet-agent per host, userspace OVS), one network with port security (the
project's default group), one static "anchor" VM per host. For each batch of
K new ports:

  prep (untimed)  K VM namespaces, each with a veth (eth0: the MAC and static
                  address the port will get, ARP retransmit 100 ms) whose peer
                  sits in its host's namespace, not yet on br-int; a raw ICMP
                  socket opened inside every VM.
  t0              ONE bulk ``POST /v2.0/ports`` (mac_address, fixed_ips,
                  binding:host_id, device_owner compute:nova) for all K.
  bind            then, per host in parallel, ONE ovs-vsctl transaction
                  plugging its taps with iface-id (as Nova with os-vif).
  measured        per VM: the first echo reply from the anchor on the next
                  host (echo every --ping-interval s from t0 on, 0.2 s by
                  default as OVN's bench); per host: each agent pass (from
                  its log: start, end, flows changed, compile and apply ms)
                  against when the host's taps were plugged, flows before
                  and after (flows per port, local and remote, from K=1);
                  agent and server RSS and CPU seconds over the batch.

Comparing with OVN: run both back to back with the same --ping-interval
(``ovnbench.sh 1 50 200 --repeat 3 --ping-interval 0.02``). Below the ping
interval the floor is the VM's ARP: its first request at t0 is lost (the
port is not plugged yet) and it asks again every 100 ms (retrans_time_ms,
set by both benches), so a VM answers at ~0.1, ~0.2 … s after t0 whatever
the interval; "flows complete on every host" (kumonet) and OVN's "NB up"
are the finer figures.
  teardown        ports deleted through the API, taps unplugged, namespaces
                  deleted; time until every host is back to its flow count.

Prints each figure next to its target. Not a test: nothing asserts. Needs root.

  .venv/bin/python bench/bringup_bench.py [--batches 1 50 200 500] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime
import math
import os
import re
import secrets
import select
import socket
import statistics
import struct
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sg_e2e_bench import AgentLog

from kumonet.agent.server_client import ServerClient
from kumonet.lab.command import run
from tests.cloud import Cloud, Network, Tenant, fixed_ip, running_cloud

CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
TICKS = os.sysconf("SC_CLK_TCK")
BULK_LIMIT = 200  # ports per bulk POST


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def line(name: str, value: str, target: str = "") -> None:
    print(f"  {name:<52} {value:>24}   {('target ' + target) if target else ''}", flush=True)


# -- processes -------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    rss_kb: int
    cpu_s: float


def usage(pid: int | None) -> Usage:
    if pid is None:
        return Usage(0, 0.0)
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return Usage(0, 0.0)
    rss = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:"))
    return Usage(rss, (int(stat[11]) + int(stat[12])) / TICKS)


def server_pid(cloud: Cloud) -> int | None:
    marker = str(cloud.workdir / "kumonet.db")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    return int(entry.name)
    return None


def processes(cloud: Cloud) -> dict[str, int | None]:
    found: dict[str, int | None] = {"server": server_pid(cloud)}
    for host in cloud.hosts:
        found[f"{host}/agent"] = cloud.agent_pid(host)
    for host in cloud.hosts:
        pidfile = cloud.lab.ovs(host).vswitchd_pidfile
        with contextlib.suppress(OSError, ValueError):
            found[f"{host}/ovs-vswitchd"] = int(pidfile.read_text().strip())
    return found


async def flow_counts(cloud: Cloud) -> dict[str, int]:
    counts = await asyncio.gather(*(cloud.flows(host) for host in cloud.hosts))
    return dict(zip(cloud.hosts, (len(c) for c in counts), strict=True))


# -- VMs as bare namespaces ----------------------------------------------------


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    payload = b"kumonet-bringup"
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload


@contextlib.contextmanager
def inside(netns: str) -> Iterator[None]:
    """This thread in ``netns`` for the block (sockets opened there stay there)."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if LIBC.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
        try:
            yield
        finally:
            if LIBC.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(target)
        os.close(home)


@dataclass
class BenchVm:
    n: int
    host: str
    netns: str
    tap: str
    mac: str
    ip: str
    target_ip: str
    sock: socket.socket | None = None
    port_id: str = ""


class Pinger(threading.Thread):
    """One thread, one raw socket per VM: echo every ``interval`` to each VM's
    target until it answers; records the first reply's time after t0."""

    def __init__(self, vms: Sequence[BenchVm], interval: float, deadline: float) -> None:
        super().__init__(daemon=True)
        self.vms = list(vms)
        self.interval = interval
        self.deadline = deadline
        self.t0 = 0.0
        self.go = threading.Event()
        self.first: dict[int, float] = {}

    def run(self) -> None:
        poller = select.epoll()
        by_fd: dict[int, BenchVm] = {}
        for vm in self.vms:
            assert vm.sock is not None
            poller.register(vm.sock.fileno(), select.EPOLLIN)
            by_fd[vm.sock.fileno()] = vm
        self.go.wait()
        seq, next_send = 0, time.monotonic()
        try:
            while len(self.first) < len(self.vms) and time.monotonic() < self.deadline:
                now = time.monotonic()
                if now >= next_send:
                    seq = (seq + 1) & 0xFFFF
                    for vm in self.vms:
                        if vm.n not in self.first:
                            with contextlib.suppress(OSError):  # unreachable while ARP fails
                                assert vm.sock is not None
                                vm.sock.sendto(echo_request(vm.n & 0xFFFF, seq), (vm.target_ip, 0))
                    next_send = max(next_send + self.interval, now)
                timeout = max(0.0, min(next_send, self.deadline) - time.monotonic())
                for fd, _ in poller.poll(timeout):
                    self._receive(by_fd[fd])
        finally:
            poller.close()

    def _receive(self, vm: BenchVm) -> None:
        assert vm.sock is not None
        with contextlib.suppress(BlockingIOError, OSError):
            while True:
                data = vm.sock.recv(2048, socket.MSG_DONTWAIT)
                icmp = data[(data[0] & 15) * 4 :]
                kind, _, _, ident, _ = struct.unpack("!BBHHH", icmp[:8])
                source = socket.inet_ntoa(data[12:16])
                if kind == 0 and ident == vm.n & 0xFFFF and source == vm.target_ip:
                    self.first.setdefault(vm.n, time.monotonic() - self.t0)


def open_vm_socket(vm: BenchVm) -> None:
    """ARP retransmit 100 ms (as the lab's VMs) and a raw ICMP socket, inside the VM."""
    with inside(vm.netns):
        Path("/proc/sys/net/ipv4/neigh/eth0/retrans_time_ms").write_text("100")
        vm.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        vm.sock.setblocking(False)


@dataclass
class Bench:
    cloud: Cloud
    tenant: Tenant
    net: Network
    anchors: dict[str, str] = field(default_factory=dict)  # host → anchor VM address
    anchor_vms: dict[str, str] = field(default_factory=dict)  # address → lab VM name
    anchor_macs: dict[str, str] = field(default_factory=dict)  # address → MAC
    static_arp: bool = False
    counter: int = 0

    @property
    def prefix(self) -> str:
        return self.cloud.lab.layout.prefix

    def address(self, n: int) -> str:
        return f"10.80.{n // 250 + 1}.{n % 250 + 2}"

    async def prepare(self, k: int) -> list[BenchVm]:
        hosts = self.cloud.hosts
        vms = []
        for j in range(k):
            self.counter += 1
            n = self.counter
            host = hosts[j % len(hosts)]
            target_host = hosts[(j + 1) % len(hosts)]
            vms.append(
                BenchVm(
                    n=n,
                    host=host,
                    netns=f"{self.prefix}-b{n}",
                    tap=f"kb{self.prefix}{n}"[:15],
                    mac=f"fa:16:3e:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}",
                    ip=self.address(n),
                    target_ip=self.anchors[target_host],
                )
            )
        lab = self.cloud.lab
        await run(["ip", "-batch", "-"], stdin="".join(f"netns add {vm.netns}\n" for vm in vms))
        await run(
            ["ip", "-batch", "-"],
            stdin="".join(
                f"link add {vm.tap} netns {lab.host(vm.host).netns} type veth"
                f" peer name eth0 netns {vm.netns} address {vm.mac}\n"
                for vm in vms
            ),
        )
        for host in hosts:
            taps = [vm.tap for vm in vms if vm.host == host]
            if taps:
                await run(
                    ["ip", "-n", lab.host(host).netns, "-batch", "-"],
                    stdin="".join(f"link set {tap} up\n" for tap in taps),
                )
        for vm in vms:
            await run(
                ["ip", "-n", vm.netns, "-batch", "-"],
                stdin=(
                    f"link set lo up\nlink set eth0 mtu {self.net.mtu} up\n"
                    f"addr add {vm.ip}/16 dev eth0\n"
                ),
            )
            open_vm_socket(vm)
        if self.static_arp:
            await self.pin_neighbours(vms)
        return vms

    async def pin_neighbours(self, vms: Sequence[BenchVm]) -> None:
        """Static ARP both ways (new VM → its anchor, anchor → new VM): the
        batch then measures flows alone, without ARP through the overlay."""
        lab = self.cloud.lab
        for vm in vms:
            await run(
                [
                    "ip",
                    "-n",
                    vm.netns,
                    "neigh",
                    "replace",
                    vm.target_ip,
                    "lladdr",
                    self.anchor_macs[vm.target_ip],
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ]
            )
        for address, name in self.anchor_vms.items():
            mine = [vm for vm in vms if vm.target_ip == address]
            if mine:
                await run(
                    ["ip", "-n", lab.vm(name).netns, "-batch", "-"],
                    stdin="".join(
                        f"neigh replace {vm.ip} lladdr {vm.mac} dev eth0 nud permanent\n"
                        for vm in mine
                    ),
                )

    async def create_ports(self, vms: Sequence[BenchVm]) -> None:
        """One bulk POST per BULK_LIMIT ports, all at once (the server, like
        Neutron, refuses request bodies above ~110 kB)."""

        async def post(chunk: Sequence[BenchVm]) -> None:
            body = {"ports": [self._port_body(vm) for vm in chunk]}
            ports = (await self.cloud.api("POST", "/ports", body))["ports"]
            for vm, port in zip(chunk, ports, strict=True):
                vm.port_id = port["id"]

        chunks = [vms[i : i + BULK_LIMIT] for i in range(0, len(vms), BULK_LIMIT)]
        await asyncio.gather(*(post(chunk) for chunk in chunks))

    def _port_body(self, vm: BenchVm) -> dict[str, object]:
        return {
            "network_id": self.net.id,
            "tenant_id": self.tenant.project,
            "name": vm.netns,
            "mac_address": vm.mac,
            "fixed_ips": [{"subnet_id": self.net.subnet_id, "ip_address": vm.ip}],
            "binding:host_id": vm.host,
            "device_owner": "compute:nova",
            "device_id": f"bench-{vm.n}",
        }

    async def plug(self, vms: Sequence[BenchVm], t0: float) -> dict[str, float]:
        """Plug the taps, one ovs-vsctl per host; returns when each host's returned."""
        done: dict[str, float] = {}

        async def plug_host(host: str, mine: list[BenchVm]) -> None:
            args: list[str] = []
            for vm in mine:
                args += [
                    "--",
                    "add-port",
                    "br-int",
                    vm.tap,
                    "--",
                    "set",
                    "Interface",
                    vm.tap,
                    f"external_ids:iface-id={vm.port_id}",
                    f"external_ids:attached-mac={vm.mac}",
                    "external_ids:iface-status=active",
                ]
            await self.cloud.lab.ovs(host).vsctl(*args, time_limit=60)
            done[host] = time.monotonic() - t0

        by_host = {h: [vm for vm in vms if vm.host == h] for h in self.cloud.hosts}
        await asyncio.gather(*(plug_host(h, m) for h, m in by_host.items() if m))
        return done

    async def remove(self, vms: Sequence[BenchVm]) -> None:
        sem = asyncio.Semaphore(8)

        async def delete(vm: BenchVm) -> None:
            async with sem:
                await self.cloud.api("DELETE", f"/ports/{vm.port_id}")

        await asyncio.gather(*(delete(vm) for vm in vms if vm.port_id))
        for host in self.cloud.hosts:
            args: list[str] = []
            for vm in vms:
                if vm.host == host:
                    args += ["--", "--if-exists", "del-port", "br-int", vm.tap]
            if args:
                await self.cloud.lab.ovs(host).vsctl(*args, time_limit=60)
        for vm in vms:
            if vm.sock is not None:
                vm.sock.close()
        await run(["ip", "-batch", "-"], stdin="".join(f"netns del {vm.netns}\n" for vm in vms))


Pass = tuple[float, float, int, int, float, float]
PASS_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO kumonet\.agent\.daemon: "
    r"reconciliation \d+: \+(\d+) -(\d+) flows in ([0-9.]+) ms"
    r"(?: \(compile ([0-9.]+) ms, flows ([0-9.]+) ms\))?",
    re.MULTILINE,
)


def pass_times(log: AgentLog, wall0: float) -> list[Pass]:
    """The agent's passes logged since ``log.mark()``, in seconds after ``wall0``."""
    with log.path.open("rb") as handle:
        handle.seek(log.offset)
        text = handle.read().decode(errors="replace")
    found: list[Pass] = []
    for m in PASS_LINE.finditer(text):
        end = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        ms = float(m.group(4))
        compile_ms, flows_ms = (float(g) if g else math.nan for g in m.group(5, 6))
        added, deleted = int(m.group(2)), int(m.group(3))
        found.append((end - ms / 1000 - wall0, end - wall0, added, deleted, compile_ms, flows_ms))
    return found


@dataclass
class BatchResult:
    k: int
    api_s: float
    bind_s: float
    pings: list[float]
    missing: int
    flows_before: dict[str, int]
    flows_after: dict[str, int]
    usage_before: dict[str, Usage]
    usage_after: dict[str, Usage]
    teardown_s: float
    hosts_of: dict[str, int]
    flows_done: dict[str, float]  # host → last flow change of the batch (s after t0)
    # host → the batch's passes: (start, end) s after t0, flows added, deleted, and
    # the ms of the pass spent compiling and applying flows
    passes: dict[str, list[Pass]] = field(default_factory=dict)
    plugged: dict[str, float] = field(default_factory=dict)  # host → its ovs-vsctl returned
    active: list[float] = field(default_factory=list)  # per port: status ACTIVE seen (s)


PORTS_PREFIX = "/config/neutron/ports/"


class StatusWatch:
    """When each port's status turned ACTIVE, as the agents report it: the
    counterpart of OVN's "NB up" (ovn-controller sets it once the port's flows are
    in). Seen passively, through the servers' long-poll watch the agents use, so
    the figure costs the cloud nothing extra."""

    def __init__(self, cloud: Cloud) -> None:
        self.client = ServerClient([cloud.url])
        self.active: dict[str, float] = {}  # port id → s after t0
        self.t0 = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        revision = (await self.client.snapshot(PORTS_PREFIX)).revision + 1
        self._task = asyncio.create_task(self._follow(revision))

    async def _follow(self, revision: int) -> None:
        while True:
            batch = await self.client.watch(PORTS_PREFIX, revision, wait=5)
            now = time.monotonic() - self.t0
            for event in batch.events:
                value = event.value if event.type == "put" else None
                if isinstance(value, dict) and value.get("status") == "ACTIVE":
                    self.active.setdefault(event.key[len(PORTS_PREFIX) :], now)
            revision = max(revision, batch.revision + 1)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.close()


async def run_batch(bench: Bench, k: int, *, interval: float, time_limit: float) -> BatchResult:
    cloud = bench.cloud
    vms = await bench.prepare(k)
    await asyncio.sleep(1.0)  # settle before the snapshots
    flows_before = await flow_counts(cloud)
    procs = processes(cloud)
    usage_before = {name: usage(pid) for name, pid in procs.items()}
    logs = {h: AgentLog(Path(cloud.lab.host(h).dir) / "agent.log") for h in cloud.hosts}
    for log in logs.values():
        log.mark()
    pinger = Pinger(vms, interval, time.monotonic() + time_limit)
    pinger.start()
    statuses = StatusWatch(cloud)
    await statuses.start()
    wall0 = time.time()
    t0 = time.monotonic()
    pinger.t0 = statuses.t0 = t0
    pinger.go.set()
    await bench.create_ports(vms)
    api_s = time.monotonic() - t0
    plugged = await bench.plug(vms, t0)
    bind_s = time.monotonic() - t0
    await asyncio.to_thread(pinger.join)
    await asyncio.sleep(1.0)
    await statuses.stop()
    active = [statuses.active[vm.port_id] for vm in vms if vm.port_id in statuses.active]
    usage_after = {name: usage(pid) for name, pid in procs.items()}
    flows_after = await flow_counts(cloud)
    passes = {host: pass_times(log, wall0) for host, log in logs.items()}
    flows_done = {
        host: max((p[1] for p in mine if p[2] or p[3]), default=math.nan)
        for host, mine in passes.items()
    }
    started = time.monotonic()
    await bench.remove(vms)
    for _ in range(1200):  # at most a minute
        if await flow_counts(cloud) == flows_before:
            break
        await asyncio.sleep(0.05)
    teardown_s = time.monotonic() - started
    hosts_of = {h: sum(1 for vm in vms if vm.host == h) for h in cloud.hosts}
    return BatchResult(
        k,
        api_s,
        bind_s,
        list(pinger.first.values()),
        k - len(pinger.first),
        flows_before,
        flows_after,
        usage_before,
        usage_after,
        teardown_s,
        hosts_of,
        flows_done,
        passes,
        plugged,
        active,
    )


OVN = {  # README and figures.md of /work/shared/bench/ovn (geneve, ping from t0)
    1: (0.10, 0.10),
    50: (0.41, 0.42),
    200: (2.52, 2.57),
    500: (10.96, 11.16),
}
TARGET = {1: "≤ 0.05 s", 50: "≤ 0.21 s", 200: "≤ 0.75–1.3 s", 500: "(none; OVN 11.2 s)"}


def report(result: BatchResult) -> None:
    k = result.k
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"\nK = {k} new ports over {len(result.hosts_of)} hosts (load {load})", flush=True)
    line("bulk POST answered", f"{result.api_s:.3f} s")
    line("taps plugged (ovs-vsctl per host)", f"{result.bind_s:.3f} s")
    for host, mine in sorted(result.passes.items()):
        # Where the time goes: each agent pass (start-end after t0, flows changed),
        # against when that host's taps were plugged.
        steps = " ".join(
            f"[{a:.3f}-{b:.3f} +{n}-{d} c{c:.0f} f{f:.0f}]" for a, b, n, d, c, f in mine if b > -1
        )
        plug = result.plugged.get(host, math.nan)
        print(f"    {host}: plugged {plug:.3f}; passes {steps}", flush=True)
    done = ", ".join(f"{h} {t:.3f}" for h, t in sorted(result.flows_done.items()))
    line("flows complete per host (agent logs, s)", done)
    line(
        "flows complete on every host",
        f"{max(result.flows_done.values()):.3f} s",
        TARGET.get(k, ""),
    )
    if result.active:
        line(
            "ports ACTIVE p50 / all (OVN: NB up)",
            f"{pct(result.active, 50):.3f} / {max(result.active):.3f} s",
            "" if len(result.active) == k else f"only {len(result.active)} of {k}",
        )
    if result.pings:
        line(
            "first ping reply p50",
            f"{pct(result.pings, 50):.3f} s",
            f"{TARGET.get(k, '')} (OVN p50 {OVN.get(k, ('?',))[0]} s)",
        )
        line(
            "all pingable (max)",
            f"{max(result.pings):.3f} s",
            f"(OVN {OVN.get(k, ('?', '?'))[1]} s)",
        )
    if result.missing:
        line("VMs never answering", str(result.missing), "0")
    for host in result.flows_before:
        line(
            f"{host} flows before -> after ({result.hosts_of[host]} local)",
            f"{result.flows_before[host]} -> {result.flows_after[host]}",
        )
    if k == 1:
        local = next(h for h, n in result.hosts_of.items() if n)
        for host in result.flows_before:
            delta = result.flows_after[host] - result.flows_before[host]
            kind = "local" if host == local else "remote"
            line(
                f"flows per port on {host} ({kind})",
                str(delta),
                "≤ 32 (OVN)" if kind == "local" else "≤ 3 (OVN)",
            )
    for name in result.usage_before:
        before, after = result.usage_before[name], result.usage_after[name]
        line(
            f"{name} RSS before -> after",
            f"{before.rss_kb / 1024:.1f} -> {after.rss_kb / 1024:.1f} MB",
            "≤ 80 MB at 500 ports" if "agent" in name else "",
        )
        line(f"{name} CPU over the batch", f"{after.cpu_s - before.cpu_s:.2f} s")
    line("teardown (API deletes → flows back)", f"{result.teardown_s:.2f} s")


async def setup(cloud: Cloud) -> Bench:
    tenant = Tenant(cloud)
    net = await tenant.network("10.80.0.0/16")
    bench = Bench(cloud, tenant, net)
    for host in cloud.hosts:
        vm = await tenant.boot(host, net, static=True)
        bench.anchors[host] = fixed_ip(vm)
        bench.anchor_vms[fixed_ip(vm)] = vm.name
        bench.anchor_macs[fixed_ip(vm)] = vm.mac
    for host, other in zip(cloud.hosts, cloud.hosts[1:] + cloud.hosts[:1], strict=True):
        name = next(n for n, v in cloud.lab.vms().items() if v.host == host)
        assert await cloud.lab.ping(name, bench.anchors[other], attempts=20), host
    return bench


async def bench_all(cloud: Cloud, args: argparse.Namespace) -> list[BatchResult]:
    bench = await setup(cloud)
    bench.static_arp = args.static_arp
    results = []
    for _ in range(args.runs):
        for k in args.batches:
            result = await run_batch(
                bench, k, interval=args.ping_interval, time_limit=args.time_limit
            )
            report(result)
            results.append(result)
    if args.runs > 1:
        summary(results)
    return results


def summary(results: Sequence[BatchResult]) -> None:
    """Medians over the runs (the machine is shared: single runs are noisy)."""
    print(f"\nmedian (min–max) over {len(results) // len({r.k for r in results})} runs", flush=True)
    for k in sorted({r.k for r in results}):
        mine = [r for r in results if r.k == k]

        def spread(values: list[float]) -> str:
            return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f}) s"

        print(f"K = {k}", flush=True)
        line("bulk POST answered", spread([r.api_s for r in mine]))
        line(
            "flows complete on every host",
            spread([max(r.flows_done.values()) for r in mine]),
            TARGET.get(k, ""),
        )
        line(
            "all ports ACTIVE (OVN: NB all up)",
            spread([max(r.active) if r.active else float("inf") for r in mine]),
        )
        line(
            "all pingable (max)",
            spread([max(r.pings) if r.pings else float("inf") for r in mine]),
            f"{TARGET.get(k, '')} (OVN {OVN.get(k, ('?', '?'))[1]} s)",
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--ping-interval", type=float, default=0.2, help="seconds between echoes per VM"
    )
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument(
        "--static-arp",
        action="store_true",
        help="pin ARP entries both ways: flows alone, no ARP through the overlay",
    )
    parser.add_argument("--keep-logs", type=Path, help="copy the lab's logs here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    prefix = "kb" + secrets.token_hex(2)
    print(f"kumonet bring-up bench: lab {prefix}, 3 hosts, batches {args.batches}", flush=True)
    with running_cloud(prefix, 3, keep_logs=args.keep_logs) as cloud:
        asyncio.run(bench_all(cloud, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
