"""Store benchmark: Neutron-port-create-shaped transactions on a file-backed
SqliteStore (durable: WAL, synchronous=FULL).

Each create is one txn guarded by 3 compares (network unchanged, subnet
unchanged, address free) with 4 puts (port, address allocation, MAC
allocation, per-network index entry), as the API will issue it.

    .venv/bin/python bench/store_bench.py [--creates 2000] [--dir DIR] [--url URL]

Target (the API's): >= 300 creates/s with p99 <= 20 ms from 8 concurrent
clients.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from kumonet.store.contract import Compare, Put, Store, key_absent, key_unchanged
from kumonet.store.url import open_store

TARGET_RATE = 300.0
TARGET_P99_MS = 20.0
NETWORK = "/config/neutron/networks/net-1"
SUBNET = "/config/neutron/subnets/subnet-1"


async def port_create(store: Store, guards: list[Compare], seq: int) -> float:
    port_id = uuid.uuid4().hex
    ip = f"10.{seq >> 16 & 255}.{seq >> 8 & 255}.{seq & 255}"
    mac = f"fa:16:3e:{seq >> 16 & 255:02x}:{seq >> 8 & 255:02x}:{seq & 255:02x}"
    ip_key = f"/config/neutron/ipam/subnet-1/{ip}"
    body = (
        b'{"id": "%s", "network_id": "net-1", "mac_address": "%s", '
        b'"fixed_ips": [{"subnet_id": "subnet-1", "ip_address": "%s"}], '
        b'"admin_state_up": true, "device_owner": "compute:nova", "binding:host_id": "host-1"}'
        % (port_id.encode(), mac.encode(), ip.encode())
    )
    started = time.perf_counter()
    result = await store.txn(
        [*guards, key_absent(ip_key)],
        [
            Put(f"/config/neutron/ports/{port_id}", body),
            Put(ip_key, port_id.encode()),
            Put(f"/config/neutron/macs/{mac}", port_id.encode()),
            Put(f"/config/neutron/networks-ports/net-1/{port_id}", b""),
        ],
    )
    elapsed = time.perf_counter() - started
    if not result.succeeded:
        raise AssertionError("a port create lost its guard; the benchmark is wrong")
    return elapsed


async def run(
    store: Store, clients: int, creates: int, first_seq: int
) -> tuple[float, list[float]]:
    network = await store.get(NETWORK)
    subnet = await store.get(SUBNET)
    assert network is not None and subnet is not None
    guards = [key_unchanged(network), key_unchanged(subnet)]
    latencies: list[float] = []
    per_client = creates // clients

    async def client(index: int) -> None:
        for n in range(per_client):
            seq = first_seq + index * per_client + n
            latencies.append(await port_create(store, guards, seq))

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return time.perf_counter() - started, latencies


def report(label: str, wall: float, latencies: list[float], with_target: bool) -> None:
    rate = len(latencies) / wall
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    target = (
        f"   target >= {TARGET_RATE:.0f}/s, p99 <= {TARGET_P99_MS:.0f} ms"
        f"  [{'OK' if rate >= TARGET_RATE and p99 <= TARGET_P99_MS else 'MISSED'}]"
        if with_target
        else ""
    )
    print(f"{label:<10} {rate:8.0f} creates/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms{target}")


async def bench(url: str, creates: int) -> None:
    store = await open_store(url)
    try:
        await store.put(NETWORK, b'{"id": "net-1"}')
        await store.put(SUBNET, b'{"id": "subnet-1", "cidr": "10.0.0.0/8"}')
        await run(store, 8, 400, 1 << 22)  # warm up
        print(f"store: {url}   {creates} port creates per run (3 compares, 4 puts)")
        wall, latencies = await run(store, 1, creates, 0)
        report("1 client", wall, latencies, with_target=False)
        wall, latencies = await run(store, 8, creates, creates)
        report("8 clients", wall, latencies, with_target=True)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=2000, help="creates per run")
    parser.add_argument("--dir", type=Path, default=None, help="where the store file goes")
    parser.add_argument("--url", default=None, help="a store URL instead of a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="kumonet-store-bench-") as tmp:
        url = args.url or f"sqlite:///{os.path.abspath(tmp)}/store.db"
        asyncio.run(bench(url, args.creates))


if __name__ == "__main__":
    main()
