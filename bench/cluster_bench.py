"""Cluster benchmark: the etcd store under port-create-shaped load, and the
write-unavailability window when the etcd leader is killed.

Starts its own 3-member etcd cluster on loopback (data on tmpfs), with
etcd's default timing (heartbeat 100 ms, election 1000 ms) unless told
otherwise, and stops it at the end. Rows:

* ``creates 8 clients``: port-create transactions (read network and subnet,
  then one txn: 3 guards, 4 puts) from 8 concurrent clients through one
  EtcdStore; creates/s and latency percentiles. Target (issue 4, through 3
  API servers): >= 200 port creates/s; this is the store's share of it.
* ``leader kill``: a writer puts back to back; the leader gets SIGKILL; the
  window is from the kill to the first write acknowledged after it. Each
  round restarts the killed member and waits for health. Targets: median
  <= 1.5 s, max <= 2.5 s.

    .venv/bin/python bench/cluster_bench.py [--creates 2000] [--kills 5]
        [--heartbeat-ms 100] [--election-ms 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kumonet.store.contract import Put, StoreUnavailable, key_absent, key_unchanged
from kumonet.store.etcd import EtcdStore
from tests.cluster.etcd_cluster import EtcdCluster, running_cluster

TARGET_CREATES = 200.0
TARGET_WINDOW_MEDIAN = 1.5
TARGET_WINDOW_MAX = 2.5
NETWORK = "/config/neutron/networks/net-1"
SUBNET = "/config/neutron/subnets/subnet-1"


async def port_create(store: EtcdStore, seq: int) -> float:
    started = time.perf_counter()
    network = await store.get(NETWORK)
    subnet = await store.get(SUBNET)
    assert network is not None and subnet is not None
    port_id = uuid.uuid4().hex
    ip = f"10.{seq >> 16 & 255}.{seq >> 8 & 255}.{seq & 255}"
    ip_key = f"/config/neutron/ipam/subnet-1/{ip}"
    mac_key = (
        f"/config/neutron/macs/fa:16:3e:{seq >> 16 & 255:02x}:{seq >> 8 & 255:02x}:{seq & 255:02x}"
    )
    body = b'{"id": "%s", "network_id": "net-1", "fixed_ips": [{"ip_address": "%s"}]}' % (
        port_id.encode(),
        ip.encode(),
    )
    result = await store.txn(
        [key_unchanged(network), key_unchanged(subnet), key_absent(ip_key)],
        [
            Put(f"/config/neutron/ports/{port_id}", body),
            Put(ip_key, port_id.encode()),
            Put(mac_key, port_id.encode()),
            Put(f"/config/neutron/index/net-1/ports/{port_id}", b""),
        ],
    )
    assert result.succeeded
    return time.perf_counter() - started


async def creates(cluster: EtcdCluster, total: int, clients: int) -> None:
    store = await EtcdStore.open(cluster.url)
    try:
        await store.put(NETWORK, b'{"id": "net-1"}')
        await store.put(SUBNET, b'{"id": "subnet-1"}')
        counter = iter(range(total))
        latencies: list[float] = []

        async def client() -> None:
            for seq in counter:
                latencies.append(await port_create(store, seq))

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    rate = total / elapsed
    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2] * 1000
    p99 = ordered[int(len(ordered) * 0.99)] * 1000
    verdict = "ok" if rate >= TARGET_CREATES else "BELOW TARGET"
    print(
        f"creates {clients} clients  {rate:8.1f} creates/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
        f"   target >= {TARGET_CREATES:.0f}/s  {verdict}"
    )


async def one_kill(cluster: EtcdCluster, store: EtcdStore, round_: int) -> float:
    """Seconds from killing the leader to the first acknowledged write that
    was issued after the kill (an earlier write may have committed before)."""
    killed_at: float | None = None
    recovered = asyncio.get_running_loop().create_future()

    async def writer() -> None:
        seq = 0
        while not recovered.done():
            seq += 1
            issued = time.perf_counter()
            try:
                await store.put(f"/bench/kill/{round_}", str(seq).encode())
            except StoreUnavailable:
                continue
            if killed_at is not None and issued >= killed_at:
                recovered.set_result(time.perf_counter() - killed_at)

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.3)  # the writer is in full swing
    leader = cluster.leader()
    # SIGKILL right here (kill() waits for the process, a few ms at most).
    cluster.kill(leader)
    killed_at = time.perf_counter()
    window: float = await asyncio.wait_for(recovered, 60)
    await task
    await asyncio.to_thread(cluster.start, leader)
    await asyncio.to_thread(cluster.wait_healthy)
    return window


async def leader_kills(cluster: EtcdCluster, rounds: int) -> None:
    store = await EtcdStore.open(cluster.url)
    try:
        windows = [await one_kill(cluster, store, r) for r in range(rounds)]
    finally:
        await store.close()
    median, worst = statistics.median(windows), max(windows)
    verdict = "ok" if median <= TARGET_WINDOW_MEDIAN and worst <= TARGET_WINDOW_MAX else "MISSED"
    print(
        f"leader kill x{rounds}        median {median:5.2f} s  max {worst:5.2f} s"
        f"   target median <= {TARGET_WINDOW_MEDIAN} s, max <= {TARGET_WINDOW_MAX} s  {verdict}"
    )
    print("  windows: " + " ".join(f"{w:.2f}" for w in windows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--heartbeat-ms", type=int, default=100)
    parser.add_argument("--election-ms", type=int, default=1000)
    args = parser.parse_args()
    with running_cluster(
        3, prefix="kumonet-bench-", heartbeat_ms=args.heartbeat_ms, election_ms=args.election_ms
    ) as cluster:
        print(
            f"etcd 3 members on loopback (tmpfs), heartbeat {args.heartbeat_ms} ms,"
            f" election {args.election_ms} ms"
        )
        asyncio.run(creates(cluster, args.creates, args.clients))
        if args.kills:
            asyncio.run(leader_kills(cluster, args.kills))


if __name__ == "__main__":
    main()
