"""Leadership over a real SQLite store: one of two contenders leads, the
other takes over when the leader's lease expires or it resigns, and a
deposed leader's fenced writes fail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kumonet.cluster.leadership import Leadership, LeaderTerm, leader_key
from kumonet.store.contract import Put, Store
from kumonet.store.url import open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path}/leaders.db")
    try:
        yield opened
    finally:
        await opened.close()


async def test_one_of_two_contenders_leads(store: Store) -> None:
    one = Leadership(store, "job", identity="one", ttl=5)
    two = Leadership(store, "job", identity="two", ttl=5)
    first, second = await asyncio.gather(one.campaign(), two.campaign())
    winners = [t for t in (first, second) if t is not None]
    assert len(winners) == 1
    kv = await store.get(leader_key("job"))
    assert kv is not None and kv.value.decode() == winners[0].identity
    assert kv.create_revision == winners[0].token
    # The loser's lease was revoked: only the leader key holds one.
    assert kv.lease == winners[0].lease_id


async def test_takeover_after_lease_expiry_and_fencing(store: Store) -> None:
    one = Leadership(store, "job", identity="one", ttl=1)
    two = Leadership(store, "job", identity="two", ttl=1)
    old = await one.campaign()
    assert old is not None
    # "one" is paused (never keeps its lease alive); "two" waits for the key.
    new = await asyncio.wait_for(two.lead_once(), timeout=30)
    assert new.identity == "two" and new.token > old.token
    # The deposed leader still believes it leads: its fenced write fails.
    stale = await store.txn([old.fence()], [Put("/config/default/x", b"stale")])
    assert not stale.succeeded
    assert await store.get("/config/default/x") is None
    fresh = await store.txn([new.fence()], [Put("/config/default/x", b"fresh")])
    assert fresh.succeeded
    # Its keep-alive notices and marks the term lost.
    await asyncio.wait_for(one.keep_alive(old), timeout=30)
    assert old.lost.is_set()
    await two.resign(new)


async def test_run_hands_over_on_resign_and_cancel(store: Store) -> None:
    terms: list[LeaderTerm] = []
    started = asyncio.Event()

    async def work(term: LeaderTerm) -> None:
        terms.append(term)
        started.set()
        await asyncio.Event().wait()

    one = Leadership(store, "job", identity="one", ttl=2)
    two = Leadership(store, "job", identity="two", ttl=2)
    run_one = asyncio.create_task(one.run(work))
    await asyncio.wait_for(started.wait(), timeout=30)
    started.clear()
    run_two = asyncio.create_task(two.run(work))
    await asyncio.sleep(0.2)
    assert [t.identity for t in terms] == ["one"]
    # Stopping the leader resigns at once: the follower takes over.
    run_one.cancel()
    await asyncio.wait({run_one})
    await asyncio.wait_for(started.wait(), timeout=30)
    assert [t.identity for t in terms] == ["one", "two"]
    assert terms[0].lost.is_set() and not terms[1].lost.is_set()
    assert terms[1].token > terms[0].token
    run_two.cancel()
    await asyncio.wait({run_two})
    assert await store.get(leader_key("job")) is None


async def test_work_is_cancelled_when_the_lease_is_lost(store: Store) -> None:
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def work(term: LeaderTerm) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    one = Leadership(store, "job", identity="one", ttl=3)
    run = asyncio.create_task(one.run(work))
    try:
        await asyncio.wait_for(started.wait(), timeout=30)
        kv = await store.get(leader_key("job"))
        assert kv is not None
        # Another party revokes the lease (as an expiry would end it).
        await store.revoke_lease(kv.lease)
        await asyncio.wait_for(cancelled.wait(), timeout=30)
        # ...and the server campaigns again and leads a new term.
        started.clear()
        await asyncio.wait_for(started.wait(), timeout=30)
        again = await store.get(leader_key("job"))
        assert again is not None and again.create_revision > kv.create_revision
    finally:
        run.cancel()
        await asyncio.wait({run})
