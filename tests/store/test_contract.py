"""THE store contract suite (``kumonet.store.contract``), run against every
backend in ``conftest.BACKENDS``.

Only the ``Store`` protocol is used. Revisions are read first and asserted
relative to that, and keys live under the test's own prefix ``ns``, so the
suite also runs on a cluster shared between tests. Waiting on a watch or a
lease is bounded by a generous timeout that only guards against hanging; no
assertion depends on how fast anything is.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from kumonet.store.contract import (
    CompactedError,
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeletePrefix,
    EventType,
    KeyValue,
    LeaseNotFound,
    Op,
    Put,
    Store,
    StoreError,
    WatchEvent,
    key_absent,
    key_unchanged,
)
from tests.store.conftest import Backend
from tests.store.watching import take, take_until, watching


def summary(events: list[WatchEvent]) -> list[tuple[str, str, int, bytes]]:
    return [(e.type.value, e.kv.key, e.kv.mod_revision, e.kv.value) for e in events]


# -- revisions and single-key operations -------------------------------------


async def test_an_empty_store_is_at_revision_1(store: Store, backend: Backend) -> None:
    if not backend.fresh:
        pytest.skip("the backend shares one store between tests")
    assert await store.revision() == 1
    assert (await store.range("")).kvs == ()


async def test_put_advances_the_revision_by_one_and_sets_key_revisions(
    store: Store, ns: str
) -> None:
    r0 = await store.revision()
    assert await store.put(ns + "k", b"v1") == r0 + 1
    assert await store.get(ns + "k") == KeyValue(ns + "k", b"v1", r0 + 1, r0 + 1, 1)
    assert await store.put(ns + "k", b"v2") == r0 + 2
    assert await store.get(ns + "k") == KeyValue(ns + "k", b"v2", r0 + 1, r0 + 2, 2)
    # Writing the same value again is still a write.
    assert await store.put(ns + "k", b"v2") == r0 + 3
    assert await store.get(ns + "k") == KeyValue(ns + "k", b"v2", r0 + 1, r0 + 3, 3)
    assert await store.revision() == r0 + 3


async def test_reads_do_not_advance_the_revision(store: Store, ns: str) -> None:
    await store.put(ns + "k", b"v")
    r = await store.revision()
    await store.get(ns + "k")
    await store.get(ns + "absent")
    await store.range(ns)
    assert await store.revision() == r


async def test_each_write_advances_the_one_global_revision(store: Store, ns: str) -> None:
    r0 = await store.revision()
    assert await store.put(ns + "a", b"1") == r0 + 1
    assert await store.put(ns + "b", b"1") == r0 + 2
    kv_a = await store.get(ns + "a")
    kv_b = await store.get(ns + "b")
    assert kv_a is not None and kv_b is not None
    assert (kv_a.mod_revision, kv_b.mod_revision) == (r0 + 1, r0 + 2)


async def test_get_of_an_absent_key_is_none(store: Store, ns: str) -> None:
    assert await store.get(ns + "absent") is None


async def test_values_are_bytes_kept_exactly(store: Store, ns: str) -> None:
    values = [b"", b"\x00\xff\x00", "日本語".encode(), bytes(range(256)) * 64]
    for index, value in enumerate(values):
        await store.put(f"{ns}v{index}", value)
    for index, value in enumerate(values):
        kv = await store.get(f"{ns}v{index}")
        assert kv is not None and kv.value == value


async def test_delete_returns_the_new_revision_and_removes_the_key(store: Store, ns: str) -> None:
    await store.put(ns + "k", b"v")
    r = await store.revision()
    assert await store.delete(ns + "k") == r + 1
    assert await store.get(ns + "k") is None
    assert await store.revision() == r + 1


async def test_deleting_an_absent_key_does_not_advance_the_revision(store: Store, ns: str) -> None:
    await store.put(ns + "other", b"v")
    r = await store.revision()
    assert await store.delete(ns + "absent") == r
    assert await store.revision() == r


async def test_put_after_delete_starts_a_new_life(store: Store, ns: str) -> None:
    await store.put(ns + "k", b"1")
    await store.put(ns + "k", b"2")
    await store.delete(ns + "k")
    r = await store.put(ns + "k", b"3")
    assert await store.get(ns + "k") == KeyValue(ns + "k", b"3", r, r, 1)


async def test_malformed_writes_are_refused(store: Store, ns: str) -> None:
    r = await store.revision()
    with pytest.raises(StoreError):
        await store.put("", b"v")
    with pytest.raises(StoreError):
        await store.put(ns + "k", "not bytes")  # type: ignore[arg-type]
    assert await store.revision() == r


# -- range ---------------------------------------------------------------------


async def test_range_returns_exactly_the_keys_under_the_prefix_sorted(
    store: Store, ns: str
) -> None:
    inside = [ns + "a/", ns + "a/z", ns + "a/b/c", ns + "a/b", ns + "a/é", ns + "a/\U0001f600"]
    outside = [ns + "a", ns + "ab", ns + "a0", ns + "a.", ns + "b/a/", ns[:-1]]
    for key in random.Random(7).sample(inside + outside, len(inside + outside)):
        await store.put(key, key.encode())
    result = await store.range(ns + "a/")
    assert [kv.key for kv in result.kvs] == sorted(inside)
    assert all(kv.value == kv.key.encode() for kv in result.kvs)
    assert result.revision == await store.revision()


async def test_range_reports_full_key_values(store: Store, ns: str) -> None:
    r1 = await store.put(ns + "x", b"1")
    r2 = await store.put(ns + "x", b"2")
    (kv,) = (await store.range(ns)).kvs
    assert kv == KeyValue(ns + "x", b"2", r1, r2, 2)


async def test_an_empty_range_still_reports_the_revision(store: Store, ns: str) -> None:
    await store.put(ns + "elsewhere", b"v")
    result = await store.range(ns + "nothing/")
    assert result.kvs == ()
    assert result.revision == await store.revision()


# -- transactions ----------------------------------------------------------------

OPS: tuple[CompareOp, ...] = ("==", "!=", "<", ">")


def expected_outcome(actual: int | bytes, op: CompareOp, operand: int | bytes) -> bool:
    return {
        "==": actual == operand,
        "!=": actual != operand,
        "<": actual < operand,  # type: ignore[operator]
        ">": actual > operand,  # type: ignore[operator]
    }[op]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("target", ["create_revision", "mod_revision", "version", "value"])
@pytest.mark.parametrize("relation", ["below", "equal", "above"])
async def test_compare_on_an_existing_key(
    store: Store, ns: str, target: CompareTarget, op: CompareOp, relation: str
) -> None:
    await store.put(ns + "k", b"m1")
    await store.put(ns + "other", b"x")
    await store.put(ns + "k", b"m2")
    kv = await store.get(ns + "k")
    assert kv is not None
    actual: int | bytes = kv.value if target == "value" else getattr(kv, target)
    operand: int | bytes
    if isinstance(actual, bytes):
        operand = {"below": b"m1", "equal": b"m2", "above": b"m3"}[relation]
    else:
        operand = actual + {"below": -1, "equal": 0, "above": 1}[relation]
    expected = expected_outcome(actual, op, operand)
    r = await store.revision()
    result = await store.txn(
        [Compare(ns + "k", target, op, operand)],
        [Put(ns + "s", b"success")],
        [Put(ns + "f", b"failure")],
    )
    assert result.succeeded is expected
    assert result.revision == r + 1
    assert (await store.get(ns + "s") is not None) is expected
    assert (await store.get(ns + "f") is not None) is not expected


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("target", ["create_revision", "mod_revision", "version"])
@pytest.mark.parametrize("operand", [0, 1])
async def test_an_absent_key_has_revisions_and_version_zero(
    store: Store, ns: str, target: CompareTarget, op: CompareOp, operand: int
) -> None:
    await store.put(ns + "k", b"v")
    await store.delete(ns + "k")  # once existed: makes no difference
    result = await store.txn([Compare(ns + "k", target, op, operand)], [])
    assert result.succeeded is expected_outcome(0, op, operand)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("operand", [b"", b"x"])
async def test_a_value_compare_on_an_absent_key_never_holds(
    store: Store, ns: str, op: CompareOp, operand: bytes
) -> None:
    result = await store.txn([Compare(ns + "absent", "value", op, operand)], [])
    assert result.succeeded is False


async def test_key_absent_and_key_unchanged(store: Store, ns: str) -> None:
    assert (await store.txn([key_absent(ns + "k")], [Put(ns + "k", b"1")])).succeeded
    assert not (await store.txn([key_absent(ns + "k")], [Put(ns + "k", b"2")])).succeeded
    kv = await store.get(ns + "k")
    assert kv is not None and kv.value == b"1"
    assert (await store.txn([key_unchanged(kv)], [Put(ns + "k", b"3")])).succeeded
    # kv is stale now
    assert not (await store.txn([key_unchanged(kv)], [Put(ns + "k", b"4")])).succeeded
    final = await store.get(ns + "k")
    assert final is not None and final.value == b"3"


async def test_all_compares_must_hold(store: Store, ns: str) -> None:
    await store.put(ns + "a", b"1")
    holds = Compare(ns + "a", "value", "==", b"1")
    fails = Compare(ns + "a", "value", "==", b"2")
    assert (await store.txn([holds, holds], [])).succeeded
    assert not (await store.txn([holds, fails], [])).succeeded
    assert not (await store.txn([fails, holds], [])).succeeded
    assert (await store.txn([], [])).succeeded


async def test_a_txn_applies_its_ops_atomically_under_one_revision(store: Store, ns: str) -> None:
    await store.put(ns + "gone", b"x")
    await store.put(ns + "kept", b"y")
    r = await store.revision()
    result = await store.txn(
        [key_absent(ns + "new1")],
        [
            Put(ns + "new1", b"1"),
            Put(ns + "new2", b"2"),
            Delete(ns + "gone"),
            Put(ns + "kept", b"z"),
        ],
    )
    assert result.succeeded and result.revision == r + 1
    assert await store.revision() == r + 1
    kvs = {kv.key: kv for kv in (await store.range(ns)).kvs}
    assert set(kvs) == {ns + "new1", ns + "new2", ns + "kept"}
    assert {kv.mod_revision for kv in kvs.values()} == {r + 1}
    assert kvs[ns + "kept"].version == 2


async def test_the_failure_branch_alone_is_applied(store: Store, ns: str) -> None:
    await store.put(ns + "k", b"1")
    r = await store.revision()
    result = await store.txn(
        [Compare(ns + "k", "value", "==", b"other")],
        [Put(ns + "s1", b""), Put(ns + "s2", b"")],
        [Put(ns + "f1", b""), Delete(ns + "k")],
    )
    assert not result.succeeded and result.revision == r + 1
    assert [kv.key for kv in (await store.range(ns)).kvs] == [ns + "f1"]


async def test_a_txn_that_changes_nothing_keeps_the_revision(store: Store, ns: str) -> None:
    await store.put(ns + "k", b"1")
    r = await store.revision()
    assert await store.txn([], []) == await store.txn([], [])
    assert (await store.txn([key_absent(ns + "k")], [Put(ns + "x", b"")])).revision == r
    result = await store.txn([], [Delete(ns + "absent"), DeletePrefix(ns + "none/")])
    assert result.succeeded and result.revision == r
    assert await store.revision() == r


@pytest.mark.parametrize(
    "ops",
    [
        [Put("k", b"1"), Put("k", b"2")],
        [Put("k", b"1"), Delete("k")],
        [Delete("k"), Put("k", b"1")],
        [Delete("k"), Delete("k")],
        [Put("d/k", b"1"), DeletePrefix("d/")],
        [DeletePrefix("d/"), Delete("d/k")],
    ],
    ids=["put-put", "put-delete", "delete-put", "delete-delete", "put-prefix", "prefix-delete"],
)
@pytest.mark.parametrize("branch", ["success", "failure"])
async def test_two_ops_on_one_key_are_refused(
    store: Store, ns: str, ops: list[Op], branch: str
) -> None:
    def scoped(op: Op) -> Op:
        if isinstance(op, Put):
            return Put(ns + op.key, op.value)
        if isinstance(op, Delete):
            return Delete(ns + op.key)
        return DeletePrefix(ns + op.prefix)

    await store.put(ns + "k", b"0")
    r = await store.revision()
    branches: dict[str, Any] = {"success": [], "failure": []}
    branches[branch] = [Put(ns + "first", b""), *(scoped(op) for op in ops)]
    with pytest.raises(StoreError):
        await store.txn([], branches["success"], branches["failure"])
    assert await store.revision() == r
    assert [kv.key for kv in (await store.range(ns)).kvs] == [ns + "k"]


async def test_delete_prefix_deletes_exactly_the_keys_under_it(store: Store, ns: str) -> None:
    for key in ["a/", "a/1", "a/2/x", "a", "ab", "a0", "b/a/1"]:
        await store.put(ns + key, b"v")
    r = await store.revision()
    result = await store.txn([], [DeletePrefix(ns + "a/")])
    assert result.revision == r + 1
    assert [kv.key for kv in (await store.range(ns)).kvs] == [
        ns + k for k in ["a", "a0", "ab", "b/a/1"]
    ]


async def test_a_put_with_an_unknown_lease_writes_nothing(store: Store, ns: str) -> None:
    r = await store.revision()
    with pytest.raises(LeaseNotFound):
        await store.put(ns + "k", b"v", lease=424242)
    with pytest.raises(LeaseNotFound):
        await store.txn([], [Put(ns + "a", b""), Put(ns + "b", b"", lease=424242)])
    assert await store.revision() == r
    assert (await store.range(ns)).kvs == ()


# -- watch -----------------------------------------------------------------------


async def test_watch_yields_changes_in_revision_and_op_order(store: Store, ns: str) -> None:
    r0 = await store.revision()
    async with watching(store, ns, r0 + 1) as events:
        await store.put(ns + "a", b"1")
        await store.put(ns + "b", b"1")
        await store.txn([], [Put(ns + "c", b"1"), Delete(ns + "a"), Put(ns + "b", b"2")])
        await store.delete(ns + "b")
        got = await take(events, 6)
    assert summary(got) == [
        ("put", ns + "a", r0 + 1, b"1"),
        ("put", ns + "b", r0 + 2, b"1"),
        ("put", ns + "c", r0 + 3, b"1"),
        ("delete", ns + "a", r0 + 3, b""),
        ("put", ns + "b", r0 + 3, b"2"),
        ("delete", ns + "b", r0 + 4, b""),
    ]
    put_b2 = got[4].kv
    assert (put_b2.create_revision, put_b2.version) == (r0 + 2, 2)


async def test_delete_events_and_prev_values(store: Store, ns: str, backend: Backend) -> None:
    r0 = await store.revision()
    async with watching(store, ns, r0 + 1) as events:
        await store.put(ns + "k", b"old")
        await store.put(ns + "k", b"new")
        await store.delete(ns + "k")
        created, updated, deleted = await take(events, 3)
    assert deleted.type is EventType.DELETE
    assert deleted.kv.key == ns + "k"
    assert deleted.kv.value == b""
    assert deleted.kv.mod_revision == r0 + 3
    if backend.keeps_prev_value:
        assert created.prev_value is None
        assert updated.prev_value == b"old"
        assert deleted.prev_value == b"new"


async def test_watch_from_the_past_replays_history_then_follows_live(store: Store, ns: str) -> None:
    r0 = await store.revision()
    for i in range(5):
        await store.put(f"{ns}k{i}", b"past")
    async with watching(store, ns, r0 + 3) as events:
        past = await take(events, 3)
        await store.put(ns + "live", b"now")
        await store.put(ns + "end", b"")
        live = await take_until(events, ns + "end")
    assert [e.kv.mod_revision for e in past] == [r0 + 3, r0 + 4, r0 + 5]
    assert summary(live) == [("put", ns + "live", r0 + 6, b"now"), ("put", ns + "end", r0 + 7, b"")]


async def test_watch_from_a_future_revision_starts_there(store: Store, ns: str) -> None:
    r0 = await store.revision()
    async with watching(store, ns, r0 + 3) as events:
        for i in range(4):
            await store.put(f"{ns}k{i}", b"")
        got = await take(events, 2)
    assert [e.kv.mod_revision for e in got] == [r0 + 3, r0 + 4]


async def test_resuming_from_the_next_revision_misses_and_repeats_nothing(
    store: Store, ns: str
) -> None:
    r0 = await store.revision()
    await store.txn([], [Put(ns + "t1", b""), Put(ns + "t2", b"")])
    for i in range(4):
        await store.put(f"{ns}k{i}", b"")
    async with watching(store, ns, r0 + 1) as events:
        first = await take(events, 4)  # the txn's two events and two puts
    last = first[-1].kv.mod_revision
    for i in range(4, 6):
        await store.put(f"{ns}k{i}", b"")
    await store.put(ns + "end", b"")
    async with watching(store, ns, last + 1) as events:
        rest = await take_until(events, ns + "end")
    keys = [e.kv.key for e in first + rest]
    assert keys == [ns + k for k in ["t1", "t2", "k0", "k1", "k2", "k3", "k4", "k5", "end"]]


async def test_watch_filters_by_prefix(store: Store, ns: str) -> None:
    r0 = await store.revision()
    async with watching(store, ns + "a/", r0 + 1) as events:
        for key in ["a", "ab", "a/1", "b/a/1", "a0", "a/2/x", "a/end"]:
            await store.put(ns + key, b"")
        got = await take_until(events, ns + "a/end")
    assert [e.kv.key for e in got] == [ns + "a/1", ns + "a/2/x", ns + "a/end"]


async def test_several_watchers_see_the_same_events(store: Store, ns: str) -> None:
    r0 = await store.revision()
    async with (
        watching(store, ns, r0 + 1) as first,
        watching(store, ns, r0 + 1) as second,
        watching(store, ns + "x", r0 + 1) as narrow,
    ):
        await store.put(ns + "x1", b"")
        await store.put(ns + "y1", b"")
        await store.txn([], [Put(ns + "x2", b""), Put(ns + "y2", b"")])
        await store.put(ns + "xend", b"")
        a = await take_until(first, ns + "xend")
        b = await take_until(second, ns + "xend")
        c = await take_until(narrow, ns + "xend")
    assert a == b
    assert len(a) == 5
    assert c == [e for e in a if e.kv.key.startswith(ns + "x")]


async def test_history_and_live_delivery_give_equal_events(store: Store, ns: str) -> None:
    lease = await store.grant_lease(60)
    r0 = await store.revision()
    async with watching(store, ns, r0 + 1) as live:
        await store.put(ns + "a", b"1", lease=lease.id)
        await store.txn([], [Put(ns + "a", b"2"), Put(ns + "b", b"3")])
        await store.txn([], [DeletePrefix(ns)])
        await store.put(ns + "end", b"")
        seen_live = await take_until(live, ns + "end")
    async with watching(store, ns, r0 + 1) as replay:
        replayed = await take_until(replay, ns + "end")
    assert seen_live == replayed
    assert len(replayed) == 6
    await store.revoke_lease(lease.id)


async def test_a_watch_started_during_writes_has_no_gap_and_no_repeat(
    store: Store, ns: str
) -> None:
    r0 = await store.revision()
    written: list[int] = []
    midway = asyncio.Event()

    async def writer(name: str) -> None:
        for i in range(30):
            written.append(await store.put(f"{ns}{name}/{i}", b""))
            if len(written) >= 40:
                midway.set()

    writers = [asyncio.create_task(writer(f"w{n}")) for n in range(4)]
    await midway.wait()
    async with watching(store, ns, r0 + 1) as events:
        await asyncio.gather(*writers)
        await store.put(ns + "end", b"")
        got = await take_until(events, ns + "end")
    assert [e.kv.mod_revision for e in got[:-1]] == sorted(written)
    assert sorted(written) == list(range(r0 + 1, r0 + 121))


async def test_a_compacted_start_raises_compacted_error(store: Store, ns: str) -> None:
    r0 = await store.revision()
    for i in range(5):
        await store.put(f"{ns}k{i}", b"")
    await store.compact(r0 + 3)
    with pytest.raises(CompactedError) as raised:
        async with watching(store, ns, r0 + 1) as events:
            await take(events, 1)
    assert raised.value.compact_revision == r0 + 3
    async with watching(store, ns, r0 + 3) as events:
        got = await take(events, 3)
    assert [e.kv.mod_revision for e in got] == [r0 + 3, r0 + 4, r0 + 5]
    # Compacting again to an older revision changes nothing; current values stay.
    await store.compact(r0 + 2)
    assert len((await store.range(ns)).kvs) == 5


async def test_compacting_beyond_the_current_revision_is_refused(store: Store, ns: str) -> None:
    await store.put(ns + "k", b"")
    with pytest.raises(StoreError):
        await store.compact(await store.revision() + 10)


# -- leases ----------------------------------------------------------------------


async def test_a_lease_attaches_to_keys(store: Store, ns: str) -> None:
    lease = await store.grant_lease(30)
    assert lease.id != 0 and lease.ttl >= 30
    await store.put(ns + "k", b"v", lease=lease.id)
    kv = await store.get(ns + "k")
    assert kv is not None and kv.lease == lease.id
    assert await store.keepalive_lease(lease.id) >= 30
    await store.revoke_lease(lease.id)


async def test_revoking_a_lease_deletes_its_keys_with_delete_events(
    store: Store, ns: str, backend: Backend
) -> None:
    lease = await store.grant_lease(60)
    other = await store.grant_lease(60)
    await store.put(ns + "a", b"1", lease=lease.id)
    await store.put(ns + "b", b"2", lease=lease.id)
    await store.put(ns + "c", b"3", lease=other.id)
    await store.put(ns + "d", b"4")
    await store.put(ns + "detached", b"5", lease=lease.id)
    await store.put(ns + "detached", b"6")  # re-put without a lease: detached
    assert await store.get(ns + "a") is not None
    r = await store.revision()
    async with watching(store, ns, r + 1) as events:
        await store.revoke_lease(lease.id)
        deleted = await take(events, 2)
    assert {(e.type, e.kv.key) for e in deleted} == {
        (EventType.DELETE, ns + "a"),
        (EventType.DELETE, ns + "b"),
    }
    if backend.keeps_prev_value:
        assert {e.prev_value for e in deleted} == {b"1", b"2"}
    assert [kv.key for kv in (await store.range(ns)).kvs] == [ns + "c", ns + "d", ns + "detached"]
    assert await store.get(ns + "a") is None
    with pytest.raises(LeaseNotFound):
        await store.keepalive_lease(lease.id)
    with pytest.raises(LeaseNotFound):
        await store.revoke_lease(lease.id)
    with pytest.raises(LeaseNotFound):
        await store.put(ns + "e", b"", lease=lease.id)
    await store.revoke_lease(other.id)


async def test_unknown_leases_are_not_found(store: Store) -> None:
    with pytest.raises(LeaseNotFound):
        await store.keepalive_lease(987654321)
    with pytest.raises(LeaseNotFound):
        await store.revoke_lease(987654321)


async def test_an_expired_lease_deletes_its_keys(store: Store, ns: str) -> None:
    lease = await store.grant_lease(1)
    r = await store.put(ns + "k", b"v", lease=lease.id)
    await store.put(ns + "stays", b"v")
    assert await store.get(ns + "k") is not None
    async with watching(store, ns + "k", r + 1) as events:
        (deleted,) = await take(events, 1)
    assert deleted.type is EventType.DELETE and deleted.kv.key == ns + "k"
    assert await store.get(ns + "k") is None
    assert await store.get(ns + "stays") is not None
    with pytest.raises(LeaseNotFound):
        await store.keepalive_lease(lease.id)


async def test_keepalive_keeps_a_lease_past_its_ttl(store: Store, ns: str) -> None:
    lease = await store.grant_lease(2)
    await store.put(ns + "k", b"v", lease=lease.id)
    loop = asyncio.get_running_loop()
    until = loop.time() + 2 * lease.ttl + 1
    while loop.time() < until:
        await asyncio.sleep(0.4)
        await store.keepalive_lease(lease.id)
    assert await store.get(ns + "k") is not None
    await store.revoke_lease(lease.id)
    assert await store.get(ns + "k") is None


# -- concurrency -----------------------------------------------------------------


async def test_concurrent_compare_and_swap_increments_lose_nothing(store: Store, ns: str) -> None:
    counter = ns + "counter"
    await store.put(counter, b"0")

    async def increment(times: int) -> None:
        for _ in range(times):
            # Each retry follows someone else's success, so 8 workers need at
            # most a few; the bound turns a store serving stale reads (retrying
            # forever) into a failure instead of a hang.
            for _attempt in range(1000):
                kv = await store.get(counter)
                assert kv is not None
                new = str(int(kv.value) + 1).encode()
                if (await store.txn([key_unchanged(kv)], [Put(counter, new)])).succeeded:
                    break
            else:
                pytest.fail("a compare-and-swap increment never succeeded")

    await asyncio.gather(*(increment(20) for _ in range(8)))
    final = await store.get(counter)
    assert final is not None and final.value == b"160" and final.version == 161


async def test_racing_allocations_have_one_winner_per_key(store: Store, ns: str) -> None:
    slots = [f"{ns}ip/10.0.0.{i}" for i in range(40)]
    wins: dict[str, list[str]] = {slot: [] for slot in slots}

    async def allocator(name: str) -> None:
        for slot in random.Random(name).sample(slots, len(slots)):
            result = await store.txn([key_absent(slot)], [Put(slot, name.encode())])
            if result.succeeded:
                wins[slot].append(name)

    await asyncio.gather(*(allocator(f"port-{n}") for n in range(8)))
    assert all(len(winners) == 1 for winners in wins.values()), wins
    for slot, (winner,) in wins.items():
        kv = await store.get(slot)
        assert kv is not None and kv.value == winner.encode() and kv.version == 1


async def test_reads_see_every_write_completed_before_them(store: Store, ns: str) -> None:
    keys = [f"{ns}shared/{i}" for i in range(4)]
    writes: dict[int, tuple[str, bytes | None]] = {}  # revision -> (key, value or deleted)
    reads: list[tuple[str, int, KeyValue | None]] = []  # (key, a write done before, result)

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        for n in range(40):
            key = rng.choice(keys)
            await store.get(key)  # reads interleaved with everyone's writes
            if rng.random() < 0.3:
                exists = Compare(key, "version", ">", 0)
                result = await store.txn([exists], [Delete(key)])
                if not result.succeeded:
                    continue
                writes[result.revision] = (key, None)
                r = result.revision
            else:
                value = f"{seed}/{n}".encode()
                r = await store.put(key, value)
                writes[r] = (key, value)
            reads.append((key, r, await store.get(key)))
            assert await store.revision() >= r

    await asyncio.gather(*(worker(seed) for seed in range(8)))
    for key, done, kv in reads:
        if kv is not None:
            # What the read returned was written at or after our write...
            assert kv.mod_revision >= done and writes[kv.mod_revision] == (key, kv.value)
        else:
            # ...or the key was deleted at or after it.
            assert any(k == key and v is None and rev >= done for rev, (k, v) in writes.items())
    final = {kv.key: kv for kv in (await store.range(ns)).kvs}
    for key in keys:
        assert await store.get(key) == final.get(key)


# -- members ---------------------------------------------------------------------


async def test_members_report_exactly_one_leader(store: Store) -> None:
    members = await store.members()
    assert members
    assert [m.raft_state for m in members].count("Leader") == 1
    assert all(m.healthy for m in members)
