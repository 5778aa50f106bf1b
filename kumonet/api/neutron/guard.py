"""Deletion guards: how a delete that must see "nothing uses this" stays
correct while other servers keep creating things that use it.

Creators (a port on a network or subnet) compare the guard key absent in
their transaction. A delete first writes the guard, so every creator that
had not committed yet fails its compare and re-runs (and then waits or
refuses); only after that does the delete read what still uses the
resource. The guard is put under a short lease so that a server dying
mid-delete cannot block the resource for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from kumonet.api.repository import neutron_key
from kumonet.model.errors import ServiceUnavailable
from kumonet.store.contract import Compare, Store, key_absent

GUARD_TTL_SECONDS = 10


def guard_key(resource_id: str) -> str:
    return neutron_key("deleting", resource_id)


def not_being_deleted(resource_id: str) -> Compare:
    return key_absent(guard_key(resource_id))


@dataclass(frozen=True, slots=True)
class Guard:
    key: str
    revision: int

    def held(self) -> Compare:
        """For the delete's own transaction: the guard is still this one (its
        lease has not expired, so no creator slipped in)."""
        return Compare(self.key, "create_revision", "==", self.revision)

    async def check_held(self, store: Store) -> None:
        kv = await store.get(self.key)
        if kv is None or kv.create_revision != self.revision:
            raise ServiceUnavailable("The delete took longer than its guard lasts; retry it.",
                                     type_name="RetryRequest")


@asynccontextmanager
async def deletion_guard(store: Store, resource_id: str) -> AsyncIterator[Guard]:
    """Hold the guard while the body decides and deletes."""
    key = guard_key(resource_id)
    lease = await store.grant_lease(GUARD_TTL_SECONDS)
    try:
        revision = await store.put(key, b"deleting", lease=lease.id)
        yield Guard(key, revision)
    finally:
        # Revoking also removes the key (if the delete did not already).
        await asyncio.shield(store.revoke_lease(lease.id))


async def wait_while_guarded(store: Store, resource_id: str, *, attempts: int = 200) -> bool:
    """Wait (briefly) for a concurrent delete to finish or give up; returns
    True if the guard is gone."""
    key = guard_key(resource_id)
    for _ in range(attempts):
        if await store.get(key) is None:
            return True
        await asyncio.sleep(0.01)
    return False
