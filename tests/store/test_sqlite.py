"""What only the embedded SQLite store promises, beyond the contract suite:
durability across close, reopen and SIGKILL, leases re-armed on reopen,
bounded history, one owner per file, and failures that leave nothing half
done."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kumonet.store.contract import (
    CompactedError,
    Delete,
    DeletePrefix,
    EventType,
    KeyValue,
    LeaseNotFound,
    Put,
    StoreError,
    StoreUnavailable,
    key_absent,
)
from kumonet.store.sqlite import HISTORY_PAGE, HISTORY_SCAN, MEMORY, SqliteStore, prefix_end
from tests.environment import needs
from tests.store.watching import take, take_until, watching

REPO = Path(__file__).resolve().parents[2]


async def test_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await SqliteStore.open(path)
    await store.put("/a/1", b"one")
    await store.put("/a/1", b"uno")
    await store.txn([], [Put("/a/2", b"two"), Put("/b/1", b"")])
    await store.delete("/b/1")
    async with watching(store, "/", 2) as events:
        before = await take(events, 5)
    await store.close()

    store = await SqliteStore.open(path)
    try:
        assert await store.revision() == 5
        assert await store.get("/a/1") == KeyValue("/a/1", b"uno", 2, 3, 2)
        assert [kv.key for kv in (await store.range("/")).kvs] == ["/a/1", "/a/2"]
        async with watching(store, "/", 2) as events:
            assert await take(events, 5) == before
        assert await store.put("/a/3", b"") == 6
    finally:
        await store.close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from kumonet.store.contract import Put, key_absent
    from kumonet.store.sqlite import SqliteStore

    async def main(path):
        store = await SqliteStore.open(path)
        print("ready", flush=True)

        async def writer(name):
            for i in range(1_000_000):
                key = f"/kill/{name}/{i}"
                result = await store.txn([key_absent(key)], [Put(key, b"x" * 100)])
                # Printed only once the write is acknowledged (durable).
                print(key, result.revision, flush=True)

        await asyncio.gather(*(writer(f"w{n}") for n in range(8)))

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(path),
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    acknowledged: dict[str, int] = {}
    try:
        async with asyncio.timeout(60):
            assert await child.stdout.readline() == b"ready\n"
            while len(acknowledged) < 500:
                key, revision = (await child.stdout.readline()).decode().split()
                acknowledged[key] = int(revision)
    finally:
        child.send_signal(signal.SIGKILL)
        # Lines already in the pipe were acknowledged before the kill.
        rest = await child.stdout.read()
        await child.wait()
    for line in rest.decode().splitlines():
        parts = line.split()
        if len(parts) == 2:  # the last line may be cut short by the kill
            acknowledged[parts[0]] = int(parts[1])
    assert child.returncode == -signal.SIGKILL

    store = await SqliteStore.open(path)
    try:
        stored = {kv.key: kv for kv in (await store.range("/kill/")).kvs}
        missing = [key for key in acknowledged if key not in stored]
        assert not missing
        assert all(stored[key].mod_revision == rev for key, rev in acknowledged.items())
        # Revisions stay dense: every revision up to the current one is there.
        assert await store.revision() == 1 + len(stored)
        assert sorted(kv.mod_revision for kv in stored.values()) == list(range(2, 2 + len(stored)))
    finally:
        await store.close()


async def test_leases_get_their_full_ttl_again_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await SqliteStore.open(path)
    lease = await store.grant_lease(2)
    await store.put("/host/a", b"alive", lease=lease.id)
    await store.close()
    await asyncio.sleep(2.5)  # the stored deadline passes while nobody runs

    store = await SqliteStore.open(path)
    try:
        # Re-armed, not expired: the lease and its key are still there...
        assert await store.keepalive_lease(lease.id) == 2
        assert await store.get("/host/a") is not None
        # ...and expire normally when nobody keeps them alive.
        r = await store.revision()
        async with watching(store, "/host/", r + 1) as events:
            (deleted,) = await take(events, 1)
        assert deleted.type is EventType.DELETE and deleted.prev_value == b"alive"
        with pytest.raises(LeaseNotFound):
            await store.keepalive_lease(lease.id)
        # Lease ids are never reused.
        assert (await store.grant_lease(5)).id > lease.id
    finally:
        await store.close()


async def test_history_is_compacted_to_the_configured_bound(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    limit = 20
    store = await SqliteStore.open(path, history_limit=limit)
    for i in range(200):
        await store.put(f"/h/{i % 7}", str(i).encode())
    current = await store.revision()
    # The last `limit` revisions are always there...
    async with watching(store, "/h/", current - limit + 1) as events:
        kept = await take(events, limit)
    assert [e.kv.mod_revision for e in kept] == list(range(current - limit + 1, current + 1))
    # ...and older ones are gone, within a tenth of the bound.
    with pytest.raises(CompactedError) as raised:
        async with watching(store, "/h/", 1) as events:
            await take(events, 1)
    oldest = raised.value.compact_revision
    assert current - limit - limit // 10 < oldest <= current - limit + 1
    await store.close()

    with contextlib.closing(sqlite3.connect(path)) as db:
        (rows,) = db.execute("SELECT count(*) FROM history").fetchone()
    assert rows == current - oldest + 1

    store = await SqliteStore.open(path, history_limit=limit)
    try:
        with pytest.raises(CompactedError):
            async with watching(store, "/h/", oldest - 1) as events:
                await take(events, 1)
    finally:
        await store.close()


async def test_a_second_owner_of_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await SqliteStore.open(path)
    try:
        with pytest.raises(StoreError, match="in use"):
            await SqliteStore.open(path)
        other_process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import asyncio, sys\n"
            "from kumonet.store.sqlite import SqliteStore\n"
            "asyncio.run(SqliteStore.open(sys.argv[1]))",
            str(path),
            cwd=REPO,
            stderr=subprocess.PIPE,
        )
        _, stderr = await other_process.communicate()
        assert other_process.returncode != 0
        assert b"in use by another process" in stderr
        assert await store.put("/still/mine", b"") == 2
    finally:
        await store.close()
    reopened = await SqliteStore.open(path)
    await reopened.close()


async def test_a_closed_store_refuses_requests_and_ends_watches() -> None:
    store = await SqliteStore.open(MEMORY)
    r = await store.put("/k", b"")
    async with watching(store, "/", r + 1) as events:
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)
        await store.close()
        with pytest.raises(StoreUnavailable):
            await pending
    with pytest.raises(StoreUnavailable):
        await store.get("/k")
    await store.close()  # twice is fine


async def test_a_watcher_that_falls_behind_recovers_from_history() -> None:
    store = await SqliteStore.open(MEMORY, watch_buffer=3)
    try:
        async with watching(store, "/", 2) as events:
            await store.put("/k/0", b"")
            (first,) = await take(events, 1)
            for i in range(1, 50):
                await store.put(f"/k/{i}", b"")
            await store.put("/end", b"")
            rest = await take_until(events, "/end")
        assert [e.kv.mod_revision for e in [first, *rest]] == list(range(2, 53))
    finally:
        await store.close()


async def test_refused_txns_in_a_shared_commit_leave_the_others_intact() -> None:
    store = await SqliteStore.open(MEMORY)
    try:
        lease = await store.grant_lease(60)
        r0 = await store.revision()

        async def create(i: int) -> int | None:
            key = f"/port/{i}"
            bad_lease = i % 3 == 0
            try:
                result = await store.txn(
                    [key_absent(key)],
                    [Put(key, b""), Put(f"/ip/{i}", b"", lease=-1 if bad_lease else lease.id)],
                )
            except StoreError:
                return None
            return result.revision

        # A lease of -1 is refused before the engine; an unknown lease inside it.
        outcomes = await asyncio.gather(*(create(i) for i in range(60)))
        revisions = sorted(r for r in outcomes if r is not None)
        assert revisions == list(range(r0 + 1, r0 + 41))
        keys = [kv.key for kv in (await store.range("/port/")).kvs]
        assert len(keys) == 40

        async def create_with_unknown_lease(i: int) -> None:
            await store.txn([], [Put(f"/x/{i}", b""), Put(f"/y/{i}", b"", lease=999)])

        async def create_fine(i: int) -> int:
            return await store.put(f"/z/{i}", b"")

        r1 = await store.revision()
        results = await asyncio.gather(
            *(create_with_unknown_lease(i) for i in range(20)),
            *(create_fine(i) for i in range(20)),
            return_exceptions=True,
        )
        assert all(isinstance(r, LeaseNotFound) for r in results[:20])
        assert sorted(results[20:]) == list(range(r1 + 1, r1 + 21))  # type: ignore[type-var]
        assert (await store.range("/x/")).kvs == () and (await store.range("/y/")).kvs == ()
    finally:
        await store.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, to run the store out of space for real."""
    needs(tools=("mount", "umount"))
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


