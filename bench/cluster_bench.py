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
* ``api creates via N servers``: real ``kumonet-server`` processes on the
  cluster, ``--api-clients`` concurrent clients posting ``/v2.0/ports``
  round robin over 1 and then 3 servers, all on one subnet, then on one
  network per server; creates/s, p50 and p99. Target through 3 servers:
  >= 200 port creates/s. On one subnet the servers race for the same
  lowest free address (each server's address hint knows only its own
  reservations), and the losers re-read the subnet's allocations: that row
  measures the IPAM's cross-server contention.
* ``api leader kill``: 8 clients create ports through the 3 servers (a
  network per server, so that address races do not add to it); the
  etcd leader gets SIGKILL; the window is from the kill to the first 201 of
  a request sent after it (OpenDaylight's shard election: 10 s).

    .venv/bin/python bench/cluster_bench.py [--creates 2000] [--kills 5]
        [--api-creates 2000] [--api-kills 10] [--heartbeat-ms 100] [--election-ms 1000]
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

import aiohttp

from kumonet.store.contract import Put, StoreUnavailable, key_absent, key_unchanged
from kumonet.store.etcd import EtcdStore
from tests.cluster.etcd_cluster import EtcdCluster, running_cluster
from tests.cluster.servers import Client, running_servers

TARGET_CREATES = 200.0
TARGET_WINDOW_MEDIAN = 1.5
TARGET_WINDOW_MAX = 2.5
ODL_SHARD_ELECTION = 10.0
# Writers probing the API during a kill: more probes, a finer window.
KILL_WRITERS = 8
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


def api_network(url: str, cidr: str) -> str:
    client = Client(url)
    net = client.create_network("bench")
    assert net.status == 201, net
    network_id: str = net.body["network"]["id"]
    subnet = client.call("POST", "/v2.0/subnets", {"subnet": {
        "network_id": network_id, "cidr": cidr, "ip_version": 4}})
    assert subnet.status == 201, subnet
    return network_id


async def post_port(session: aiohttp.ClientSession, url: str, network_id: str) -> int:
    async with session.post(f"{url}/v2.0/ports",
                            json={"port": {"network_id": network_id}}) as answer:
        await answer.read()
        return answer.status


async def api_creates(urls: list[str], networks: list[str], total: int, clients: int,
                      label: str = "") -> None:
    """``networks[i]`` is the network ports are created on through ``urls[i]``."""
    counter = iter(range(total))
    latencies: list[float] = []
    failures: dict[int, int] = {}

    async def client(session: aiohttp.ClientSession, first: int) -> None:
        turn = first
        for _ in counter:
            url, network_id = urls[turn % len(urls)], networks[turn % len(urls)]
            turn += 1
            started = time.perf_counter()
            status = await post_port(session, url, network_id)
            if status != 201:
                failures[status] = failures.get(status, 0) + 1
                continue
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=clients * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session, i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    rate = len(latencies) / elapsed
    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2] * 1000
    p99 = ordered[int(len(ordered) * 0.99)] * 1000
    target = f"target >= {TARGET_CREATES:.0f}/s  " + (
        "ok" if rate >= TARGET_CREATES else "BELOW TARGET") if len(urls) == 3 else "(no target)"
    print(
        f"api creates via {len(urls)} server{'s' if len(urls) > 1 else ' '} {clients} clients"
        f"{label}  {rate:7.1f} creates/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms   {target}"
        + (f"  failures {failures}" if failures else "")
    )


async def api_one_kill(cluster: EtcdCluster, urls: list[str], networks: list[str]) -> float:
    killed_at: float | None = None
    recovered: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def writer(session: aiohttp.ClientSession, first: int) -> None:
        turn = first
        while not recovered.done():
            url, network_id = urls[turn % len(urls)], networks[turn % len(urls)]
            turn += 1
            issued = time.perf_counter()
            status = await post_port(session, url, network_id)
            if status != 201:
                await asyncio.sleep(0.02)
                continue
            if killed_at is not None and issued >= killed_at and not recovered.done():
                recovered.set_result(time.perf_counter() - killed_at)

    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(writer(session, i)) for i in range(KILL_WRITERS)]
        await asyncio.sleep(0.3)
        leader = await asyncio.to_thread(cluster.leader)
        await asyncio.to_thread(cluster.kill, leader)
        killed_at = time.perf_counter()
        window = await asyncio.wait_for(recovered, 60)
        await asyncio.gather(*tasks)
    await asyncio.to_thread(cluster.start, leader)
    await asyncio.to_thread(cluster.wait_healthy)
    return window


async def api_leader_kills(cluster: EtcdCluster, urls: list[str], networks: list[str],
                           rounds: int) -> None:
    windows = [await api_one_kill(cluster, urls, networks) for _ in range(rounds)]
    median, worst = statistics.median(windows), max(windows)
    verdict = "ok" if median <= TARGET_WINDOW_MEDIAN and worst <= TARGET_WINDOW_MAX else "MISSED"
    print(
        f"api leader kill x{rounds}    median {median:5.2f} s  max {worst:5.2f} s"
        f"   target median <= {TARGET_WINDOW_MEDIAN} s, max <= {TARGET_WINDOW_MAX} s  {verdict}"
        f"  (ODL shard election {ODL_SHARD_ELECTION:.0f} s)"
    )
    print("  windows: " + " ".join(f"{w:.2f}" for w in windows))


def api_rows(cluster: EtcdCluster, creates_total: int, clients: int, kills: int) -> None:
    with running_servers(cluster.url, 3, prefix="kumonet-bench-srv-") as servers:
        network_id = api_network(servers.urls[0], "10.128.0.0/12")
        # One network per server: the failover, not the servers' address
        # races on one subnet (the "one subnet" row), makes the window.
        own = [network_id, *(api_network(servers.urls[0], f"10.{144 + i * 16}.0.0/12")
                             for i in range(2))]
        if creates_total:
            api_create_rows(servers.urls, network_id, own, creates_total, clients)
        if kills:
            asyncio.run(api_leader_kills(cluster, servers.urls, own, kills))


def api_create_rows(urls: list[str], network_id: str, own: list[str], creates_total: int,
                    clients: int) -> None:
    asyncio.run(api_creates(urls[:1], [network_id], creates_total, clients))
    asyncio.run(api_creates(urls, [network_id] * 3, creates_total, clients, " one subnet"))
    # The same load with one network per server: the servers' lowest-free
    # address choice no longer races across servers (see the docstring).
    asyncio.run(api_creates(urls, own, creates_total, clients, " subnet/server"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--creates", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--api-creates", type=int, default=2000)
    parser.add_argument("--api-clients", type=int, default=16)
    parser.add_argument("--api-kills", type=int, default=10)
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
        if args.creates:
            asyncio.run(creates(cluster, args.creates, args.clients))
        if args.kills:
            asyncio.run(leader_kills(cluster, args.kills))
        if args.api_creates or args.api_kills:
            api_rows(cluster, args.api_creates, args.api_clients, args.api_kills)


if __name__ == "__main__":
    main()
