"""Settling writes whose outcome the store could not tell.

When an etcd member dies while a transaction is on its way, the store
raises :class:`StoreUnavailable` with ``indeterminate=True``: the write may
or may not have been applied. Answering that as a 503 is correct but
unkind (the client must read before retrying), and re-running the API's
decision would be wrong: a port create decides a fresh id, so a second run
after an applied first one makes a second port.

:class:`SettlingStore` wraps the server's store and settles such a write
before anyone above it sees the error: it waits (bounded) for the cluster
to serve linearizable reads again, re-reads the keys the transaction would
have written, and

* if every ``Put`` of the transaction is there with its value, all at one
  revision (a transaction writes all its keys under one revision), and
  every ``Delete`` is gone, the write was applied: it answers success;
* otherwise, since a transaction is atomic, none of it was applied: it
  sends the very same transaction again. Its compares still guard it: if
  another writer got there in between, it fails and the caller re-decides
  on fresh reads, as after any lost race.

Only when the cluster does not come back within ``settle_seconds`` does the
indeterminate error reach the API (a 503 saying "maybe applied").

A transaction with ``failure`` ops, or none in ``success``, cannot be
settled by reading and is passed through unchanged.

Known limit: a write that was applied and then changed by another writer
before the re-read looks "not applied"; the re-sent transaction then fails
its compares and the caller re-decides. For creates this needs someone to
modify a resource whose id was never answered to anyone, which the API
does not do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from kumonet.store.contract import (
    Compare,
    Delete,
    DeletePrefix,
    Op,
    Put,
    Store,
    StoreUnavailable,
    TxnResult,
)
from kumonet.store.delegating import DelegatingStore

log = logging.getLogger(__name__)

# Long enough for an etcd election (about 1 s with the default timing) and
# the store's own retries; short enough that a client is answered before
# its own timeout.
DEFAULT_SETTLE_SECONDS = 6.0
SETTLE_PAUSE = 0.1


class SettlingStore(DelegatingStore):
    """The store contract; indeterminate writes are settled (see module)."""

    def __init__(self, store: Store, *, settle_seconds: float = DEFAULT_SETTLE_SECONDS) -> None:
        super().__init__(store)
        self.settle_seconds = settle_seconds
        # Counters for tests and logs: how often settling was needed and how
        # it ended.
        self.settled_applied = 0
        self.settled_resent = 0

    async def _applied_revision(self, ops: Sequence[Op]) -> int | None:
        """The revision ``ops`` were applied at, or ``None`` if they were
        not (read linearizably)."""
        revisions: set[int] = set()
        for op in ops:
            if isinstance(op, Put):
                kv = await self.store.get(op.key)
                if kv is None or kv.value != op.value:
                    return None
                revisions.add(kv.mod_revision)
            elif not await self._gone(op):
                return None
        if len(revisions) > 1:
            return None
        if revisions:
            return revisions.pop()
        return await self.store.revision()

    async def _gone(self, op: Delete | DeletePrefix) -> bool:
        if isinstance(op, Delete):
            return await self.store.get(op.key) is None
        return not (await self.store.range(op.prefix)).kvs

    async def _settle_txn(
        self, compares: Sequence[Compare], success: Sequence[Op], first: StoreUnavailable
    ) -> TxnResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settle_seconds
        error = first
        while True:
            try:
                revision = await self._applied_revision(success)
                if revision is not None:
                    self.settled_applied += 1
                    log.info("indeterminate write was applied (revision %d)", revision)
                    return TxnResult(True, revision)
                self.settled_resent += 1
                log.info("indeterminate write was not applied: sending it again")
                return await self.store.txn(compares, success)
            except StoreUnavailable as again:
                # The cluster is still away (no read, or the re-sent write
                # failed too): keep trying until the deadline.
                if again.indeterminate:
                    error = again
            if loop.time() >= deadline:
                # Still unknown: the caller must read before retrying.
                raise StoreUnavailable(str(error), indeterminate=True) from error
            await asyncio.sleep(SETTLE_PAUSE)

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        try:
            return await self.store.txn(compares, success, failure)
        except StoreUnavailable as error:
            if not error.indeterminate or failure or not success:
                raise
            return await self._settle_txn(compares, success, error)

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        try:
            return await self.store.put(key, value, lease=lease)
        except StoreUnavailable as error:
            if not error.indeterminate:
                raise
            # An unconditional put is the transaction "no compares, one put".
            result = await self._settle_txn((), (Put(key, value, lease),), error)
            return result.revision

    async def delete(self, key: str) -> int:
        try:
            return await self.store.delete(key)
        except StoreUnavailable as error:
            if not error.indeterminate:
                raise
            result = await self._settle_txn((), (Delete(key),), error)
            return result.revision
