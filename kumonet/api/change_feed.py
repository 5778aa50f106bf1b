"""One store watch per prefix, shared by every agent long-polling a server.

Hundreds of agents ask "what changed under this prefix since revision R?".
Giving each its own store watch would make the store's work grow with the
number of hosts; instead each server process runs one store watch per
prefix (a :class:`ChangeFeed`) and keeps the recent events in a bounded
buffer. A request is answered from that buffer (a binary search and a join
of pre-encoded events) or parks on one shared :class:`asyncio.Event` until
the next change, so a waiting agent costs a parked coroutine and nothing
more.

The buffer is the server's window of history: a feed starts by replaying
the last ``backfill`` revisions (so agents resume across a server restart or
a move to another server), and a request for a revision older than the
buffer's floor (compacted in the store, older than the replay, or events
dropped to bound memory) gets :class:`FeedGone` and the agent re-snapshots,
exactly as after an etcd compaction.

Each feed also keeps the current state of its prefix (every shown key,
pre-encoded), kept up to date by the same events, so that snapshots are
served from memory too: a fleet of agents restarting at once costs the store
one range per prefix per server, not one per agent.

Events of one revision (one transaction) are appended without yielding to
the event loop in between (both backends deliver a revision's events
together), so a reader never sees half a transaction.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from kumonet.store.contract import (
    CompactedError,
    EventType,
    KeyValue,
    Store,
    StoreUnavailable,
    WatchEvent,
)

log = logging.getLogger(__name__)

DEFAULT_BUFFER_EVENTS = 20000
# Revisions of history a feed replays when it starts.
DEFAULT_BACKFILL_REVISIONS = 10000
# Between attempts to re-create a store watch that failed for lack of quorum
# (each attempt is itself bounded by the store's call timeout).
RESUME_PAUSE_SECONDS = 0.2
# A key is shown to agents when this holds (bookkeeping keys are not).
KeyFilter = Callable[[str], bool]


class FeedGone(Exception):
    """The revision asked for is older than what this feed can still serve."""

    def __init__(self, floor: int) -> None:
        super().__init__(f"revision too old; the oldest this server can serve is {floor}")
        self.floor = floor


def decode_value(raw: bytes) -> object:
    """Stored values are JSON; a few bookkeeping values are plain text."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def encode_item(kv: KeyValue) -> bytes:
    """A key as a snapshot shows it, encoded once."""
    return orjson.dumps({"key": kv.key, "mod_revision": kv.mod_revision,
                         "value": decode_value(kv.value)})


