#!/usr/bin/env python3
"""Security group changes through the whole cloud: API call → server → every
agent → flows installed, with 200 ports on 3 hosts.

The cloud of ``tests/cloud.py`` (kumonet-server on SQLite, 3 lab hosts with
real kumonet-agents and userspace OVS). 200 ports in one project's
``default`` group (whose rule admits the group's own members: a remote group
referenced by all 200 ports), bound and plugged round-robin on the hosts as
OVS internal interfaces (no VM needed: what is measured is intent → flows).

  rule change     POST (then DELETE) an ingress TCP rule on ``default``: time
                  from the call to the moment every host's agent has applied
                  the resulting flows.
  member add      PUT a port (bound nowhere, so only the group's address set
                  changes) into ``default`` (then out again): time until every
                  host has the new (removed) address in the shared set.

"Applied" is the agent's own log line, written right after the OpenFlow
bundle was acknowledged (``reconciliation N: +A -D flows in T ms``, with a
millisecond timestamp); the bench waits for the first such line after the
call that changed flows on each host, and checks the flow count moved.

Prints each figure next to its target. Not a test: nothing asserts. Needs root.

  .venv/bin/python bench/sg_e2e_bench.py [--ports 200] [--repeat 10]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import secrets
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.cloud import Cloud, Network, Tenant, running_cloud

LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO kumonet\.agent\.daemon: "
    r"reconciliation \d+: \+(\d+) -(\d+) flows in ([0-9.]+) ms",
    re.MULTILINE,
)


def line(name: str, value: str, target: str = "") -> None:
    print(f"  {name:<50} {value:>26}   {('target ' + target) if target else ''}", flush=True)


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


@dataclass
class AgentLog:
    path: Path
    offset: int = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def applied(self) -> list[tuple[float, int, int, float]]:
        """(wall time, added, deleted, pass ms) of passes logged since ``mark``."""
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            text = handle.read().decode(errors="replace")
        found = []
        for m in LOG_LINE.finditer(text):
            stamp = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            found.append((stamp, int(m.group(2)), int(m.group(3)), float(m.group(4))))
        return found


@dataclass
class Trial:
    per_host: dict[str, float]  # seconds from the call to the flows applied
    pass_ms: dict[str, float]  # the applying pass's own duration on each host
    api_s: float

    @property
    def all_hosts(self) -> float:
        return max(self.per_host.values())


async def timed_change(cloud: Cloud, logs: dict[str, AgentLog], call: object) -> Trial:
    for log in logs.values():
        log.mark()
    wall0, mono0 = time.time(), time.monotonic()
    await call  # type: ignore[misc]
    api_s = time.monotonic() - mono0
    per_host: dict[str, float] = {}
    pass_ms: dict[str, float] = {}
    deadline = time.monotonic() + 30
    while len(per_host) < len(logs) and time.monotonic() < deadline:
        for host, log in logs.items():
            if host in per_host:
                continue
            for stamp, added, deleted, took in log.applied():
                if added or deleted:
                    per_host[host] = stamp - wall0
                    pass_ms[host] = took
                    break
        await asyncio.sleep(0.02)
    for host in logs:
        per_host.setdefault(host, float("inf"))
    return Trial(per_host, pass_ms, api_s)


async def plug_ports(cloud: Cloud, tenant: Tenant, net: Network, count: int) -> None:
    hosts = cloud.hosts
    body = {
        "ports": [
            {
                "network_id": net.id,
                "tenant_id": tenant.project,
                "name": f"sg{i}",
                "binding:host_id": hosts[i % len(hosts)],
                "device_owner": "compute:nova",
                "device_id": f"sg-bench-{i}",
            }
            for i in range(count)
        ]
    }
    ports = (await cloud.api("POST", "/ports", body))["ports"]
    tenant.ports.extend(p["id"] for p in ports)
    for h, host in enumerate(hosts):
        args: list[str] = []
        for i, port in enumerate(ports):
            if i % len(hosts) == h:
                args += [
                    "--",
                    "add-port",
                    "br-int",
                    f"sgb{i}",
                    "--",
                    "set",
                    "Interface",
                    f"sgb{i}",
                    "type=internal",
                    f"external_ids:iface-id={port['id']}",
                    f"external_ids:attached-mac={port['mac_address']}",
                    "external_ids:iface-status=active",
                ]
        await cloud.lab.ovs(host).vsctl(*args, time_limit=120)

    async def all_active() -> bool:
        listed = (await cloud.api("GET", f"/ports?network_id={net.id}&status=ACTIVE"))["ports"]
        return len(listed) >= count

    deadline = time.monotonic() + 120
    while not await all_active():
        if time.monotonic() > deadline:
            raise SystemExit("ports did not become ACTIVE within 120 s")
        await asyncio.sleep(0.5)


def summarize(name: str, trials: list[Trial], target: str) -> None:
    everywhere = [t.all_hosts for t in trials]
    line(f"{name}: all hosts p50", f"{pct(everywhere, 50) * 1000:.0f} ms", target)
    line(f"{name}: all hosts max", f"{max(everywhere) * 1000:.0f} ms", target)
    hosts = sorted(trials[0].per_host)
    per_host = ", ".join(
        f"{h} {statistics.median(t.per_host[h] for t in trials) * 1000:.0f}" for h in hosts
    )
    line(f"{name}: per host p50 (ms)", per_host)
    passes = [ms for t in trials for ms in t.pass_ms.values()]
    if passes:
        line(f"{name}: agent pass p50 / max", f"{pct(passes, 50):.0f} / {max(passes):.0f} ms")
    line(f"{name}: API call p50", f"{pct([t.api_s for t in trials], 50) * 1000:.0f} ms")


async def bench(cloud: Cloud, args: argparse.Namespace) -> None:
    tenant = Tenant(cloud)
    net = await tenant.network("10.90.0.0/16")
    started = time.monotonic()
    await plug_ports(cloud, tenant, net, args.ports)
    print(
        f"{args.ports} ports ACTIVE on {len(cloud.hosts)} hosts in "
        f"{time.monotonic() - started:.1f} s",
        flush=True,
    )
    await asyncio.sleep(1.0)
    default = await tenant.default_group()
    other = await tenant.group()
    member = await tenant.create_port(net, security_groups=[other["id"]])
    logs = {h: AgentLog(Path(cloud.lab.host(h).dir) / "agent.log") for h in cloud.hosts}
    flows = {h: len(await cloud.flows(h)) for h in cloud.hosts}
    print("flows per host: " + ", ".join(f"{h} {n}" for h, n in flows.items()), flush=True)

    adds, deletes = [], []
    made: list[dict[str, object]] = []

    async def add_rule(port: int) -> None:
        made.append(
            await tenant.rule(
                default["id"],
                protocol="tcp",
                port_range_min=port,
                port_range_max=port,
                remote_ip_prefix="0.0.0.0/0",
            )
        )

    for i in range(args.repeat):
        adds.append(await timed_change(cloud, logs, add_rule(2000 + i)))
        await asyncio.sleep(0.3)
        deletes.append(await timed_change(cloud, logs, tenant.delete_rule(str(made[-1]["id"]))))
        await asyncio.sleep(0.3)
    joins, leaves = [], []
    for _ in range(args.repeat):
        joins.append(
            await timed_change(
                cloud,
                logs,
                tenant.update_port(member["id"], security_groups=[other["id"], default["id"]]),
            )
        )
        await asyncio.sleep(0.3)
        leaves.append(
            await timed_change(
                cloud, logs, tenant.update_port(member["id"], security_groups=[other["id"]])
            )
        )
        await asyncio.sleep(0.3)

    print(
        f"\nsecurity group changes with {args.ports} ports on {len(cloud.hosts)} hosts "
        f"({args.repeat} of each)",
        flush=True,
    )
    summarize("rule add", adds, "≤ 200 ms")
    summarize("rule delete", deletes, "≤ 200 ms")
    summarize("remote-group member add", joins, "≤ 100 ms")
    summarize("remote-group member remove", leaves, "≤ 100 ms")
    await tenant.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--keep-logs", type=Path, help="copy the lab's logs here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    prefix = "ks" + secrets.token_hex(2)
    print(f"kumonet security group e2e bench: lab {prefix}", flush=True)
    with running_cloud(prefix, 3, keep_logs=args.keep_logs) as cloud:
        asyncio.run(bench(cloud, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