async def test_a_full_disk_fails_whole_batches_and_loses_nothing_committed(
    tiny_disk: Path,
) -> None:
    filler = tiny_disk / "filler"
    store = await SqliteStore.open(tiny_disk / "store.db")
    filler.write_bytes(bytes(3 * 1024 * 1024))
    try:
        committed: dict[str, int] = {}
        failure: StoreUnavailable | None = None
        big = os.urandom(64 * 1024)
        for i in range(100):
            try:
                committed[f"/big/{i}"] = await store.put(f"/big/{i}", big)
            except StoreUnavailable as exc:
                failure = exc
                break
        assert failure is not None, "the disk never filled up"
        # Requests sharing a commit with the failing write are not failed by it.
        failed_put, read = await asyncio.gather(
            store.put("/big/again", big), store.get("/big/0"), return_exceptions=True
        )
        assert isinstance(failed_put, StoreUnavailable)
        assert isinstance(read, KeyValue) and read.mod_revision == committed["/big/0"]
        r = await store.revision()
        assert r == 1 + len(committed)
        stored = {kv.key: kv.mod_revision for kv in (await store.range("/big/")).kvs}
        assert stored == committed
        # Room again: the store goes on from where it was.
        filler.unlink()
        await store.txn([], [Delete(key) for key in list(committed)[:2]])
        assert await store.put("/small", b"ok") == r + 2
    finally:
        await store.close()
    store = await SqliteStore.open(tiny_disk / "store.db")
    try:
        kv = await store.get("/small")
        assert kv is not None and kv.mod_revision == r + 2
    finally:
        await store.close()


