"""The embedded store: one SQLite file owned by one server process.

Usage::

    store = await SqliteStore.open("/var/lib/kumonet/store.db")
    result = await store.txn([key_absent(k)], [Put(k, b"...")])
    await store.close()

How it works, and why:

* One thread (the *engine*) owns the only connection: sqlite3 connections are
  bound to the thread that made them, and a single writer makes the revision
  counter, compares and lease bookkeeping trivially consistent. The event loop
  never touches the disk; it queues requests and awaits futures.
* Group commit: the engine takes every request queued while it was busy and
  runs them in one SQLite transaction with one fsync (``synchronous=FULL`` in
  WAL mode). Each ``txn`` still gets its own revision and is atomic, because a
  request may only refuse (raise :class:`StoreError`) before it writes
  anything. Any other failure (disk full, I/O error) rolls the batch back and
  re-runs its requests one commit each, so that only those that hit the
  failure fail, with :class:`StoreUnavailable`. Replies (reads included) are
  delivered only after the batch is durable.
* ``locking_mode=EXCLUSIVE`` makes the process that opened the file its only
  user, so nothing else can move the revision behind the engine's back.
* Watches are fanned out in-process: a watcher catches up from the
  ``history`` table up to the last revision already delivered to the loop,
  then receives the live events of later revisions, so there is neither gap
  nor repeat. A watcher that does not keep up loses its live buffer and goes
  back to the history table (or gets :class:`CompactedError`).
* ``get`` of a recently read key and ``revision`` are answered on the event
  loop from what has been delivered there (every reply and event passes
  through it first, so these answers are linearizable); everything else is a
  trip to the engine.
* History is compacted automatically to the last ``history_limit`` revisions.
* Leases expire inside the engine (it wakes at the earliest deadline); the
  deadlines are wall-clock times stored in the file, and reopening the file
  gives every lease its full TTL again, as etcd does after a leader change.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from kumonet.store.contract import (
    CompactedError,
    Compare,
    Delete,
    DeletePrefix,
    EventType,
    KeyValue,
    Lease,
    LeaseNotFound,
    MemberStatus,
    Op,
    Put,
    RangeResult,
    StoreError,
    StoreUnavailable,
    TxnResult,
    WatchEvent,
)

T = TypeVar("T")

MEMORY: Final = ":memory:"
DEFAULT_HISTORY_LIMIT: Final = 100_000
DEFAULT_MAX_BATCH: Final = 512
# A watcher holding more undelivered revisions than this is switched back to
# reading history, so a stalled consumer cannot grow memory without bound.
WATCH_BUFFER_LIMIT: Final = 10_000
HISTORY_PAGE: Final = 1_000
HISTORY_SCAN: Final = 5_000
_ROW_CACHE_LIMIT: Final = 20_000
READ_CACHE_LIMIT: Final = 20_000
_SCHEMA_VERSION: Final = 1

_PUT: Final = 0
_DELETE: Final = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease);
CREATE TABLE IF NOT EXISTS history (
    revision INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    type INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL,
    prev_value BLOB,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lease (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl INTEGER NOT NULL,
    deadline REAL NOT NULL
);
"""

# (value, create_revision, mod_revision, version, lease) of a live key.
_Row = tuple[bytes, int, int, int, int]
_Events = tuple[WatchEvent, ...]
_NO_EVENTS: _Events = ()
_HistoryRow = tuple[int, int, int, str, bytes, int, int, int, bytes | None]

_TARGET_INDEX: Final = {"create_revision": 1, "mod_revision": 2, "version": 3}
_COMPARE_OPS: Final = frozenset(("==", "!=", "<", ">"))


