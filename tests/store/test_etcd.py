"""The etcd backend beyond the shared contract: URLs, failover between
members, unavailability without quorum, watches that survive a member, and
per-member status. Each test that kills members gets its own cluster."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from kumonet.store.contract import Put, StoreUnavailable, WatchEvent, key_absent
from kumonet.store.etcd import DEFAULT_TIMEOUT, EtcdOptions, EtcdStore, parse_url, prefix_end
from tests.cluster.etcd_cluster import EtcdCluster, free_port, running_cluster

HANG_GUARD = 30.0  # seconds; a guard against hanging, never an expectation


def test_urls_name_endpoints_and_a_timeout() -> None:
    assert parse_url("etcd://127.0.0.1:2379") == EtcdOptions(
        ("127.0.0.1:2379",), DEFAULT_TIMEOUT, 0.5
    )
    assert parse_url("etcd://a:1,b:2,c:3?timeout=3&attempt_timeout=1") == EtcdOptions(
        ("a:1", "b:2", "c:3"), 3.0, 1.0
    )


@pytest.mark.parametrize(
    "url",
    ["etcd://", "etcd://host", "etcd://a:1?retries=3", "etcd://a:1?timeout=0", "sqlite:///x"],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)


def test_prefix_end() -> None:
    assert prefix_end(b"/a/") == b"/a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"") == b"\x00"
    assert prefix_end(b"\xff\xff") == b"\x00"


@pytest.fixture
def cluster() -> Iterator[EtcdCluster]:
    with running_cluster(3, prefix="kumonet-etcd-test-") as running:
        yield running


@pytest.fixture
async def store(cluster: EtcdCluster) -> AsyncIterator[EtcdStore]:
    opened = await EtcdStore.open(cluster.url)
    try:
        yield opened
    finally:
        await opened.close()


async def put_until_it_lands(store: EtcdStore, key: str, value: bytes) -> int:
    """Writes during an election may fail; a caller retries (the value is the
    same, so a write that landed twice is harmless here)."""
    async with asyncio.timeout(HANG_GUARD):
        while True:
            try:
                return await store.put(key, value)
            except StoreUnavailable:
                await asyncio.sleep(0.1)


@pytest.mark.etcd
async def test_members_report_names_terms_and_indexes(store: EtcdStore) -> None:
    await store.put("/k", b"v")
    members = await store.members()
    assert [m.name for m in members] == ["member-1", "member-2", "member-3"]
    assert [m.endpoint for m in members] == list(store.endpoints)
    (leader,) = [m for m in members if m.raft_state == "Leader"]
    assert {m.raft_state for m in members} == {"Leader", "Follower"}
    assert all(m.leader == leader.name for m in members)
    assert all(m.healthy for m in members)
    for member in members:
        assert member.raft_term is not None and member.raft_term >= 2
        assert member.commit_index is not None and member.applied_index is not None
        assert member.commit_index >= member.applied_index > 0
        assert member.db_size is not None and member.db_size > 0


@pytest.mark.etcd
async def test_a_dead_member_is_unreachable_and_the_rest_serve(
    cluster: EtcdCluster, store: EtcdStore
) -> None:
    victim = next(name for name in ("member-1", "member-2") if name != cluster.leader())
    cluster.kill(victim)
    # The store's first endpoint may be the dead one: failover is the point.
    revision = await store.put("/k", b"v")
    kv = await store.get("/k")
    assert kv is not None and kv.mod_revision == revision
    states = {m.name: m for m in await store.members()}
    assert states[victim].raft_state == "unreachable"
    assert not states[victim].healthy
    assert [m.raft_state for m in states.values()].count("Leader") == 1


@pytest.mark.etcd
async def test_killing_the_leader_is_survived(cluster: EtcdCluster, store: EtcdStore) -> None:
    await store.put("/before", b"1")
    old_leader = cluster.leader()
    cluster.kill(old_leader)
    revision = await put_until_it_lands(store, "/after", b"2")
    assert (await store.range("/")).revision >= revision
    assert [kv.key for kv in (await store.range("/")).kvs] == ["/after", "/before"]
    assert cluster.leader() != old_leader


@pytest.mark.etcd
async def test_without_a_majority_calls_fail_cleanly_and_service_returns(
    cluster: EtcdCluster, store: EtcdStore
) -> None:
    await store.put("/k", b"1")
    cluster.kill("member-1")
    cluster.kill("member-2")
    async with asyncio.timeout(HANG_GUARD):
        with pytest.raises(StoreUnavailable):
            await store.put("/k", b"2")
        with pytest.raises(StoreUnavailable):
            await store.get("/k")  # linearizable: no quorum, no answer
        with pytest.raises(StoreUnavailable):
            await store.revision()
    states = {m.name: m.raft_state for m in await store.members()}
    assert states["member-1"] == states["member-2"] == "unreachable"
    assert states["member-3"] in ("Candidate", "Follower", "Leader")
    cluster.start("member-1")
    cluster.start("member-2")
    cluster.wait_healthy()
    await put_until_it_lands(store, "/k", b"3")
    kv = await store.get("/k")
    assert kv is not None and kv.value == b"3"


async def test_no_reachable_member_is_a_determinate_failure() -> None:
    store = await EtcdStore.open(f"etcd://127.0.0.1:{free_port()}?timeout=0.5")
    try:
        async with asyncio.timeout(HANG_GUARD):
            with pytest.raises(StoreUnavailable) as raised:
                await store.put("/k", b"v")
        # Nothing was sent: the caller knows the write did not happen.
        assert raised.value.indeterminate is False
        members = await store.members()
        assert [m.raft_state for m in members] == ["unreachable"]
    finally:
        await store.close()


@pytest.mark.etcd
async def test_a_watch_survives_the_member_it_streams_from(
    cluster: EtcdCluster, store: EtcdStore
) -> None:
    r0 = await store.revision()
    events = store.watch("/w/", r0 + 1)
    got: list[WatchEvent] = []
    try:
        await store.put("/w/1", b"")
        async with asyncio.timeout(HANG_GUARD):
            got.append(await anext(events))
        # The store streams from its current endpoint; kill exactly that one.
        streaming = store.endpoints.index(store.endpoints[store._current])
        cluster.kill(cluster.members[streaming].name)
        for i in range(2, 6):
            await put_until_it_lands(store, f"/w/{i}", b"")
        async with asyncio.timeout(HANG_GUARD):
            while got[-1].kv.key != "/w/5":
                got.append(await anext(events))
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    assert {e.kv.key for e in got} == {f"/w/{i}" for i in range(1, 6)}
    # Nothing missed, nothing repeated: the live stream equals the history.
    replay = store.watch("/w/", r0 + 1)
    try:
        async with asyncio.timeout(HANG_GUARD):
            replayed = [await anext(replay) for _ in got]
    finally:
        await replay.aclose()  # type: ignore[attr-defined]
    assert got == replayed


@pytest.mark.etcd
async def test_guarded_allocations_stay_unique_across_a_leader_kill(
    cluster: EtcdCluster, store: EtcdStore
) -> None:
    """The caller's side of the contract: a write that failed indeterminate
    is re-read before it is retried, so a leader kill mid-run leaves one
    owner per slot and every allocator knows exactly what it owns."""
    slots = [f"/ip/10.0.0.{i}" for i in range(40)]
    owned: dict[str, set[str]] = {}
    midway = asyncio.Event()

    async def allocate(name: str) -> None:
        owned[name] = set()
        for slot in slots:
            while True:
                try:
                    result = await store.txn([key_absent(slot)], [Put(slot, name.encode())])
                except StoreUnavailable:
                    # Applied or not: ask the store (again, until it answers).
                    await asyncio.sleep(0.05)
                    try:
                        kv = await store.get(slot)
                    except StoreUnavailable:
                        continue
                    if kv is None:
                        continue  # not applied: try again
                    if kv.value == name.encode():
                        owned[name].add(slot)
                    break
                if result.succeeded:
                    owned[name].add(slot)
                break
            if len(owned[name]) >= 5:
                midway.set()

    allocators = [asyncio.create_task(allocate(f"port-{n}")) for n in range(4)]
    async with asyncio.timeout(HANG_GUARD):
        await midway.wait()
        cluster.kill(cluster.leader())
        await asyncio.gather(*allocators)
    stored = {kv.key: kv.value.decode() for kv in (await store.range("/ip/")).kvs}
    assert set(stored) == set(slots)
    believed = {slot: name for name, mine in owned.items() for slot in mine}
    assert sum(len(mine) for mine in owned.values()) == len(slots)  # nobody owns twice
    assert believed == stored


@pytest.mark.etcd
async def test_a_restarted_member_catches_up(cluster: EtcdCluster, store: EtcdStore) -> None:
    victim = next(m.name for m in cluster.members if m.name != cluster.leader())
    cluster.stop(victim)
    revision = 0
    for i in range(20):
        revision = await store.put(f"/net/{i}", b"written while it was down")
    cluster.start(victim)
    cluster.wait_healthy()
    # Ask the restarted member alone, from its own copy (serializable).
    alone = await EtcdStore.open("etcd://" + cluster.member(victim).endpoint)
    try:
        async with asyncio.timeout(HANG_GUARD):
            while True:
                with contextlib.suppress(StoreUnavailable):  # still starting
                    caught_up = await alone.stale_range("/net/")
                    if caught_up.revision >= revision:
                        break
                await asyncio.sleep(0.05)
    finally:
        await alone.close()
    assert len(caught_up.kvs) == 20
    (status,) = [m for m in await store.members() if m.name == victim]
    assert status.raft_state == "Follower" and status.healthy


@pytest.mark.etcd
async def test_a_hung_follower_neither_slows_nor_breaks_calls(
    cluster: EtcdCluster, store: EtcdStore
) -> None:
    victim = next(m.name for m in cluster.members if m.name != cluster.leader())
    cluster.freeze(victim)
    try:
        async with asyncio.timeout(HANG_GUARD):
            revision = await store.put("/k", b"v")
            kv = await store.get("/k")
            states = {m.name: m.raft_state for m in await store.members()}
    finally:
        cluster.thaw(victim)
    assert kv is not None and kv.mod_revision == revision
    assert states[victim] == "unreachable"


@pytest.mark.etcd
async def test_a_hung_leader_is_left_behind(cluster: EtcdCluster, store: EtcdStore) -> None:
    await store.put("/k", b"before")
    leader = cluster.leader()
    cluster.freeze(leader)
    try:
        # Writes to the hung leader time out (indeterminate) until the others
        # elect a new one; then they land there.
        await put_until_it_lands(store, "/k", b"after")
        async with asyncio.timeout(HANG_GUARD):
            kv = await store.get("/k")
    finally:
        cluster.thaw(leader)
    assert kv is not None and kv.value == b"after"
