"""The store contract: a small key-value interface with etcd v3 semantics.

Every backend (SQLite embedded, etcd cluster) implements :class:`Store` and
passes the one contract suite in ``tests/store/test_contract.py``.

Semantics, stated once so that backends cannot disagree:

* Keys are ``str`` (UTF-8, no NUL), values are ``bytes``.
* The store has one global *revision*, an integer that starts at 1 for an
  empty store (as etcd does) and increases by exactly one for every
  transaction or single write that changes something. Reads never change it.
  A transaction whose writes all turn out to be no-ops (deleting absent keys)
  does not advance it.
* Each key carries ``create_revision`` (revision of the write that created it,
  reset when the key is deleted and put again), ``mod_revision`` (revision of
  its last write) and ``version`` (number of writes since creation, 1 after
  create).
* A :class:`Compare` on an absent key sees ``create_revision == 0``,
  ``mod_revision == 0`` and ``version == 0`` - so
  ``Compare(key, "mod_revision", "==", 0)`` means "key does not exist". A
  ``value`` compare on an absent key never holds, whatever its op (etcd
  cannot tell a missing value from ``b""`` and fails such compares).
* ``txn`` evaluates all compares against one consistent state; if all hold it
  applies ``success`` ops, otherwise ``failure`` ops, atomically, under one
  new revision. Two ops on the same key in one transaction are refused with
  :class:`StoreError` (etcd refuses duplicate keys in a txn too).
* ``watch(prefix, start_revision)`` yields every change of a key under
  ``prefix`` with ``mod_revision >= start_revision`` in revision order (and
  within one revision, in the order the ops were given), then follows live
  changes. Resuming with ``last_seen.mod_revision + 1`` misses nothing and
  repeats nothing. If ``start_revision`` is older than the compacted history
  the iterator raises :class:`CompactedError` with the oldest revision still
  available: the caller re-lists (``range``) and watches from the list's
  revision + 1.
* Leases: ``grant_lease(ttl)`` returns a lease; keys put with that lease are
  deleted (with ordinary delete events) when the lease expires or is revoked.
  ``keepalive_lease`` resets the TTL; it raises :class:`LeaseNotFound` for an
  expired or unknown lease. Putting a key with an unknown lease raises
  :class:`LeaseNotFound` and writes nothing.
* Errors: :class:`StoreUnavailable` means the backend could not be reached
  or could not reach a quorum; the operation may or may not have been
  applied only if :attr:`StoreUnavailable.indeterminate` is true. Callers
  guard writes by revision so that re-running them is safe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal, Protocol, runtime_checkable

CompareTarget = Literal["create_revision", "mod_revision", "version", "value"]
CompareOp = Literal["==", "!=", "<", ">"]


class StoreError(Exception):
    """A request the store refuses (bad arguments, contract violations)."""


class StoreUnavailable(StoreError):
    """The backend cannot serve the request now (no connection, no quorum)."""

    def __init__(self, message: str, *, indeterminate: bool = False) -> None:
        super().__init__(message)
        self.indeterminate = indeterminate


class CompactedError(StoreError):
    """A watch asked for history that has been compacted away."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted; oldest available is {compact_revision}")
        self.compact_revision = compact_revision


class LeaseNotFound(StoreError):
    """The lease does not exist (never granted, revoked or expired)."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class RangeResult:
    """Keys sorted by key, and the store revision the read was served at."""

    kvs: tuple[KeyValue, ...]
    revision: int


@dataclass(frozen=True, slots=True)
class Compare:
    key: str
    target: CompareTarget
    op: CompareOp
    value: int | bytes

    def __post_init__(self) -> None:
        if self.target == "value" and not isinstance(self.value, bytes):
            raise StoreError("a value compare needs bytes")
        if self.target != "value" and not isinstance(self.value, int):
            raise StoreError(f"a {self.target} compare needs an int")


def key_absent(key: str) -> Compare:
    """Holds when ``key`` does not exist."""
    return Compare(key, "create_revision", "==", 0)


def key_unchanged(kv: KeyValue) -> Compare:
    """Holds when ``kv.key`` has not been written since ``kv`` was read."""
    return Compare(kv.key, "mod_revision", "==", kv.mod_revision)


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


@dataclass(frozen=True, slots=True)
class DeletePrefix:
    prefix: str


Op = Put | Delete | DeletePrefix


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int


class EventType(Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change. For DELETE, ``kv.value`` is ``b""`` and ``kv.mod_revision``
    is the revision of the delete; ``prev_value`` is the value before it, when
    the backend kept it (SQLite always does; etcd when asked)."""

    type: EventType
    kv: KeyValue
    prev_value: bytes | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One replica of a store, as far as the backend reports it (cluster
    status pages). The embedded store reports itself as one leader."""

    name: str
    endpoint: str
    raft_state: str
    leader: str | None = None
    raft_term: int | None = None
    commit_index: int | None = None
    applied_index: int | None = None
    db_size: int | None = None
    healthy: bool = True
    errors: tuple[str, ...] = field(default_factory=tuple)


@runtime_checkable
class Store(Protocol):
    """The one storage interface. All methods are coroutines except
    :meth:`watch`, which returns an async iterator."""

    async def get(self, key: str) -> KeyValue | None: ...

    async def range(self, prefix: str) -> RangeResult: ...

    async def revision(self) -> int:
        """The current store revision (a linearizable read)."""
        ...

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write unconditionally; returns the new revision."""
        ...

    async def delete(self, key: str) -> int:
        """Delete one key; returns the revision after the call (unchanged if
        the key was absent)."""
        ...

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult: ...

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]: ...

    async def grant_lease(self, ttl: int) -> Lease: ...

    async def keepalive_lease(self, lease_id: int) -> int:
        """Reset the lease's TTL; returns the TTL."""
        ...

    async def revoke_lease(self, lease_id: int) -> None: ...

    async def compact(self, revision: int) -> None:
        """Forget history older than ``revision`` (watches from before it
        raise :class:`CompactedError`)."""
        ...

    async def members(self) -> Sequence[MemberStatus]: ...

    async def close(self) -> None: ...