def encode_event(event: WatchEvent, item: bytes | None = None) -> bytes:
    """An event as agents receive it, encoded once for every request. A put
    is its snapshot item (``item``, if already encoded) with its type."""
    if event.type is EventType.DELETE:
        return orjson.dumps({"type": "delete", "key": event.kv.key,
                             "mod_revision": event.kv.mod_revision, "value": None})
    return b'{"type":"put",' + (item or encode_item(event.kv))[1:]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every key under a prefix at one revision (pre-encoded items)."""

    revision: int
    items: Sequence[bytes]

    def body(self) -> bytes:
        return b'{"revision":%d,"items":[%s]}' % (self.revision, b",".join(self.items))


@dataclass(frozen=True)
class Batch:
    """What a long-poll answers: events (pre-encoded JSON) and the revision
    to resume after (the next request asks for ``revision + 1``)."""

    revision: int
    events: Sequence[bytes]

    @functools.cached_property
    def body(self) -> bytes:
        # Cached: the pollers woken by one change share one batch.
        return b'{"revision":%d,"events":[%s]}' % (self.revision, b",".join(self.events))


@dataclass(frozen=True, slots=True)
class _Entry:
    revision: int
    key: str
    encoded: bytes


class ChangeFeed:
    """The events under one prefix since the feed started, the latest
    ``buffer_events`` of them kept."""

    def __init__(self, store: Store, prefix: str, *, shown: KeyFilter = lambda _k: True,
                 buffer_events: int = DEFAULT_BUFFER_EVENTS,
                 backfill: int = DEFAULT_BACKFILL_REVISIONS) -> None:
        self.store = store
        self.prefix = prefix
        self.backfill = backfill
        self.shown = shown
        self.buffer_events = buffer_events
        self._entries: list[_Entry] = []
        self._revisions: list[int] = []
        # Every event with revision >= floor is in the buffer.
        self.floor = 0
        # Everything up to `revision` has been seen (a valid resume point).
        self.revision = 0
        # The state of the prefix (key -> snapshot item) as read at revision
        # `_view_base`, plus every event after it.
        self._view: dict[str, bytes] = {}
        self._view_base = 0
        self._changed = asyncio.Event()
        # The store watch failed and is being re-created (majority lost).
        self.degraded = False
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._failure: BaseException | None = None
        self._closed = False
        # The last batch built, with what it was built from: pollers that
        # ask the same question after one change get the same answer object.
        self._last: tuple[tuple[object, ...], Batch | None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the store watch (idempotent); returns once it is registered,
        so a snapshot read after this is covered by the feed."""
        if self._closed:
            return
        task = self._task
        if task is None or task.done():
            self._ready.clear()
            self._failure = None
            task = self._task = asyncio.create_task(self._run(), name=f"feed {self.prefix}")
        if not self._ready.is_set():
            ready = asyncio.ensure_future(self._ready.wait())
            await asyncio.wait([ready, task], return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise StoreUnavailable(f"change feed for {self.prefix} stopped: {self._failure}")

    async def _run(self) -> None:
        try:
            # Start a little in the past: an agent that last polled another
            # server (or this one before a restart) resumes from its revision
            # instead of re-snapshotting. Replay needs no end marker: a
            # request for a revision not replayed yet simply waits for it.
            first: int | None = None
            while True:
                state = await self.store.range(self.prefix)
                if first is None:
                    first = max(1, state.revision + 1 - self.backfill)
                self._reset(first, state.kvs, state.revision)
                try:
                    await self._follow_through_outages(first)
                except CompactedError as error:
                    # The store forgot part of what we had not read yet: start
                    # over from what it still has; waiters behind get FeedGone.
                    log.info("change feed %s restarts at compacted revision %d",
                             self.prefix, error.compact_revision)
                    first = max(error.compact_revision, first + 1)
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            self._failure = error
            if not isinstance(error, StoreUnavailable):
                log.exception("change feed %s failed", self.prefix)
        finally:
            self._wake()

    @property
    def view_revision(self) -> int:
        """The revision the prefix's state in memory is exact at."""
        return max(self._view_base, self.revision)

    def _reset(self, start: int, kvs: Sequence[KeyValue], view_base: int) -> None:
        self._entries.clear()
        self._revisions.clear()
        self.floor = start
        self.revision = start - 1
        shown = self.shown
        self._view = {kv.key: encode_item(kv) for kv in kvs if shown(kv.key)}
        self._view_base = view_base
        self._ready.set()
        self._wake()

    async def _follow_through_outages(self, start: int) -> None:
        """Follow from ``start``; when the store cluster is away (majority
        lost), keep the buffer and resume from the last revision + 1 once it
        is back. Meanwhile long polls end empty at the revision reached (no
        change is known, and none can be made without a majority)."""
        next_revision = start
        while True:
            try:
                await self._follow(next_revision)
                return
            except StoreUnavailable as error:
                if not self.degraded:
                    log.warning("change feed %s waits for the store: %s", self.prefix, error)
                self.degraded = True
            next_revision = self.revision + 1
            await asyncio.sleep(RESUME_PAUSE_SECONDS)

    async def _follow(self, start: int) -> None:
        watch = self.store.watch(self.prefix, start)
        try:
            async for event in watch:
                if self.degraded:
                    log.info("change feed %s resumed at revision %d", self.prefix,
                             event.kv.mod_revision)
                    self.degraded = False
                self._append(event)
        finally:
            await watch.aclose()  # type: ignore[attr-defined]

    def _append(self, event: WatchEvent) -> None:
        revision = event.kv.mod_revision
        key = event.kv.key
        if self.shown(key):
            item: bytes | None = None
            if revision > self._view_base:
                # Replayed events up to the range the view was read at are in
                # it already; later ones are applied.
                if event.type is EventType.DELETE:
                    self._view.pop(key, None)
                else:
                    item = self._view[key] = encode_item(event.kv)
            self._entries.append(_Entry(revision, key, encode_event(event, item)))
            self._revisions.append(revision)
            if len(self._entries) > 2 * self.buffer_events:
                # Trim in bulk (amortized O(1)); keep whole revisions so the
                # floor is exact.
                cut = len(self._entries) - self.buffer_events
                while cut < len(self._revisions) and \
                        self._revisions[cut] == self._revisions[cut - 1]:
                    cut += 1
                self.floor = self._revisions[cut - 1] + 1
                del self._entries[:cut]
                del self._revisions[:cut]
        if revision > self.revision:
            self.revision = revision
            self._wake()

    def snapshot(self, key_prefix: str) -> Snapshot:
        """The shown keys under ``key_prefix`` (sorted), at ``view_revision``.
        Call after :meth:`start`."""
        self._raise_failure()
        items = [item for key, item in sorted(self._view.items())
                 if key.startswith(key_prefix)]
        return Snapshot(self.view_revision, items)

    def _wake(self) -> None:
        # One event for all waiters: setting it resumes them on the loop's
        # next turn, after this revision's remaining events were appended.
        self._changed.set()
        self._changed = asyncio.Event()

    def _collect(self, since: int, key_prefix: str, limit: int) -> Batch | None:
        question = (since, key_prefix, limit, self.revision, self.floor, len(self._entries))
        last = self._last
        if last is not None and last[0] == question:
            return last[1]
        batch = self._build(since, key_prefix, limit)
        self._last = (question, batch)
        return batch

    def _build(self, since: int, key_prefix: str, limit: int) -> Batch | None:
        start = bisect.bisect_left(self._revisions, since)
        if start >= len(self._entries):
            return None
        chosen: list[bytes] = []
        last = 0
        for entry in self._entries[start:]:
            if len(chosen) >= limit and entry.revision != last:
                return Batch(last, chosen)
            if entry.key.startswith(key_prefix):
                chosen.append(entry.encoded)
                last = entry.revision
        return Batch(self.revision, chosen) if chosen else None

    async def changes(self, since: int, *, key_prefix: str | None = None, wait_seconds: float,
                      limit: int = 1000) -> Batch:
        """Events at revision >= ``since`` under ``key_prefix`` (default: the
        feed's prefix) as soon as there are any, capped at ``limit`` events
        (never splitting a revision); after ``wait_seconds`` an empty batch
        with the revision reached. :class:`FeedGone` if ``since`` is older
        than the buffer."""
        await self.start()
        if since > self.view_revision + 1 and since > await self.store.revision() + 1:
            # A revision the store never reached: the agent's state comes from
            # another store (restored, or replaced). Waiting would hide every
            # change until the store catches up; re-snapshotting fixes it.
            raise FeedGone(self.floor)
        wanted = key_prefix or self.prefix
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            self._raise_failure()
            if self._closed:
                return Batch(max(self.revision, since - 1), ())
            if since < self.floor:
                raise FeedGone(self.floor)
            batch = self._collect(since, wanted, limit)
            if batch is not None:
                return batch
            # Nothing yet: everything below `revision` was seen and none of it
            # concerns the caller, so it may resume after `revision`.
            remaining = deadline - loop.time()
            if remaining <= 0:
                return Batch(max(self.revision, since - 1), ())
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()
            if not self.running and not self._closed:
                self._raise_failure()
                await self.start()

    async def close(self) -> None:
        """Stop the store watch and answer every waiter now."""
        self._closed = True
        self._wake()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class ChangeFeeds:
    """The feeds of one server process, one per allowed root prefix, started
    on first use. A request for a sub-prefix is served by its root's feed
    (filtered), so sub-prefixes never add store watches."""

    def __init__(self, store: Store, roots: Sequence[str], *, shown: KeyFilter = lambda _k: True,
                 buffer_events: int = DEFAULT_BUFFER_EVENTS,
                 backfill: int = DEFAULT_BACKFILL_REVISIONS) -> None:
        self.feeds = {root: ChangeFeed(store, root, shown=shown, buffer_events=buffer_events,
                                       backfill=backfill)
                      for root in roots}

    def root_of(self, prefix: str) -> ChangeFeed | None:
        for root, feed in self.feeds.items():
            if prefix.startswith(root):
                return feed
        return None

    async def close(self) -> None:
        for feed in self.feeds.values():
            await feed.close()