def test_prefix_end_bounds_exactly_the_prefixed_strings() -> None:
    assert prefix_end("/a/") == "/a0"
    assert prefix_end("") is None
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("x\ud7ff") == "x\ue000"
    for prefix in ["/a/", "/a/\U0010ffff", "/é/"]:
        end = prefix_end(prefix)
        assert end is not None
        assert prefix < end and prefix + "\U0010ffff" * 3 < end


async def test_keys_that_are_not_valid_utf8_are_refused() -> None:
    store = await SqliteStore.open(MEMORY)
    try:
        with pytest.raises(StoreError):
            await store.put("/bad/\ud800", b"")
        assert await store.revision() == 1
    finally:
        await store.close()


async def test_members_report_the_file() -> None:
    store = await SqliteStore.open(MEMORY, name="ctl-1")
    try:
        (member,) = await store.members()
        assert member.name == member.leader == "ctl-1"
        assert member.raft_state == "Leader"
        assert member.endpoint == "sqlite:///:memory:"
        assert member.commit_index == member.applied_index == 1
    finally:
        await store.close()


async def test_catching_up_pages_through_long_and_wide_history() -> None:
    store = await SqliteStore.open(MEMORY)
    try:
        # One revision wider than a history page, then many narrow ones.
        wide = [Put(f"/w/{i:05}", b"") for i in range(HISTORY_PAGE + 500)]
        await store.txn([], wide)
        for i in range(2 * HISTORY_PAGE + 10):
            await store.put(f"/n/{i % 3}", str(i).encode())
        await store.txn([], [DeletePrefix("/w/")])
        await store.put("/end", b"")
        async with watching(store, "/", 2) as events:
            got = await take_until(events, "/end")
        expected_count = 2 * len(wide) + 2 * HISTORY_PAGE + 10 + 1
        assert len(got) == expected_count
        revisions = [e.kv.mod_revision for e in got]
        assert revisions == sorted(revisions)
        assert [e.kv.key for e in got[: len(wide)]] == [op.key for op in wide]
        assert {e.kv.mod_revision for e in got[: len(wide)]} == {2}
        # A prefix that matches only some of the rows pages the same way.
        async with watching(store, "/n/1", 2) as events:
            narrow = await take(events, (2 * HISTORY_PAGE + 10) // 3)
        assert all(e.kv.key == "/n/1" for e in narrow)
    finally:
        await store.close()


async def test_catching_up_on_a_rare_prefix_scans_in_bounded_steps() -> None:
    store = await SqliteStore.open(MEMORY)
    try:
        for i in range(3 * HISTORY_SCAN + 7):
            await store.put("/rare/x" if i % 2000 == 0 else "/common", str(i).encode())
        await store.put("/rare/end", b"")
        async with watching(store, "/rare/", 1) as events:
            got = await take_until(events, "/rare/end")
        assert [e.kv.value for e in got] == [
            *(str(i).encode() for i in range(0, 3 * HISTORY_SCAN + 7, 2000)),
            b"",
        ]
    finally:
        await store.close()


async def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        await SqliteStore.open(path)
    with pytest.raises(StoreError, match="cannot open"):
        await SqliteStore.open(tmp_path)  # a directory


async def test_watch_arguments_are_checked() -> None:
    store = await SqliteStore.open(MEMORY)
    try:
        with pytest.raises(StoreError):
            async with watching(store, "/", 0) as events:
                await take(events, 1)
        with pytest.raises(StoreError):
            await store.compact(0)
        with pytest.raises(StoreError):
            await store.grant_lease(0)
    finally:
        await store.close()
