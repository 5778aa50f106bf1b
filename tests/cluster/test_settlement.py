"""SettlingStore over a real SQLite store, with the moment a member dies
played by a thin cut in front of it: the write is applied (or not) and the
caller is told "indeterminate", as etcd's client is when the leader dies
mid-call. The kill-under-load test does the same with real etcd."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from kumonet.cluster.settlement import SettlingStore
from kumonet.store.contract import (
    Compare,
    Delete,
    KeyValue,
    Op,
    Put,
    Store,
    StoreUnavailable,
    TxnResult,
    key_absent,
)
from kumonet.store.url import open_store


class Cut(SettlingStore):
    """Passes everything to the store; the next ``cuts`` writes end in an
    indeterminate error, after being applied if ``applied``; the next
    ``dark_reads`` reads fail as without a quorum."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.cuts = 0
        self.applied = False
        self.dark_reads = 0

    async def txn(self, compares: Sequence[Compare], success: Sequence[Op],
                  failure: Sequence[Op] = ()) -> TxnResult:
        if self.cuts:
            self.cuts -= 1
            if self.applied:
                await self.store.txn(compares, success, failure)
            raise StoreUnavailable("leader died", indeterminate=True)
        return await self.store.txn(compares, success, failure)

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        if self.cuts:
            self.cuts -= 1
            if self.applied:
                await self.store.put(key, value, lease=lease)
            raise StoreUnavailable("leader died", indeterminate=True)
        return await self.store.put(key, value, lease=lease)

    async def get(self, key: str) -> KeyValue | None:
        if self.dark_reads:
            self.dark_reads -= 1
            raise StoreUnavailable("no leader")
        return await self.store.get(key)


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    opened = await open_store("sqlite:///:memory:")
    try:
        yield opened
    finally:
        await opened.close()


CREATE = (
    [key_absent("/config/neutron/ports/p1"), key_absent("/config/neutron/ipam/s/10.0.0.5")],
    [Put("/config/neutron/ports/p1", b'{"id": "p1"}'),
     Put("/config/neutron/ipam/s/10.0.0.5", b"p1")],
)


async def test_applied_write_is_answered_as_success(store: Store) -> None:
    cut = Cut(store)
    cut.cuts, cut.applied = 1, True
    settling = SettlingStore(cut)
    result = await settling.txn(*CREATE)
    assert result.succeeded
    kv = await store.get("/config/neutron/ports/p1")
    assert kv is not None and result.revision == kv.mod_revision
    assert settling.settled_applied == 1 and settling.settled_resent == 0
    # Nothing was written twice.
    assert kv.version == 1


async def test_lost_write_is_sent_again(store: Store) -> None:
    cut = Cut(store)
    cut.cuts, cut.applied = 1, False
    settling = SettlingStore(cut)
    result = await settling.txn(*CREATE)
    assert result.succeeded
    assert await store.get("/config/neutron/ports/p1") is not None
    assert settling.settled_resent == 1


async def test_resent_write_still_guarded(store: Store) -> None:
    # Another writer took the address while the first attempt was lost.
    cut = Cut(store)
    cut.cuts, cut.applied = 1, False
    await store.put("/config/neutron/ipam/s/10.0.0.5", b"other")
    result = await SettlingStore(cut).txn(*CREATE)
    assert not result.succeeded
    assert await store.get("/config/neutron/ports/p1") is None


async def test_settles_after_the_cluster_is_back(store: Store) -> None:
    cut = Cut(store)
    cut.cuts, cut.applied, cut.dark_reads = 1, True, 3
    result = await SettlingStore(cut, settle_seconds=5).txn(*CREATE)
    assert result.succeeded


async def test_still_unknown_after_the_deadline_stays_indeterminate(store: Store) -> None:
    cut = Cut(store)
    cut.cuts, cut.applied, cut.dark_reads = 1, True, 10**6
    with pytest.raises(StoreUnavailable) as raised:
        await SettlingStore(cut, settle_seconds=0.3).txn(*CREATE)
    assert raised.value.indeterminate


async def test_unsettleable_writes_pass_the_error_through(store: Store) -> None:
    cut = Cut(store)
    cut.cuts = 1
    with pytest.raises(StoreUnavailable):
        await SettlingStore(cut).txn([], [Put("/k", b"v")], [Delete("/k")])
    cut.cuts = 0

    class Refusing(Cut):
        async def txn(self, compares: Sequence[Compare], success: Sequence[Op],
                      failure: Sequence[Op] = ()) -> TxnResult:
            raise StoreUnavailable("no quorum")  # certainly not applied

    with pytest.raises(StoreUnavailable) as raised:
        await SettlingStore(Refusing(store)).txn(*CREATE)
    assert not raised.value.indeterminate


async def test_put_is_settled(store: Store) -> None:
    cut = Cut(store)
    settling = SettlingStore(cut)
    cut.cuts, cut.applied = 1, True
    revision = await settling.put("/k", b"v")
    kv = await store.get("/k")
    assert kv is not None and kv.mod_revision == revision and kv.version == 1
    cut.cuts, cut.applied = 1, False
    revision = await settling.put("/k", b"w")
    kv = await store.get("/k")
    assert kv is not None and kv.value == b"w" and kv.version == 2