def prefix_end(prefix: str) -> str | None:
    """The smallest string above every string that starts with ``prefix``
    (``None``: no bound, for ``""`` or a prefix of only U+10FFFF)."""
    stem = prefix
    while stem:
        code = ord(stem[-1]) + 1
        if code <= 0x10FFFF:
            if 0xD800 <= code <= 0xDFFF:
                # Surrogates cannot be encoded in UTF-8; the next encodable
                # code point keeps the order.
                code = 0xE000
            return stem[:-1] + chr(code)
        stem = stem[:-1]
    return None


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise StoreError(f"a key must be a non-empty str, not {key!r}")
    if "\x00" in key:
        raise StoreError(f"a key must not contain NUL: {key!r}")
    if not key.isascii():
        try:
            key.encode()
        except UnicodeEncodeError:
            raise StoreError(f"a key must be valid UTF-8: {key!r}") from None
    return key


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str) or "\x00" in prefix:
        raise StoreError(f"a prefix must be a str without NUL, not {prefix!r}")
    return _check_key(prefix) if prefix else prefix


def _check_lease_id(lease: object) -> int:
    if not isinstance(lease, int) or isinstance(lease, bool) or lease < 0:
        raise StoreError(f"a lease id must be an int >= 0, not {lease!r}")
    return lease


def check_ops(ops: Sequence[Op]) -> None:
    """Refuse malformed ops and two ops on one key (also through a
    ``DeletePrefix`` that covers a ``Put`` or ``Delete`` key)."""
    keys: set[str] = set()
    prefixes: list[str] = []
    for op in ops:
        if isinstance(op, Put):
            key = _check_key(op.key)
            if not isinstance(op.value, bytes):
                raise StoreError(f"a value must be bytes, not {type(op.value).__name__}")
            _check_lease_id(op.lease)
        elif isinstance(op, Delete):
            key = _check_key(op.key)
        elif isinstance(op, DeletePrefix):
            prefixes.append(_check_prefix(op.prefix))
            continue
        else:
            raise StoreError(f"not an op: {op!r}")
        if key in keys:
            raise StoreError(f"two ops on key {key!r} in one transaction")
        keys.add(key)
    for prefix in prefixes:
        for key in keys:
            if key.startswith(prefix):
                raise StoreError(f"key {key!r} is also deleted by DeletePrefix({prefix!r})")


def check_compares(compares: Sequence[Compare]) -> None:
    for compare in compares:
        if not isinstance(compare, Compare):
            raise StoreError(f"not a Compare: {compare!r}")
        _check_key(compare.key)
        if compare.op not in _COMPARE_OPS:
            raise StoreError(f"unknown compare op {compare.op!r}")
        if compare.target != "value" and compare.target not in _TARGET_INDEX:
            raise StoreError(f"unknown compare target {compare.target!r}")


def _holds(actual: int | bytes, op: str, expected: int | bytes) -> bool:
    if op == "==":
        return actual == expected
    if op == "!=":
        return actual != expected
    if op == "<":
        return actual < expected  # type: ignore[operator]
    return actual > expected  # type: ignore[operator]


def _event_from_history(row: _HistoryRow) -> WatchEvent:
    revision, _seq, kind, key, value, create, version, lease, prev = row
    if kind == _PUT:
        kv = KeyValue(key, value, create, revision, version, lease)
        return WatchEvent(EventType.PUT, kv, prev)
    return WatchEvent(EventType.DELETE, KeyValue(key, b"", 0, revision, 0, 0), prev)


