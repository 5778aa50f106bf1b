"""The change feed on a real (in-memory SQLite) store: buffer bounds,
batches that never split a transaction, waiters answered on close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from kumonet.api.change_feed import Batch, ChangeFeed, ChangeFeeds, FeedGone
from kumonet.store.contract import Put, Store
from kumonet.store.url import open_store

PREFIX = "/config/neutron/"


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    opened = await open_store("sqlite:///:memory:")
    try:
        yield opened
    finally:
        await opened.close()


def _events(batch: Batch) -> list[dict[str, object]]:
    return [orjson.loads(e) for e in batch.events]


async def test_batch_never_splits_a_transaction(store: Store) -> None:
    feed = ChangeFeed(store, PREFIX)
    await feed.start()
    start = await store.revision() + 1
    await store.txn([], [Put(f"{PREFIX}a/{i}", b"{}") for i in range(3)])
    await store.put(f"{PREFIX}b", b'{"x": 1}')
    batch = await feed.changes(start, wait_seconds=5, limit=1)
    assert [e["key"] for e in _events(batch)] == [f"{PREFIX}a/{i}" for i in range(3)]
    batch = await feed.changes(batch.revision + 1, wait_seconds=5, limit=1)
    assert _events(batch) == [{"type": "put", "key": f"{PREFIX}b",
                               "mod_revision": start + 1, "value": {"x": 1}}]
    empty = await feed.changes(batch.revision + 1, wait_seconds=0)
    assert empty == Batch(batch.revision, ())
    await feed.close()


async def test_trimmed_buffer_answers_gone_below_its_floor(store: Store) -> None:
    feed = ChangeFeed(store, PREFIX, buffer_events=2)
    await feed.start()
    start = await store.revision() + 1
    for i in range(6):
        await store.put(f"{PREFIX}k{i}", b"{}")
    # Read to the end so that every write has reached the buffer.
    last = await feed.changes(start + 5, wait_seconds=5)
    assert [e["key"] for e in _events(last)] == [f"{PREFIX}k5"]
    assert feed.floor > start
    with pytest.raises(FeedGone) as gone:
        await feed.changes(start, wait_seconds=0)
    assert gone.value.floor == feed.floor
    kept = await feed.changes(feed.floor, wait_seconds=0)
    assert _events(kept)[-1]["key"] == f"{PREFIX}k5"
    await feed.close()


async def test_deletes_and_plain_values(store: Store) -> None:
    feed = ChangeFeed(store, PREFIX, shown=lambda key: "/hidden/" not in key)
    await feed.start()
    start = await store.revision() + 1
    await store.put(f"{PREFIX}hidden/x", b"{}")
    await store.put(f"{PREFIX}ids/x", b"port-1")
    await store.delete(f"{PREFIX}ids/x")
    batch = await feed.changes(start, wait_seconds=5)
    events = _events(batch)
    while len(events) < 2:
        batch = await feed.changes(batch.revision + 1, wait_seconds=5)
        events += _events(batch)
    assert [(e["type"], e["value"]) for e in events] == [("put", "port-1"), ("delete", None)]
    await feed.close()


async def test_a_new_feed_replays_recent_history(store: Store) -> None:
    for i in range(4):
        await store.put(f"{PREFIX}k{i}", b"{}")
    head = await store.revision()
    feed = ChangeFeed(store, PREFIX, backfill=2)
    # Revisions head-1 and head are replayed; older ones are gone.
    batch = await feed.changes(head - 1, wait_seconds=5)
    assert [e["key"] for e in _events(batch)] == [f"{PREFIX}k2", f"{PREFIX}k3"]
    with pytest.raises(FeedGone):
        await feed.changes(head - 2, wait_seconds=0)
    await feed.close()


async def test_a_feed_starts_at_the_compacted_revision(store: Store) -> None:
    for i in range(4):
        await store.put(f"{PREFIX}k{i}", b"{}")
    head = await store.revision()
    await store.compact(head - 1)
    feed = ChangeFeed(store, PREFIX)
    batch = await feed.changes(head - 1, wait_seconds=5)
    assert [e["key"] for e in _events(batch)] == [f"{PREFIX}k2", f"{PREFIX}k3"]
    with pytest.raises(FeedGone) as gone:
        await feed.changes(1, wait_seconds=0)
    assert gone.value.floor == head - 1
    await feed.close()


async def test_snapshot_from_memory_matches_the_store(store: Store) -> None:
    await store.put(f"{PREFIX}a", b'{"v": 0}')
    await store.put(f"{PREFIX}gone", b"{}")
    feed = ChangeFeed(store, PREFIX, shown=lambda key: "/hidden/" not in key)
    await feed.start()
    await store.txn([], [Put(f"{PREFIX}a", b'{"v": 1}'), Put(f"{PREFIX}b/1", b"[1]"),
                         Put(f"{PREFIX}hidden/x", b"{}")])
    await store.delete(f"{PREFIX}gone")
    await store.put("/config/topology/other", b"{}")
    head = await store.revision()
    # Follow the feed to the store's last change under the prefix.
    since = 1
    while feed.view_revision < head - 1:
        since = (await feed.changes(since, wait_seconds=5)).revision + 1
    snap = feed.snapshot(PREFIX)
    items = [orjson.loads(i) for i in snap.items]
    expected = [kv for kv in (await store.range(PREFIX)).kvs if "/hidden/" not in kv.key]
    assert [(i["key"], i["mod_revision"], i["value"]) for i in items] == [
        (kv.key, kv.mod_revision, orjson.loads(kv.value)) for kv in expected]
    assert [i["key"] for i in items] == [f"{PREFIX}a", f"{PREFIX}b/1"]
    assert [orjson.loads(i)["key"] for i in feed.snapshot(f"{PREFIX}b/").items] == [
        f"{PREFIX}b/1"]
    assert snap.revision == head - 1
    await feed.close()


async def test_a_revision_the_store_never_reached_is_gone(store: Store) -> None:
    feed = ChangeFeed(store, PREFIX)
    head = await store.revision()
    with pytest.raises(FeedGone):
        await feed.changes(head + 100, wait_seconds=0)
    # The next revision is a normal wait.
    assert (await feed.changes(head + 1, wait_seconds=0)).events == ()
    await feed.close()


async def test_close_answers_waiters(store: Store) -> None:
    feeds = ChangeFeeds(store, [PREFIX, "/operational/topology/"])
    feed = feeds.root_of("/config/neutron/ports/")
    assert feed is not None and feed.prefix == PREFIX
    assert feeds.root_of("/etc/") is None
    await feed.start()
    waiter = asyncio.create_task(feed.changes(await store.revision() + 1, wait_seconds=300))
    await asyncio.sleep(0)
    await feeds.close()
    assert (await waiter).events == ()


async def test_sub_prefix_filter(store: Store) -> None:
    feed = ChangeFeed(store, PREFIX)
    await feed.start()
    start = await store.revision() + 1
    await store.put(f"{PREFIX}ports/p", b"{}")
    await store.put(f"{PREFIX}networks/n", b"{}")
    batch = await feed.changes(start, key_prefix=f"{PREFIX}networks/", wait_seconds=5)
    assert [e["key"] for e in _events(batch)] == [f"{PREFIX}networks/n"]
    await feed.close()
