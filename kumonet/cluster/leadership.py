"""Leadership for singleton work (router rescheduling, cleanup), over a store lease.

Every server runs a :class:`Leadership` for the same name; at most one leads:

* Campaign: grant a lease and create ``/operational/default/leaders/<name>``
  with it, guarded by ``key_absent``. Whoever creates the key leads.
* Lead: keep the lease alive (every ``ttl / 3`` seconds) and run the work.
  The key's ``create_revision`` is the *fencing token*: every write the
  leader makes carries :meth:`LeaderTerm.fence` among its compares, so a
  leader that was deposed (its lease expired while it was paused or cut off
  from the store, and someone else created the key) cannot write, whatever
  it still believes.
* Lose: the lease expires or cannot be renewed within its TTL, or the key is
  gone; the work is cancelled and the server campaigns again.
* Follow: watch the key and campaign again as soon as it is deleted (its
  holder resigned, or its lease expired).

Why the key's create_revision rather than a counter: it is unique per
incarnation of the key, grows with every new leader, and etcd compares it
in the same transaction as the guarded write, with no extra key to keep.

Usage::

    leadership = Leadership(store, "l3-scheduler", identity="server-1", ttl=10)
    await leadership.run(work)          # work(term) runs while this server leads

    async with leadership.lead() as term:   # or: wait to lead, do something once
        await store.txn([term.fence(), ...], [...])
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field

from kumonet.store import trees
from kumonet.store.contract import (
    CompactedError,
    Compare,
    EventType,
    LeaseNotFound,
    Put,
    Store,
    StoreError,
    StoreUnavailable,
    key_absent,
)

log = logging.getLogger(__name__)
LEADERS_PREFIX = trees.prefix(trees.Tree.OPERATIONAL, "default", "leaders")


def leader_key(name: str) -> str:
    return LEADERS_PREFIX + name


@dataclass(frozen=True, slots=True)
class LeaderTerm:
    """One server's time as leader: the fencing token and a flag set once
    leadership is lost (the work should stop; its writes fail anyway)."""

    key: str
    token: int
    lease_id: int
    identity: str
    lost: asyncio.Event = field(default_factory=asyncio.Event, compare=False)

    def fence(self) -> Compare:
        """The compare every write of this term carries: holds only while
        the leader key is the incarnation this term created."""
        return Compare(self.key, "create_revision", "==", self.token)


Work = Callable[[LeaderTerm], Coroutine[object, object, None]]


class Leadership:
    """Campaign, lead, keep alive, and follow for one named singleton."""

    def __init__(
        self, store: Store, name: str, *, identity: str, ttl: int = 10, retry_seconds: float = 0.5
    ) -> None:
        if ttl < 1:
            raise ValueError("a leader lease needs a TTL of at least 1 s")
        self.store = store
        self.name = name
        self.key = leader_key(name)
        self.identity = identity
        self.ttl = ttl
        self.retry_seconds = retry_seconds

    # -- campaign ----------------------------------------------------------

    async def campaign(self) -> LeaderTerm | None:
        """One attempt: the term if this server now leads, else ``None``."""
        lease = await self.store.grant_lease(self.ttl)
        try:
            result = await self.store.txn(
                [key_absent(self.key)], [Put(self.key, self.identity.encode(), lease=lease.id)]
            )
        except BaseException:
            await self._revoke_quietly(lease.id)
            raise
        if not result.succeeded:
            await self._revoke_quietly(lease.id)
            return None
        # The key was created by this transaction: its create_revision is the
        # transaction's revision.
        log.info("%s leads %s (token %d)", self.identity, self.name, result.revision)
        return LeaderTerm(self.key, result.revision, lease.id, self.identity)

    async def _wait_for_vacancy(self) -> None:
        """Return once the leader key is absent (or may be: on doubt, the
        caller simply campaigns again, which is safe)."""
        kv = await self.store.get(self.key)
        if kv is None:
            return
        try:
            async with asyncio.timeout(self.ttl):
                async for event in self.store.watch(self.key, kv.mod_revision + 1):
                    if event.kv.key == self.key and event.type is EventType.DELETE:
                        return
        except (TimeoutError, CompactedError, StoreUnavailable):
            # Re-check from the top: a missed delete costs one TTL at most.
            return

    async def lead_once(self) -> LeaderTerm:
        """Wait until this server leads; returns the new term (kept alive
        only while :meth:`keep_alive` runs)."""
        while True:
            try:
                term = await self.campaign()
            except StoreUnavailable as error:
                log.warning("%s: campaign for %s failed: %s", self.identity, self.name, error)
                await asyncio.sleep(self.retry_seconds)
                continue
            if term is not None:
                return term
            await self._wait_for_vacancy()

    # -- lead ----------------------------------------------------------------

    async def keep_alive(self, term: LeaderTerm) -> None:
        """Renew the term's lease until it is lost; sets ``term.lost`` and
        returns then. A store that cannot be reached for a whole TTL ends the
        term too: the lease may have expired meanwhile."""
        interval = self.ttl / 3
        renewed = time.monotonic()
        try:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.store.keepalive_lease(term.lease_id)
                    renewed = time.monotonic()
                except LeaseNotFound:
                    log.warning("%s lost %s: lease expired", self.identity, self.name)
                    return
                except StoreUnavailable as error:
                    if time.monotonic() - renewed >= self.ttl:
                        log.warning(
                            "%s lost %s: store unreachable for a TTL (%s)",
                            self.identity,
                            self.name,
                            error,
                        )
                        return
                kv = await self.store.get(self.key)
                if kv is None or kv.create_revision != term.token:
                    log.warning("%s lost %s: leader key replaced", self.identity, self.name)
                    return
        finally:
            term.lost.set()

    async def resign(self, term: LeaderTerm) -> None:
        """Give up leadership at once (followers take over without waiting
        for the TTL)."""
        term.lost.set()
        await self._revoke_quietly(term.lease_id)

    async def _revoke_quietly(self, lease_id: int) -> None:
        with contextlib.suppress(StoreError):
            await asyncio.shield(self.store.revoke_lease(lease_id))

    @contextlib.asynccontextmanager
    async def lead(self) -> AsyncIterator[LeaderTerm]:
        """Wait to lead; hold the term (kept alive) inside the block; resign
        on exit."""
        term = await self.lead_once()
        keeper = asyncio.create_task(self.keep_alive(term), name=f"keepalive {self.name}")
        try:
            yield term
        finally:
            keeper.cancel()
            # wait(), not await: a cancellation of this task must propagate.
            await asyncio.wait({keeper})
            await self.resign(term)

    async def run(self, work: Work) -> None:
        """Forever: lead, run ``work(term)`` while leading, follow otherwise.

        ``work`` is cancelled when the term is lost; if it returns or raises,
        the term is resigned and a new campaign starts (after a short pause
        if it failed). Cancel the task running this to stop; it resigns."""
        while True:
            async with self.lead() as term:
                task = asyncio.create_task(work(term), name=f"leader work {self.name}")
                lost = asyncio.create_task(term.lost.wait())
                try:
                    await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    lost.cancel()
                    task.cancel()
                    await asyncio.wait({task})
                failed = task.done() and not task.cancelled() and task.exception() is not None
                if failed:
                    log.error(
                        "%s: work of %s failed", self.identity, self.name, exc_info=task.exception()
                    )
            if failed:
                await asyncio.sleep(self.retry_seconds)