class _Engine:
    """Owns the connection; every method runs on the engine thread.

    Request methods return ``(result, events)``; they may raise
    :class:`StoreError` only before they have written anything.
    """

    def __init__(self, path: str, history_limit: int) -> None:
        self.path = path
        self.history_limit = history_limit
        self.revision = 1
        self.compact_revision = 0
        self._conn: sqlite3.Connection | None = None
        # Rows known to be current: the engine is the only writer, so this is
        # exact (None = absent). Dropped whenever a batch rolls back.
        self._rows: dict[str, _Row | None] = {}
        self._history: list[_HistoryRow] = []
        self._leases: dict[int, tuple[int, float]] = {}
        self._deadlines: list[tuple[float, int]] = []

    # -- life cycle ---------------------------------------------------------

    def connect(self) -> None:
        try:
            if self.path != MEMORY:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=0, cached_statements=64
            )
            self._prepare(self._conn)
        except (sqlite3.Error, OSError) as exc:
            self._close_after_failure()
            if "locked" in str(exc):
                raise StoreError(f"{self.path} is in use by another process") from exc
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        except BaseException:
            self._close_after_failure()
            raise

    def _close_after_failure(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            self._conn.close()
            self._conn = None

    def _prepare(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        # Truncate the WAL after a checkpoint if a large transaction grew it.
        conn.execute("PRAGMA journal_size_limit=67108864")
        # Take the exclusive lock now, so that a second process fails here
        # with a clear message rather than later.
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        stored = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        schema = stored.get("schema", _SCHEMA_VERSION)
        if schema != _SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema {schema}, expected {_SCHEMA_VERSION}")
        self.revision = stored.get("revision", 1)
        self.compact_revision = stored.get("compact_revision", 0)
        conn.executemany(
            "INSERT OR IGNORE INTO meta (name, value) VALUES (?, ?)",
            [
                ("schema", _SCHEMA_VERSION),
                ("revision", self.revision),
                ("compact_revision", self.compact_revision),
            ],
        )
        # A restart gives every lease its full TTL again: its holder may not
        # have been able to reach us while we were down.
        conn.execute("UPDATE lease SET deadline = ? + ttl", (time.time(),))
        conn.execute("COMMIT")
        self._load_leases()

    def disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "engine not connected"
        return self._conn

    def _load_leases(self) -> None:
        self._leases = {
            lease_id: (ttl, deadline)
            for lease_id, ttl, deadline in self.conn.execute("SELECT id, ttl, deadline FROM lease")
        }
        self._deadlines = [(deadline, lease_id) for lease_id, (_, deadline) in self._leases.items()]
        heapq.heapify(self._deadlines)

    # -- batches ------------------------------------------------------------

    def seconds_to_next_expiry(self) -> float | None:
        while self._deadlines:
            deadline, lease_id = self._deadlines[0]
            current = self._leases.get(lease_id)
            if current is None or current[1] != deadline:
                heapq.heappop(self._deadlines)  # revoked or renewed since
                continue
            return max(0.0, deadline - time.time())
        return None

    def begin_batch(self) -> tuple[int, int]:
        return self.revision, self.compact_revision

    def commit_batch(self) -> None:
        conn = self.conn
        if not conn.in_transaction:
            return
        self._flush_history()
        self._compact_automatically()
        conn.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (self.revision,))
        conn.execute("COMMIT")

    def abort_batch(self, saved: tuple[int, int]) -> None:
        self.revision, self.compact_revision = saved
        self._rows.clear()
        self._history.clear()
        conn = self._conn
        if conn is not None:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._load_leases()

    def _write(self) -> sqlite3.Connection:
        conn = self.conn
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        return conn

    def _flush_history(self) -> None:
        if self._history:
            self._write().executemany(
                "INSERT INTO history (revision, seq, type, key, value, create_revision,"
                " version, lease, prev_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self._history,
            )
            self._history.clear()

    def _compact_automatically(self) -> None:
        # Compact in steps (a tenth of the bound, at most 1000 revisions, about
        # a millisecond of deleting) rather than on every commit.
        slack = max(1, min(1_000, self.history_limit // 10))
        if self.revision - self.compact_revision >= self.history_limit + slack:
            self._compact_to(self.revision - self.history_limit + 1)

    def _compact_to(self, revision: int) -> None:
        self._flush_history()
        conn = self._write()
        conn.execute("DELETE FROM history WHERE revision < ?", (revision,))
        conn.execute("UPDATE meta SET value = ? WHERE name = 'compact_revision'", (revision,))
        self.compact_revision = revision

    # -- key state ------------------------------------------------------------

    def _row(self, key: str) -> _Row | None:
        try:
            return self._rows[key]
        except KeyError:
            pass
        found = self.conn.execute(
            "SELECT value, create_revision, mod_revision, version, lease FROM kv WHERE key = ?",
            (key,),
        ).fetchone()
        if len(self._rows) >= _ROW_CACHE_LIMIT:
            self._rows.clear()
        self._rows[key] = found
        return found

    def _rows_under(self, prefix: str) -> list[tuple[str, bytes, int, int, int, int]]:
        end = prefix_end(prefix)
        columns = "key, value, create_revision, mod_revision, version, lease"
        if end is None:
            cursor = self.conn.execute(
                f"SELECT {columns} FROM kv WHERE key >= ? ORDER BY key", (prefix,)
            )
        else:
            cursor = self.conn.execute(
                f"SELECT {columns} FROM kv WHERE key >= ? AND key < ? ORDER BY key",
                (prefix, end),
            )
        return cursor.fetchall()

    def _put(self, key: str, value: bytes, lease: int, revision: int, seq: int) -> WatchEvent:
        old = self._row(key)
        if old is None:
            create, version, prev = revision, 1, None
        else:
            create, version, prev = old[1], old[3] + 1, old[0]
        self._write().execute(
            "INSERT OR REPLACE INTO kv (key, value, create_revision, mod_revision, version, lease)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (key, value, create, revision, version, lease),
        )
        self._rows[key] = (value, create, revision, version, lease)
        self._history.append((revision, seq, _PUT, key, value, create, version, lease, prev))
        kv = KeyValue(key, value, create, revision, version, lease)
        return WatchEvent(EventType.PUT, kv, prev)

    def _delete(self, key: str, prev: bytes, revision: int, seq: int) -> WatchEvent:
        self._write().execute("DELETE FROM kv WHERE key = ?", (key,))
        self._rows[key] = None
        self._history.append((revision, seq, _DELETE, key, b"", 0, 0, 0, prev))
        return WatchEvent(EventType.DELETE, KeyValue(key, b"", 0, revision, 0, 0), prev)

    def _apply(self, ops: Iterable[Op]) -> _Events:
        revision = self.revision + 1
        events: list[WatchEvent] = []
        for op in ops:
            if isinstance(op, Put):
                events.append(self._put(op.key, op.value, op.lease, revision, len(events)))
            elif isinstance(op, Delete):
                old = self._row(op.key)
                if old is not None:
                    events.append(self._delete(op.key, old[0], revision, len(events)))
            else:
                for row in self._rows_under(op.prefix):
                    events.append(self._delete(row[0], row[1], revision, len(events)))
        if events:
            self.revision = revision
        return tuple(events)

    def _compare(self, compare: Compare) -> bool:
        row = self._row(compare.key)
        if compare.target == "value":
            # As etcd: a missing value cannot be compared, not even with "!=".
            return row is not None and _holds(row[0], compare.op, compare.value)
        actual = 0 if row is None else row[_TARGET_INDEX[compare.target]]
        return _holds(actual, compare.op, compare.value)

    def _check_leases(self, ops: Sequence[Op]) -> None:
        for op in ops:
            if isinstance(op, Put) and op.lease and op.lease not in self._leases:
                raise LeaseNotFound(f"lease {op.lease} not found")

    # -- requests -----------------------------------------------------------

    def get(self, key: str) -> tuple[tuple[KeyValue | None, int], _Events]:
        """The key, and the revision it was read at."""
        row = self._row(key)
        return (None if row is None else KeyValue(key, *row), self.revision), _NO_EVENTS

    def range(self, prefix: str) -> tuple[RangeResult, _Events]:
        kvs = tuple(KeyValue(*row) for row in self._rows_under(prefix))
        return RangeResult(kvs, self.revision), _NO_EVENTS

    def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]
    ) -> tuple[TxnResult, _Events]:
        succeeded = all(self._compare(compare) for compare in compares)
        ops = success if succeeded else failure
        self._check_leases(ops)
        events = self._apply(ops)
        return TxnResult(succeeded, self.revision), events

    def write(self, ops: Sequence[Op]) -> tuple[int, _Events]:
        self._check_leases(ops)
        events = self._apply(ops)
        return self.revision, events

    def compact(self, revision: int) -> tuple[None, _Events]:
        if revision > self.revision:
            raise StoreError(f"cannot compact to {revision}: the store is at {self.revision}")
        if revision > self.compact_revision:
            self._compact_to(revision)
        return None, _NO_EVENTS

    def history(
        self, prefix: str, first: int, last: int
    ) -> tuple[tuple[list[WatchEvent], int], _Events]:
        """Events under ``prefix`` in revisions ``first..last``, a page at a
        time; returns them and the last revision the page covers fully."""
        if first < self.compact_revision:
            raise CompactedError(self.compact_revision)
        self._flush_history()
        # Bound the revisions one page scans too, so that catching up on a
        # narrow prefix never holds the engine for long.
        last = min(last, first + HISTORY_SCAN - 1)
        columns = "revision, seq, type, key, value, create_revision, version, lease, prev_value"
        where = "revision >= ? AND revision <= ?"
        args: list[object] = [first, last]
        end = prefix_end(prefix)
        if prefix:
            where += " AND key >= ?"
            args.append(prefix)
        if end is not None:
            where += " AND key < ?"
            args.append(end)
        rows: list[_HistoryRow] = self.conn.execute(
            f"SELECT {columns} FROM history WHERE {where} ORDER BY revision, seq LIMIT ?",
            (*args, HISTORY_PAGE),
        ).fetchall()
        covered = last
        if len(rows) == HISTORY_PAGE:
            final = rows[-1][0]
            if rows[0][0] == final:
                # One revision larger than a page: take all of it at once.
                args[0] = args[1] = final
                rows = self.conn.execute(
                    f"SELECT {columns} FROM history WHERE {where} ORDER BY revision, seq",
                    args,
                ).fetchall()
                covered = final
            else:
                rows = [row for row in rows if row[0] != final]
                covered = final - 1
        return ([_event_from_history(row) for row in rows], covered), _NO_EVENTS

    def grant_lease(self, ttl: int) -> tuple[Lease, _Events]:
        deadline = time.time() + ttl
        cursor = self._write().execute(
            "INSERT INTO lease (ttl, deadline) VALUES (?, ?)", (ttl, deadline)
        )
        lease_id = cursor.lastrowid
        assert lease_id is not None
        self._leases[lease_id] = (ttl, deadline)
        heapq.heappush(self._deadlines, (deadline, lease_id))
        return Lease(lease_id, ttl), _NO_EVENTS

    def keepalive_lease(self, lease_id: int) -> tuple[int, _Events]:
        found = self._leases.get(lease_id)
        if found is None:
            raise LeaseNotFound(f"lease {lease_id} not found")
        ttl = found[0]
        deadline = time.time() + ttl
        self._write().execute("UPDATE lease SET deadline = ? WHERE id = ?", (deadline, lease_id))
        self._leases[lease_id] = (ttl, deadline)
        heapq.heappush(self._deadlines, (deadline, lease_id))
        return ttl, _NO_EVENTS

    def revoke_lease(self, lease_id: int) -> tuple[None, _Events]:
        if lease_id not in self._leases:
            raise LeaseNotFound(f"lease {lease_id} not found")
        return None, self._drop_lease(lease_id)

    def _drop_lease(self, lease_id: int) -> _Events:
        conn = self._write()
        keys = [
            key
            for (key,) in conn.execute(
                "SELECT key FROM kv WHERE lease = ? ORDER BY key", (lease_id,)
            )
        ]
        conn.execute("DELETE FROM lease WHERE id = ?", (lease_id,))
        del self._leases[lease_id]
        return self._apply([Delete(key) for key in keys])

    def expire_leases(self) -> list[_Events]:
        """Revoke every lease past its deadline, one revision each."""
        now = time.time()
        expired: list[_Events] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, lease_id = heapq.heappop(self._deadlines)
            current = self._leases.get(lease_id)
            if current is None or current[1] != deadline:
                continue
            events = self._drop_lease(lease_id)
            if events:
                expired.append(events)
        return expired

    def status(self, name: str) -> tuple[MemberStatus, _Events]:
        size: int | None = None
        if self.path != MEMORY:
            with contextlib.suppress(OSError):
                size = os.path.getsize(self.path) + os.path.getsize(self.path + "-wal")
        member = MemberStatus(
            name=name,
            endpoint=f"sqlite:///{self.path}",
            raft_state="Leader",
            leader=name,
            raft_term=1,
            commit_index=self.revision,
            applied_index=self.revision,
            db_size=size,
        )
        return member, _NO_EVENTS


# A queued request: the engine method, its arguments and the future to settle.
_Request = tuple[Callable[..., tuple[Any, _Events]], tuple[Any, ...], "asyncio.Future[Any]"]
# An outcome: (future or None for lease expiry, result, error, events).
_Outcome = tuple["asyncio.Future[Any] | None", Any, "BaseException | None", _Events]

_STOP: Final = object()


class _BatchFailed(Exception):
    def __init__(self, error: StoreUnavailable) -> None:
        super().__init__(str(error))
        self.error = error


class _Watcher:
    """The live side of one watch: events of revisions delivered after it
    registered, filtered by prefix."""

    __slots__ = ("buffer_limit", "overflowed", "pending", "prefix", "wakeup")

    def __init__(self, prefix: str, buffer_limit: int) -> None:
        self.prefix = prefix
        self.buffer_limit = buffer_limit
        self.pending: deque[_Events] = deque()
        self.overflowed = False
        self.wakeup = asyncio.Event()

    def restart(self) -> None:
        self.pending.clear()
        self.overflowed = False

    def offer(self, events: _Events) -> None:
        if self.overflowed:
            return
        prefix = self.prefix
        matched = tuple(event for event in events if event.kv.key.startswith(prefix))
        if not matched:
            return
        if len(self.pending) >= self.buffer_limit:
            self.overflowed = True
            self.pending.clear()
        else:
            self.pending.append(matched)
        self.wakeup.set()


class SqliteStore:
    """The embedded :class:`~kumonet.store.contract.Store`. Build it with
    :meth:`open`; close it with :meth:`close`."""

    def __init__(
        self,
        engine: _Engine,
        loop: asyncio.AbstractEventLoop,
        *,
        name: str,
        max_batch: int,
        watch_buffer: int,
    ) -> None:
        self._engine = engine
        self._loop = loop
        self._name = name
        self._max_batch = max_batch
        self._watch_buffer = watch_buffer
        self._requests: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._watchers: set[_Watcher] = set()
        # Keys read lately, exact as of the last delivered revision: the
        # event loop answers `get` for them without a trip to the engine.
        self._read_cache: dict[str, KeyValue | None] = {}
        self._published = engine.revision
        self._closed = False
        self._unavailable = "the store is closed"
        self._ready: asyncio.Future[None] = loop.create_future()
        self._stopped: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._serve, name=f"kumonet-sqlite:{engine.path}", daemon=True
        )

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        max_batch: int = DEFAULT_MAX_BATCH,
        watch_buffer: int = WATCH_BUFFER_LIMIT,
        name: str = "embedded",
    ) -> SqliteStore:
        """Open (or create) the store file at ``path`` (``":memory:"`` for a
        throw-away store); :class:`StoreError` if it cannot be opened or
        another process has it open.

        ``history_limit`` revisions of history are kept for watches;
        ``max_batch`` bounds how many requests share one commit;
        ``watch_buffer`` bounds the revisions buffered for a watcher that
        does not keep up (it then re-reads history); ``name`` is the member
        name :meth:`members` reports."""
        for option, value in (
            ("history_limit", history_limit),
            ("max_batch", max_batch),
            ("watch_buffer", watch_buffer),
        ):
            if value < 1:
                raise ValueError(f"{option} must be at least 1, not {value}")
        engine = _Engine(os.fspath(path), history_limit)
        loop = asyncio.get_running_loop()
        store = cls(engine, loop, name=name, max_batch=max_batch, watch_buffer=watch_buffer)
        store._thread.start()
        await store._ready
        store._published = engine.revision
        return store

    @property
    def path(self) -> str:
        return self._engine.path

    # -- the engine thread ----------------------------------------------------

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody to tell
            self._loop.call_soon_threadsafe(callback, *args)

    def _serve(self) -> None:
        engine = self._engine
        try:
            engine.connect()
        except BaseException as exc:
            self._post(_settle, self._ready, None, exc)
            return
        self._post(_settle, self._ready, None, None)
        crash: BaseException | None = None
        try:
            self._serve_batches()
        except BaseException as exc:  # a bug: stop serving rather than hang callers
            crash = exc
        finally:
            with contextlib.suppress(sqlite3.Error):
                engine.disconnect()
            self._post(self._engine_stopped, crash)

    def _serve_batches(self) -> None:
        engine = self._engine
        requests = self._requests
        while True:
            batch: list[_Request | object] = []
            with contextlib.suppress(queue.Empty):
                batch.append(requests.get(timeout=engine.seconds_to_next_expiry()))
            while len(batch) < self._max_batch:
                try:
                    batch.append(requests.get_nowait())
                except queue.Empty:
                    break
            outcomes = self._run_batch(batch)
            if outcomes:
                self._post(self._deliver, outcomes)
            if _STOP in batch:
                return

    def _run_batch(self, batch: list[_Request | object]) -> list[_Outcome]:
        requests = [item for item in batch if item is not _STOP]
        try:
            return self._run_in_one_commit(requests, expire_leases=True)
        except _BatchFailed:
            pass
        # Something failed below the contract (disk full, I/O error, a bug):
        # run each request on its own so that only the ones that hit the
        # failure fail (reads, for one, still work on a full disk).
        outcomes: list[_Outcome] = []
        for request in requests:
            try:
                outcomes.extend(self._run_in_one_commit([request], expire_leases=False))
            except _BatchFailed as failed:
                outcomes.append((request[2], None, failed.error, _NO_EVENTS))  # type: ignore[index]
        return outcomes

    def _run_in_one_commit(
        self, requests: list[_Request | object], *, expire_leases: bool
    ) -> list[_Outcome]:
        engine = self._engine
        saved = engine.begin_batch()
        outcomes: list[_Outcome] = []
        committing = False
        try:
            if expire_leases:
                for events in engine.expire_leases():
                    outcomes.append((None, None, None, events))
            for item in requests:
                method, args, future = item  # type: ignore[misc]
                try:
                    result, events = method(*args)
                except StoreError as exc:
                    outcomes.append((future, None, exc, _NO_EVENTS))
                else:
                    outcomes.append((future, result, None, events))
            committing = True
            engine.commit_batch()
        except Exception as exc:
            cause: Exception = exc
            try:
                engine.abort_batch(saved)
            except Exception as abort_exc:  # the file is unusable
                cause = abort_exc
            # A failed COMMIT may still have reached the disk.
            error = StoreUnavailable(
                f"sqlite store {engine.path}: {cause}", indeterminate=committing
            )
            error.__cause__ = cause
            raise _BatchFailed(error) from cause
        return outcomes

    # -- the event loop side --------------------------------------------------

    def _engine_stopped(self, crash: BaseException | None) -> None:
        if crash is not None:
            self._unavailable = f"the store engine failed: {crash!r}"
        self._closed = True
        for watcher in self._watchers:
            watcher.wakeup.set()
        # Whatever is still queued will never be served.
        error = StoreUnavailable(self._unavailable)
        while True:
            try:
                item = self._requests.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                _settle(item[2], None, error)  # type: ignore[index]
        _settle(self._stopped, None, None)

    def _deliver(self, outcomes: list[_Outcome]) -> None:
        for future, result, error, events in outcomes:
            if future is not None:
                _settle(future, result, error)
            if events:
                self._published = events[0].kv.mod_revision
                cache = self._read_cache
                for event in events:
                    if event.kv.key in cache:
                        cache[event.kv.key] = event.kv if event.type is EventType.PUT else None
                for watcher in self._watchers:
                    watcher.offer(events)

    async def _call(self, method: Callable[..., tuple[T, _Events]], *args: Any) -> T:
        if self._closed:
            raise StoreUnavailable(self._unavailable)
        future: asyncio.Future[T] = self._loop.create_future()
        self._requests.put((method, args, future))
        return await future

    async def get(self, key: str) -> KeyValue | None:
        _check_key(key)
        if self._closed:
            raise StoreUnavailable(self._unavailable)
        try:
            return self._read_cache[key]
        except KeyError:
            pass
        kv, read_at = await self._call(self._engine.get, key)
        if read_at == self._published:
            # Nothing was delivered since the read, and whatever is delivered
            # from now on updates the entry: it stays exact.
            if len(self._read_cache) >= READ_CACHE_LIMIT:
                self._read_cache.clear()
            self._read_cache[key] = kv
        return kv

    async def range(self, prefix: str) -> RangeResult:
        return await self._call(self._engine.range, _check_prefix(prefix))

    async def revision(self) -> int:
        # Every change a caller can know of (a reply, an event) was delivered
        # here first, so the delivered revision is a linearizable answer.
        if self._closed:
            raise StoreUnavailable(self._unavailable)
        return self._published

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        ops = (Put(key, value, lease),)
        check_ops(ops)
        return await self._call(self._engine.write, ops)

    async def delete(self, key: str) -> int:
        ops = (Delete(key),)
        check_ops(ops)
        return await self._call(self._engine.write, ops)

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        compares, success, failure = tuple(compares), tuple(success), tuple(failure)
        check_compares(compares)
        check_ops(success)
        check_ops(failure)
        return await self._call(self._engine.txn, compares, success, failure)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        _check_prefix(prefix)
        if not isinstance(start_revision, int) or start_revision < 1:
            raise StoreError(f"start_revision must be an int >= 1, not {start_revision!r}")
        if self._closed:
            raise StoreUnavailable(self._unavailable)
        watcher = _Watcher(prefix, self._watch_buffer)
        self._watchers.add(watcher)
        next_revision = start_revision
        try:
            while True:
                # Registration point: live events from here on are buffered;
                # everything up to `caught_up` comes from history.
                watcher.restart()
                caught_up = self._published
                while next_revision <= caught_up:
                    page, covered = await self._call(
                        self._engine.history, prefix, next_revision, caught_up
                    )
                    for event in page:
                        yield event
                    next_revision = covered + 1
                while not watcher.overflowed:
                    if not watcher.pending:
                        if self._closed:
                            raise StoreUnavailable(self._unavailable)
                        watcher.wakeup.clear()
                        await watcher.wakeup.wait()
                        continue
                    events = watcher.pending.popleft()
                    revision = events[0].kv.mod_revision
                    if revision >= next_revision:
                        for event in events:
                            yield event
                        next_revision = revision + 1
        finally:
            self._watchers.discard(watcher)

    async def grant_lease(self, ttl: int) -> Lease:
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 1:
            raise StoreError(f"a lease TTL must be an int >= 1, not {ttl!r}")
        return await self._call(self._engine.grant_lease, ttl)

    async def keepalive_lease(self, lease_id: int) -> int:
        return await self._call(self._engine.keepalive_lease, _check_lease_id(lease_id))

    async def revoke_lease(self, lease_id: int) -> None:
        await self._call(self._engine.revoke_lease, _check_lease_id(lease_id))

    async def compact(self, revision: int) -> None:
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
            raise StoreError(f"a revision must be an int >= 1, not {revision!r}")
        await self._call(self._engine.compact, revision)

    async def members(self) -> Sequence[MemberStatus]:
        return (await self._call(self._engine.status, self._name),)

    async def close(self) -> None:
        """Finish queued requests, close the file and end every watch (they
        raise :class:`StoreUnavailable`). Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._requests.put(_STOP)
            for watcher in self._watchers:
                watcher.wakeup.set()
        await asyncio.shield(self._stopped)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller gave up (cancelled); the outcome stands
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
