"""Helpers for tests that read watches: every wait is bounded by a generous
timeout that only guards against hanging, never an expectation of speed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kumonet.store.contract import Store, WatchEvent

HANG_GUARD = 20.0  # seconds; a guard against hanging, never an expectation


@asynccontextmanager
async def watching(
    store: Store, prefix: str, start_revision: int
) -> AsyncIterator[AsyncIterator[WatchEvent]]:
    iterator = store.watch(prefix, start_revision)
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def take(events: AsyncIterator[WatchEvent], count: int) -> list[WatchEvent]:
    taken: list[WatchEvent] = []
    async with asyncio.timeout(HANG_GUARD):
        while len(taken) < count:
            taken.append(await anext(events))
    return taken


async def take_until(events: AsyncIterator[WatchEvent], key: str) -> list[WatchEvent]:
    """Events up to and including the first one on ``key`` (a sentinel written
    after the writes under test: everything before it must have arrived, and
    nothing may arrive twice)."""
    taken: list[WatchEvent] = []
    async with asyncio.timeout(HANG_GUARD):
        while not taken or taken[-1].kv.key != key:
            taken.append(await anext(events))
    return taken
