#!/usr/bin/env python3
"""Benchmark of the servers' agent API (``/v1/agent``) on the embedded store.

First, in process: --pollers waiters on one change feed over an in-memory
store, the time from a store write until every waiter has its batch (the
feed's own share of a long poll's latency, without HTTP).

Then starts a real ``kumonet-server`` (of this source tree) on loopback over a
fresh store file, and:
  (a) --pollers agents long-polling /config/neutron/ (each its own
      connection); for --rounds API writes, the time from the write's answer
      to each poller's answer (p50, p99, max over all pollers and rounds);
  (b) the server's RSS with every poller parked;
  (c) --hosts hosts registering, then heartbeating once each (requests/s);
  (d) port bring-up: --ports ports reported ACTIVE by one host in batches of
      --batch (ports/s, each one a guarded port update with a revision bump);
  (e) snapshot of /config/neutron/ with those ports (ms).
Prints each figure next to its target. Not a test: nothing asserts.

  .venv/bin/python bench/agent_sync_bench.py [--pollers 500] [--rounds 10] [--ports 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import orjson
import psutil

JSON = {"Content-Type": "application/json"}
TREE = Path(__file__).resolve().parents[1]


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def call(session: aiohttp.ClientSession, method: str, url: str, body: object = None,
               expect: int = 200) -> dict[str, object]:
    data = orjson.dumps(body) if body is not None else None
    async with session.request(method, url, data=data, headers=JSON) as resp:
        raw = await resp.read()
        if resp.status != expect:
            raise RuntimeError(f"{method} {url} answered {resp.status}: {raw[:200]!r}")
        result: dict[str, object] = orjson.loads(raw) if raw else {}
        return result


async def feed_fanout(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(TREE))
    from kumonet.api.change_feed import ChangeFeed
    from kumonet.store.url import open_store

    store = await open_store("sqlite:///:memory:")
    feed = ChangeFeed(store, "/config/neutron/")
    await feed.start()
    figures = []
    for round_number in range(args.rounds):
        since = await store.revision() + 1
        done: list[float] = []

        async def waiter(since: int = since, done: list[float] = done) -> None:
            batch = await feed.changes(since, wait_seconds=60)
            assert batch.body
            done.append(time.perf_counter())

        tasks = [asyncio.create_task(waiter()) for _ in range(args.pollers)]
        await asyncio.sleep(0.05)  # let them park (setup, not measured)
        t0 = time.perf_counter()
        await store.put(f"/config/neutron/networks/n{round_number}", b'{"name": "n"}')
        await asyncio.gather(*tasks)
        figures.append(max(done) - t0)
    await feed.close()
    await store.close()
    print(f"change feed alone, {args.pollers} waiters: all answered {pct(figures, 50) * 1000:.1f}"
          f" ms median after the write (target <= 20 ms)")


async def long_polls(args: argparse.Namespace, url: str, server: psutil.Process) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        snap = await call(session, "GET", f"{url}/v1/agent/snapshot?prefix=/config/neutron/")
        revision = int(str(snap["revision"])) + 1
        latencies: list[float] = []
        answered_at: list[float] = []
        all_answered = asyncio.Event()

        async def poller() -> None:
            nonlocal revision
            since = revision
            for _ in range(args.rounds):
                body = await call(session, "GET", f"{url}/v1/agent/watch?prefix=/config/"
                                  f"neutron/&revision={since}&timeout=120")
                answered_at.append(time.perf_counter())
                if len(answered_at) == args.pollers:
                    all_answered.set()
                since = int(str(body["revision"])) + 1

        tasks = [asyncio.create_task(poller()) for _ in range(args.pollers)]
        for round_number in range(args.rounds):
            # Let every poller park before the write (setup, not measured).
            await asyncio.sleep(1.0 if round_number == 0 else 0.3)
            if round_number == 0:
                rss = server.memory_info().rss / 2**20
            answered_at.clear()
            all_answered.clear()
            await call(session, "POST", f"{url}/v2.0/networks",
                       {"network": {"name": f"bench-{round_number}"}}, expect=201)
            written = time.perf_counter()
            await all_answered.wait()
            latencies += [t - written for t in answered_at]
        await asyncio.gather(*tasks)
    print(f"{args.pollers} long-pollers, write -> answer: p50 {pct(latencies, 50) * 1000:.1f} ms"
          f"   p99 {pct(latencies, 99) * 1000:.1f} ms   max {max(latencies) * 1000:.1f} ms "
          f"(target p99 <= 250 ms for 500)")
    print(f"server RSS with {args.pollers} parked polls: {rss:.1f} MiB (target <= 150)")


async def hosts_and_ports(args: argparse.Namespace, url: str) -> None:
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        for i in range(args.hosts):
            await call(session, "PUT", f"{url}/v1/agent/hosts/host{i}",
                       {"agent_types": ["Open vSwitch agent"], "tunnel_ip": "192.0.2.1"})
        registered = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(args.hosts):
            await call(session, "POST", f"{url}/v1/agent/hosts/host{i}/heartbeat")
        beats = time.perf_counter() - t0
        print(f"register {args.hosts} hosts: {args.hosts / registered:7.1f} /s   heartbeats "
              f"{args.hosts / beats:7.1f} /s sequential (target >= 500/s)")

        network = (await call(session, "POST", f"{url}/v2.0/networks",
                              {"network": {"name": "ports"}}, expect=201))["network"]
        network_id = network["id"]  # type: ignore[index]
        await call(session, "POST", f"{url}/v2.0/subnets", {"subnet": {
            "network_id": network_id, "ip_version": 4, "cidr": "10.0.0.0/16"}}, expect=201)
        ports: list[str] = []
        for start in range(0, args.ports, 200):
            count = min(200, args.ports - start)
            body = await call(session, "POST", f"{url}/v2.0/ports", {"ports": [
                {"network_id": network_id} for _ in range(count)]}, expect=201)
            ports += [p["id"] for p in body["ports"]]  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        for start in range(0, len(ports), args.batch):
            body = await call(session, "PUT", f"{url}/v1/agent/ports/status", {
                "host": "host0",
                "ports": [{"port_id": p, "status": "ACTIVE"}
                          for p in ports[start:start + args.batch]]})
            failed = [r for r in body["ports"] if "error" in r]  # type: ignore[attr-defined]
            if failed:
                raise RuntimeError(f"port reports failed: {failed[:3]}")
        elapsed = time.perf_counter() - t0
        print(f"port bring-up, {args.ports} ports in batches of {args.batch}: "
              f"{args.ports / elapsed:7.1f} ports/s (target >= 300)")
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            await call(session, "GET", f"{url}/v1/agent/snapshot?prefix=/config/neutron/")
            times.append(time.perf_counter() - t0)
        print(f"snapshot /config/neutron/ with {args.ports} ports: {min(times) * 1000:7.1f} ms "
              "best (target <= 300)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pollers", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kumonet-bench-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(TREE)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "kumonet.api.main", "--listen", f"127.0.0.1:{port}",
             "--store", f"sqlite:///{tmp}/bench.db", "--log-level", "WARNING"],
            cwd=tmp, env=env)
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(url + "/", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            asyncio.run(feed_fanout(args))
            asyncio.run(long_polls(args, url, psutil.Process(proc.pid)))
            asyncio.run(hosts_and_ports(args, url))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"(embedded SQLite store, server and clients on {os.cpu_count()} shared CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
