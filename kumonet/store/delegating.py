"""A store that forwards every call to another: the base of store wrappers
(stale-read fallbacks, settling indeterminate writes, test spies), which
override only the calls they change."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from kumonet.store.contract import (
    Compare,
    KeyValue,
    Lease,
    MemberStatus,
    Op,
    RangeResult,
    Store,
    TxnResult,
    WatchEvent,
)


class DelegatingStore:
    """Implements the contract by calling ``self.store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, key: str) -> KeyValue | None:
        return await self.store.get(key)

    async def range(self, prefix: str) -> RangeResult:
        return await self.store.range(prefix)

    async def revision(self) -> int:
        return await self.store.revision()

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        return await self.store.put(key, value, lease=lease)

    async def delete(self, key: str) -> int:
        return await self.store.delete(key)

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        return await self.store.txn(compares, success, failure)

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        return self.store.watch(prefix, start_revision)

    async def grant_lease(self, ttl: int) -> Lease:
        return await self.store.grant_lease(ttl)

    async def keepalive_lease(self, lease_id: int) -> int:
        return await self.store.keepalive_lease(lease_id)

    async def revoke_lease(self, lease_id: int) -> None:
        await self.store.revoke_lease(lease_id)

    async def compact(self, revision: int) -> None:
        await self.store.compact(revision)

    async def members(self) -> Sequence[MemberStatus]:
        return await self.store.members()

    async def close(self) -> None:
        await self.store.close()
