"""Shards: the shards file, prefix routing, and a sharded store over two real
etcd clusters (neutron on one, everything else on the other)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kumonet.cluster.shards import ShardedStore, ShardMap, ShardSpec, shards_of_prefix
from kumonet.store.contract import (
    Compare,
    DeletePrefix,
    LeaseNotFound,
    Put,
    Store,
    StoreError,
    key_absent,
)
from kumonet.store.etcd import EtcdStore
from kumonet.store.trees import Tree, key, prefix
from tests.cluster.etcd_cluster import EtcdCluster, running_cluster

HANG_GUARD = 20.0  # seconds; a guard against hanging, never an expectation


def test_the_default_maps_every_shard_to_one_store() -> None:
    shard_map = ShardMap.single("etcd://a:1,b:2,c:3")
    assert [s.name for s in shard_map.shards] == ["default", "topology", "inventory", "neutron"]
    assert {s.url for s in shard_map.shards} == {"etcd://a:1,b:2,c:3"}
    assert shard_map.spec("neutron").replicas == ("member-1", "member-2", "member-3")
    assert shard_map.spec("neutron").inherited
    assert shard_map.urls == ("etcd://a:1,b:2,c:3",)


def test_a_shards_file_maps_subtrees_to_stores() -> None:
    shard_map = ShardMap.parse(
        """
        [shard default]
        store = etcd://a:1,b:2,c:3
        replicas = odl-1, odl-2, odl-3

        [shard neutron]
        store = etcd://x:1,y:2,z:3
        """
    )
    assert shard_map.spec("default") == ShardSpec(
        "default", "etcd://a:1,b:2,c:3", ("odl-1", "odl-2", "odl-3")
    )
    assert shard_map.spec("topology").url == "etcd://a:1,b:2,c:3"
    assert shard_map.spec("neutron") == ShardSpec(
        "neutron", "etcd://x:1,y:2,z:3", ("member-1", "member-2", "member-3")
    )
    assert shard_map.urls == ("etcd://a:1,b:2,c:3", "etcd://x:1,y:2,z:3")


def test_the_shipped_shards_file_parses() -> None:
    shard_map = ShardMap.load(Path(__file__).parents[2] / "etc" / "shards.conf")
    assert shard_map.spec("default").url.startswith("etcd://")


@pytest.mark.parametrize(
    "text",
    [
        "[shard neutron]\nstore = etcd://a:1\n",  # no default
        "[shard default]\nstore = etcd://a:1\n[shard toaster]\nstore = etcd://b:1\n",
        "[shard default]\n",
        "[default]\nstore = etcd://a:1\n",
        "[shard default]\nstore = etcd://a:1\nreplicas = m1, m2\n",
        "[shard default]\nstore = etcd://a:1\nweight = 3\n",
        "not ini at all",
    ],
)
def test_bad_shards_files_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        ShardMap.parse(text)


@pytest.mark.parametrize(
    ("prefix_", "shards"),
    [
        ("/config/neutron/networks/", {"neutron"}),
        ("/operational/topology/", {"topology"}),
        ("/config/default/x", {"default"}),
        ("/elsewhere/", {"default"}),
        ("/config/neutron", {"neutron", "default"}),
        ("/config/", {"default", "topology", "inventory", "neutron"}),
        ("", {"default", "topology", "inventory", "neutron"}),
    ],
)
def test_the_shards_a_prefix_reaches(prefix_: str, shards: set[str]) -> None:
    assert shards_of_prefix(prefix_) == shards


@pytest.fixture(scope="module")
def two_clusters() -> Iterator[tuple[EtcdCluster, EtcdCluster]]:
    with (
        running_cluster(3, prefix="kumonet-shard-a-") as first,
        running_cluster(3, prefix="kumonet-shard-b-") as second,
    ):
        yield first, second


@pytest.fixture
async def sharded(
    two_clusters: tuple[EtcdCluster, EtcdCluster],
) -> AsyncIterator[ShardedStore]:
    main, neutron = two_clusters
    shard_map = ShardMap.from_specs(
        [
            ShardSpec("default", main.url, ("member-1", "member-2", "member-3")),
            ShardSpec("neutron", neutron.url, ("member-1", "member-2", "member-3")),
        ]
    )
    store = await ShardedStore.open(shard_map)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def direct(
    two_clusters: tuple[EtcdCluster, EtcdCluster],
) -> AsyncIterator[tuple[EtcdStore, EtcdStore]]:
    """Each cluster opened on its own, to see where keys really went."""
    main = await EtcdStore.open(two_clusters[0].url)
    neutron = await EtcdStore.open(two_clusters[1].url)
    try:
        yield main, neutron
    finally:
        await main.close()
        await neutron.close()


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.mark.etcd
async def test_keys_land_on_their_shards_cluster(
    sharded: ShardedStore, direct: tuple[EtcdStore, EtcdStore], tag: str
) -> None:
    assert isinstance(sharded, Store)
    main, neutron = direct
    network = key(Tree.CONFIG, "neutron", "networks", tag)
    host = key(Tree.OPERATIONAL, "topology", "hosts", tag)
    await sharded.put(network, b"net")
    await sharded.put(host, b"host")
    assert (await neutron.get(network)) is not None and (await main.get(network)) is None
    assert (await main.get(host)) is not None and (await neutron.get(host)) is None
    got = await sharded.get(network)
    assert got is not None and got.value == b"net"


@pytest.mark.etcd
async def test_range_and_watch_of_a_shard_use_its_revisions(
    sharded: ShardedStore, direct: tuple[EtcdStore, EtcdStore], tag: str
) -> None:
    _, neutron = direct
    networks = prefix(Tree.CONFIG, "neutron", "networks", tag)
    await sharded.put(networks + "a", b"1")
    listed = await sharded.range(networks)
    assert [kv.key for kv in listed.kvs] == [networks + "a"]
    assert listed.revision == await neutron.revision() == await sharded.revision_of("neutron")
    events = sharded.watch(networks, listed.revision + 1)
    try:
        # A write to another shard must not show up, nor shift revisions.
        await sharded.put(key(Tree.CONFIG, "topology", "links", tag), b"")
        revision = await sharded.put(networks + "b", b"2")
        async with asyncio.timeout(HANG_GUARD):
            event = await anext(events)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    assert (event.kv.key, event.kv.mod_revision) == (networks + "b", revision)
    assert revision == listed.revision + 1


@pytest.mark.etcd
async def test_a_prefix_spanning_stores_is_refused(sharded: ShardedStore) -> None:
    with pytest.raises(StoreError):
        await sharded.range("/config/")
    with pytest.raises(StoreError):
        sharded.watch("/", 1)
    # Topology and inventory share the default store: spanning them is fine.
    await sharded.range("/operational/topology/")


@pytest.mark.etcd
async def test_a_txn_stays_within_one_store(
    sharded: ShardedStore, direct: tuple[EtcdStore, EtcdStore], tag: str
) -> None:
    network = key(Tree.CONFIG, "neutron", "networks", tag)
    host = key(Tree.OPERATIONAL, "topology", "hosts", tag)
    inventory = key(Tree.CONFIG, "inventory", "nodes", tag)
    with pytest.raises(StoreError):
        await sharded.txn([key_absent(network)], [Put(host, b"")])
    with pytest.raises(StoreError):
        await sharded.txn([], [Put(host, b""), DeletePrefix("/config/neutron/")])
    assert await sharded.get(host) is None
    # Two shards on one store: one txn, one revision.
    result = await sharded.txn(
        [Compare(host, "version", "==", 0)], [Put(host, b"h"), Put(inventory, b"i")]
    )
    assert result.succeeded
    main, _ = direct
    both = [await main.get(host), await main.get(inventory)]
    assert all(kv is not None and kv.mod_revision == result.revision for kv in both)


@pytest.mark.etcd
async def test_one_lease_covers_keys_in_every_shard(sharded: ShardedStore, tag: str) -> None:
    lease = await sharded.grant_lease(30)
    host = key(Tree.OPERATIONAL, "topology", "hosts", tag)
    agent = key(Tree.OPERATIONAL, "neutron", "agents", tag)
    await sharded.put(host, b"", lease=lease.id)
    await sharded.put(agent, b"", lease=lease.id)
    assert await sharded.keepalive_lease(lease.id) >= 30
    await sharded.revoke_lease(lease.id)
    assert await sharded.get(host) is None and await sharded.get(agent) is None
    with pytest.raises(LeaseNotFound):
        await sharded.keepalive_lease(lease.id)
    with pytest.raises(LeaseNotFound):
        await sharded.revoke_lease(lease.id)
