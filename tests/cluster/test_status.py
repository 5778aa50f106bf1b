"""Cluster status from real stores: a 3-member etcd cluster (all healthy,
one member dead, majority lost), SQLite, and shards on two clusters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kumonet.cluster.shards import ShardedStore, ShardMap, ShardSpec
from kumonet.cluster.status import ClusterStatus, collect_status, format_table
from kumonet.store.etcd import EtcdStore
from kumonet.store.sqlite import SqliteStore
from tests.cluster.etcd_cluster import EtcdCluster, running_cluster

REPLICAS = ("member-1", "member-2", "member-3")


@pytest.fixture
def cluster() -> Iterator[EtcdCluster]:
    with running_cluster(3, prefix="kumonet-status-") as running:
        yield running


@pytest.fixture
async def store(cluster: EtcdCluster) -> AsyncIterator[EtcdStore]:
    opened = await EtcdStore.open(cluster.url + "?timeout=1")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.mark.etcd
async def test_every_shard_reports_one_leader_and_its_followers(
    cluster: EtcdCluster, store: EtcdStore
) -> None:
    await store.put("/config/neutron/networks/n1", b"{}")
    status = await collect_status(store)
    assert [s.name for s in status.shards] == ["default", "topology", "inventory", "neutron"]
    leader = cluster.leader()
    for shard in status.shards:
        assert [r.member for r in shard.replicas] == list(REPLICAS)
        assert shard.leader == f"{leader}-shard-{shard.name}-config"
        assert shard.has_majority
        states = {r.member: r.raft_state for r in shard.replicas}
        assert states == {m: "Leader" if m == leader else "Follower" for m in REPLICAS}
        for replica in shard.replicas:
            assert replica.leader == shard.leader
            assert replica.current_term is not None and replica.current_term >= 2
            assert replica.commit_index is not None and replica.last_applied is not None
            assert replica.healthy
            assert [name for name, _ in replica.peer_addresses] == [
                f"{m}-shard-{shard.name}-config" for m in REPLICAS if m != replica.member
            ]
    assert ClusterStatus.from_json(status.as_json()) == status


@pytest.mark.etcd
async def test_a_dead_replica_is_unreachable(cluster: EtcdCluster, store: EtcdStore) -> None:
    victim = next(m for m in REPLICAS if m != cluster.leader())
    cluster.kill(victim)
    shard = (await collect_status(store)).shard("default")
    dead = next(r for r in shard.replicas if r.member == victim)
    assert (dead.raft_state, dead.healthy, dead.leader) == ("unreachable", False, None)
    assert dead.errors
    assert shard.has_majority  # two of three still follow one leader
    table = format_table(await collect_status(store))
    assert "unreachable" in table and "Leader" in table


@pytest.mark.etcd
async def test_without_a_majority_no_shard_has_a_leader(
    cluster: EtcdCluster, store: EtcdStore
) -> None:
    cluster.kill("member-1")
    cluster.kill("member-2")
    # The survivor notices the lost leader after an election timeout; until
    # then it may still name the old one. Ask until it does (bounded).
    async with asyncio.timeout(30):
        while True:
            shard = (await collect_status(store)).shard("default")
            survivor = shard.replicas[2]
            if survivor.raft_state in ("Candidate", "Follower") and survivor.leader is None:
                break
            await asyncio.sleep(0.2)
    assert not shard.has_majority
    assert [r.raft_state for r in shard.replicas[:2]] == ["unreachable", "unreachable"]


async def test_the_embedded_store_is_one_leader(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "store.db")
    try:
        status = await collect_status(store)
    finally:
        await store.close()
    for shard in status.shards:
        (replica,) = shard.replicas
        assert replica.raft_state == "Leader"
        assert replica.shard_name == f"member-1-shard-{shard.name}-config"
        assert shard.has_majority


@pytest.mark.etcd
async def test_shards_on_two_clusters_report_their_own_members() -> None:
    with (
        running_cluster(3, prefix="kumonet-status-a-") as main,
        running_cluster(3, prefix="kumonet-status-b-") as neutron,
    ):
        shard_map = ShardMap.from_specs(
            [
                ShardSpec("default", main.url, REPLICAS),
                ShardSpec("neutron", neutron.url, ("odl-1", "odl-2", "odl-3")),
            ]
        )
        store = await ShardedStore.open(shard_map)
        try:
            status = await collect_status(store)
        finally:
            await store.close()
    assert [r.endpoint for r in status.shard("default").replicas] == main.endpoints
    assert [r.endpoint for r in status.shard("topology").replicas] == main.endpoints
    assert status.shard("topology").inherited
    assert [r.endpoint for r in status.shard("neutron").replicas] == neutron.endpoints
    assert [r.member for r in status.shard("neutron").replicas] == ["odl-1", "odl-2", "odl-3"]
    assert status.shard("neutron").leader is not None
    assert status.shard("neutron").leader.startswith("odl-")  # type: ignore[union-attr]
