#!/usr/bin/env python3
"""Benchmark of kumonet-server's Neutron API on the embedded SQLite store.

Starts a real ``kumonet-server`` on loopback over a fresh store file, then:
  (a) sequential port creates on one network (ports/s, p50/p99 ms);
  (b) 8 concurrent clients creating ports (ports/s, p99 ms);
  (c) GET /v2.0/ports with exactly --list-size ports in the project (ms);
  (d) the server's RSS.
Prints each figure next to its target. Not a test: nothing asserts.

  .venv/bin/python bench/api_bench.py [--seq 1000] [--conc 2000] [--list-size 5000] [--close]
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

PROJECT = "b" * 32
HEADERS = {"Content-Type": "application/json", "X-Project-Id": PROJECT, "X-Roles": "member"}


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def create_port(session: aiohttp.ClientSession, url: str, network_id: str) -> float:
    start = time.perf_counter()
    async with session.post(
        f"{url}/v2.0/ports",
        data=orjson.dumps({"port": {"network_id": network_id}}),
        headers=HEADERS,
    ) as resp:
        await resp.read()
        if resp.status != 201:
            raise RuntimeError(f"port create answered {resp.status}")
    return time.perf_counter() - start


def new_session(args: argparse.Namespace) -> aiohttp.ClientSession:
    # --close: one TCP connection per request, as the reference Neutron
    # benchmark does by default.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=args.close))


async def run(args: argparse.Namespace, url: str, server: psutil.Process) -> None:
    async with new_session(args) as session:
        async with session.post(
            f"{url}/v2.0/networks",
            data=orjson.dumps({"network": {"name": "bench"}}),
            headers=HEADERS,
        ) as resp:
            network = (await resp.json())["network"]
        async with session.post(
            f"{url}/v2.0/subnets",
            data=orjson.dumps(
                {"subnet": {"network_id": network["id"], "ip_version": 4, "cidr": "10.0.0.0/16"}}
            ),
            headers=HEADERS,
        ) as resp:
            assert resp.status == 201, await resp.text()

        for _ in range(20):  # warm-up, not measured
            await create_port(session, url, network["id"])
        created = 20

        seq = []
        t0 = time.perf_counter()
        for _ in range(args.seq):
            seq.append(await create_port(session, url, network["id"]))
        seq_elapsed = time.perf_counter() - t0
        created += args.seq
        rate = args.seq / seq_elapsed
        print(
            f"sequential port create: {rate:7.1f} ports/s (target >= 300)   "
            f"p50 {pct(seq, 50) * 1000:.2f} ms   p99 {pct(seq, 99) * 1000:.2f} ms "
            "(target <= 20)"
        )

        conc: list[float] = []
        remaining = args.conc

        async def client() -> None:
            nonlocal remaining
            async with new_session(args) as own:
                while remaining > 0:
                    remaining -= 1
                    conc.append(await create_port(own, url, network["id"]))

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(args.clients)))
        conc_elapsed = time.perf_counter() - t0
        created += len(conc)
        print(
            f"{args.clients} concurrent clients:  {len(conc) / conc_elapsed:7.1f} ports/s "
            f"(target >= 300)   p99 {pct(conc, 99) * 1000:.2f} ms"
        )

        while created < args.list_size:
            await create_port(session, url, network["id"])
            created += 1
        lists = []
        for _ in range(5):
            t0 = time.perf_counter()
            async with session.get(f"{url}/v2.0/ports", headers=HEADERS) as resp:
                body = await resp.read()
            lists.append(time.perf_counter() - t0)
            count = len(orjson.loads(body)["ports"])
        print(
            f"list {count} ports:        {min(lists) * 1000:7.1f} ms best, "
            f"{pct(lists, 50) * 1000:.1f} ms median (target <= 300)"
        )
        rss = server.memory_info().rss / 2**20
        print(f"server RSS:              {rss:7.1f} MiB (target <= 150)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=1000)
    parser.add_argument("--conc", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--list-size", type=int, default=5000)
    parser.add_argument(
        "--close", action="store_true", help="a new TCP connection per request (no keep-alive)"
    )
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="kumonet-bench-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [
                str(bin_dir / "kumonet-server"),
                "--listen",
                f"127.0.0.1:{port}",
                "--store",
                f"sqlite:///{tmp}/bench.db",
                "--log-level",
                "WARNING",
            ],
            cwd=tmp,
        )
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(url + "/", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            asyncio.run(run(args, url, psutil.Process(proc.pid)))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    http = "a connection per request" if args.close else "keep-alive HTTP"
    print(f"(embedded SQLite store, {http}, {os.cpu_count()} CPUs shared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
