"""Shards: subtrees of the store mapped to their own store clusters, as the
seed's ``module-shards.conf`` maps modules to replica sets.

The shards file is INI, one section per shard::

    [shard default]
    store = etcd://10.0.0.11:2379,10.0.0.12:2379,10.0.0.13:2379
    # Operator names of the replicas, in the order of the URL's endpoints
    # (status pages call them member-N-shard-<name>-config). Optional:
    # member-1 .. member-N by default.
    replicas = member-1, member-2, member-3

    [shard neutron]
    store = etcd://10.0.1.11:2379,10.0.1.12:2379,10.0.1.13:2379

``default`` is required; every shard of :data:`kumonet.store.trees.SHARDS`
without a section lives on the default shard's store. Shards that name the
same URL share one store (one connection, one revision sequence).

Revisions are per store. :class:`ShardedStore` routes each call by the shard
of its key or prefix (:func:`kumonet.store.trees.shard_of`):

* ``get``/``put``/``delete`` go to the key's shard;
* ``range`` and ``watch`` of a prefix go to the one store that holds every
  key the prefix can match; a prefix whose keys span stores (``/``,
  ``/config/``) is refused with :class:`StoreError`. ``range(prefix).revision``
  is that store's revision, so "list, then watch from revision + 1" works
  per shard exactly as on one store;
* ``revision()`` is the *default* shard's store revision; for another shard
  use ``range(prefix).revision`` or ``revision_of(shard)``;
* ``txn`` must stay within one store: compares and ops on keys of shards on
  different stores are refused with :class:`StoreError`;
* a lease is granted with one id on every store (etcd lets the client choose
  the id), kept alive and revoked on all of them, so a leased key may live
  in any shard;
* ``compact`` needs one store (a revision means nothing across stores); with
  several, compact each through ``store_for(shard)``.
"""

from __future__ import annotations

import asyncio
import configparser
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kumonet.store.contract import (
    Compare,
    Delete,
    DeletePrefix,
    KeyValue,
    Lease,
    LeaseNotFound,
    MemberStatus,
    Op,
    Put,
    RangeResult,
    Store,
    StoreError,
    TxnResult,
    WatchEvent,
)
from kumonet.store.etcd import EtcdStore
from kumonet.store.trees import SHARDS, Tree, shard_of
from kumonet.store.url import open_store

DEFAULT_SHARD = "default"
_SECTION = "shard "


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """One shard: where it is stored and what its replicas are called."""

    name: str
    url: str
    replicas: tuple[str, ...]
    # True when the shard has no section of its own and lives on the default
    # shard's store.
    inherited: bool = False


def _replica_count(url: str) -> int:
    scheme, _, rest = url.partition("://")
    if scheme == "etcd":
        return len([h for h in rest.partition("?")[0].split(",") if h.strip()])
    return 1


def default_replicas(url: str) -> tuple[str, ...]:
    return tuple(f"member-{i}" for i in range(1, _replica_count(url) + 1))


@dataclass(frozen=True, slots=True)
class ShardMap:
    """Every shard of :data:`SHARDS` with its spec, in ``SHARDS`` order."""

    shards: tuple[ShardSpec, ...]

    @classmethod
    def single(cls, url: str) -> ShardMap:
        """Everything on one store (the default mapping)."""
        return cls.from_specs([ShardSpec(DEFAULT_SHARD, url, default_replicas(url))])

    @classmethod
    def from_specs(cls, specs: Iterable[ShardSpec]) -> ShardMap:
        given = {spec.name: spec for spec in specs}
        if DEFAULT_SHARD not in given:
            raise ValueError("the shards file needs a [shard default] section")
        unknown = set(given) - set(SHARDS)
        if unknown:
            raise ValueError(f"unknown shard(s) {sorted(unknown)}; shards are {list(SHARDS)}")
        default = given[DEFAULT_SHARD]
        return cls(
            tuple(
                given.get(name) or ShardSpec(name, default.url, default.replicas, inherited=True)
                for name in SHARDS
            )
        )

    @classmethod
    def parse(cls, text: str, source: str = "<shards>") -> ShardMap:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text, source=source)
        except configparser.Error as error:
            raise ValueError(f"{source}: {error}") from None
        specs: list[ShardSpec] = []
        for section in parser.sections():
            if not section.startswith(_SECTION):
                raise ValueError(f"{source}: section [{section}] is not [shard NAME]")
            name = section[len(_SECTION) :].strip()
            options = parser[section]
            extra = set(options) - {"store", "replicas"}
            if extra:
                raise ValueError(f"{source}: [{section}] has unknown option(s) {sorted(extra)}")
            url = options.get("store", "").strip()
            if not url:
                raise ValueError(f"{source}: [{section}] needs store = URL")
            listed = options.get("replicas", "")
            replicas = tuple(r.strip() for r in listed.split(",") if r.strip())
            if not replicas:
                replicas = default_replicas(url)
            elif len(replicas) != _replica_count(url):
                raise ValueError(
                    f"{source}: [{section}] names {len(replicas)} replicas but its store URL "
                    f"has {_replica_count(url)} endpoint(s)"
                )
            specs.append(ShardSpec(name, url, replicas))
        return cls.from_specs(specs)

    @classmethod
    def load(cls, path: str | Path) -> ShardMap:
        return cls.parse(Path(path).read_text(), source=str(path))

    def spec(self, shard: str) -> ShardSpec:
        for spec in self.shards:
            if spec.name == shard:
                return spec
        raise ValueError(f"unknown shard {shard!r}")

    @property
    def urls(self) -> tuple[str, ...]:
        """The distinct store URLs, default's first."""
        return tuple(dict.fromkeys(spec.url for spec in self.shards))


def shards_of_prefix(prefix: str) -> frozenset[str]:
    """Every shard holding a key that can start with ``prefix``."""
    for tree in Tree:
        for shard in SHARDS:
            if prefix.startswith(f"/{tree.value}/{shard}/"):
                return frozenset((shard,))
    # Shorter prefixes reach every shard whose subtree starts with them, and
    # always some key outside the shard subtrees (which is default's).
    reached = {
        shard for tree in Tree for shard in SHARDS if f"/{tree.value}/{shard}/".startswith(prefix)
    }
    return frozenset((*reached, DEFAULT_SHARD))


class ShardedStore:
    """The store contract over several stores, one per shard (see the module
    docstring for what revisions mean here)."""

    def __init__(self, shard_map: ShardMap, stores: dict[str, Store]) -> None:
        self.shard_map = shard_map
        # url -> store; shards on one URL share the store.
        self._stores = stores

    @classmethod
    async def open(
        cls,
        shard_map: ShardMap,
        opener: Callable[[str], Awaitable[Store]] = open_store,
    ) -> ShardedStore:
        stores: dict[str, Store] = {}
        try:
            for url in shard_map.urls:
                stores[url] = await opener(url)
        except BaseException:
            for opened in stores.values():
                await opened.close()
            raise
        return cls(shard_map, stores)

    def store_for(self, shard: str) -> Store:
        return self._stores[self.shard_map.spec(shard).url]

    def _for_key(self, key: str) -> Store:
        return self.store_for(shard_of(key))

    def _for_prefix(self, prefix: str) -> Store:
        shards = shards_of_prefix(prefix)
        stores = {id(self.store_for(s)): self.store_for(s) for s in shards}
        if len(stores) > 1:
            raise StoreError(
                f"prefix {prefix!r} spans shards on different stores ({', '.join(sorted(shards))});"
                " read each shard's subtree separately"
            )
        (store,) = stores.values()
        return store

    @property
    def stores(self) -> tuple[Store, ...]:
        return tuple(self._stores.values())

    async def get(self, key: str) -> KeyValue | None:
        return await self._for_key(key).get(key)

    async def range(self, prefix: str) -> RangeResult:
        return await self._for_prefix(prefix).range(prefix)

    async def stale_get(self, key: str) -> KeyValue | None:
        """A read without quorum, where the shard's store can (etcd)."""
        store = self._for_key(key)
        if not isinstance(store, EtcdStore):
            return await store.get(key)
        return await store.stale_get(key)

    async def stale_range(self, prefix: str) -> RangeResult:
        store = self._for_prefix(prefix)
        if not isinstance(store, EtcdStore):
            return await store.range(prefix)
        return await store.stale_range(prefix)

    async def revision(self) -> int:
        return await self.store_for(DEFAULT_SHARD).revision()

    async def revision_of(self, shard: str) -> int:
        return await self.store_for(shard).revision()

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        return await self._for_key(key).put(key, value, lease=lease)

    async def delete(self, key: str) -> int:
        return await self._for_key(key).delete(key)

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op],
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        targets: dict[int, Store] = {}
        for compare in compares:
            store = self._for_key(compare.key)
            targets[id(store)] = store
        for op in (*success, *failure):
            if isinstance(op, (Put, Delete)):
                store = self._for_key(op.key)
            else:
                assert isinstance(op, DeletePrefix)
                store = self._for_prefix(op.prefix)
            targets[id(store)] = store
        if len(targets) > 1:
            raise StoreError("a transaction must stay within one shard's store")
        store = next(iter(targets.values()), None) or self.store_for(DEFAULT_SHARD)
        return await store.txn(compares, success, failure)

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        return self._for_prefix(prefix).watch(prefix, start_revision)

    async def grant_lease(self, ttl: int) -> Lease:
        first, *rest = self.stores
        others = [store for store in rest if isinstance(store, EtcdStore)]
        if len(others) != len(rest):
            raise StoreError("leases across shards need etcd stores (client-chosen lease ids)")
        lease = await first.grant_lease(ttl)
        try:
            await asyncio.gather(*(store.grant_lease(ttl, lease_id=lease.id) for store in others))
        except BaseException:
            await self._revoke_everywhere(lease.id)
            raise
        return lease

    async def keepalive_lease(self, lease_id: int) -> int:
        # Lost on any store (it expired there while unreachable) means its
        # keys there are gone: LeaseNotFound tells the owner to re-register.
        ttls = await asyncio.gather(*(store.keepalive_lease(lease_id) for store in self.stores))
        return min(ttls)

    async def revoke_lease(self, lease_id: int) -> None:
        errors = await self._revoke_everywhere(lease_id)
        if len(errors) == len(self.stores):
            raise errors[0]
        if any(not isinstance(e, LeaseNotFound) for e in errors):
            raise next(e for e in errors if not isinstance(e, LeaseNotFound))

    async def _revoke_everywhere(self, lease_id: int) -> list[BaseException]:
        results = await asyncio.gather(
            *(store.revoke_lease(lease_id) for store in self.stores), return_exceptions=True
        )
        return [e for e in results if isinstance(e, BaseException)]

    async def compact(self, revision: int) -> None:
        if len(self._stores) > 1:
            raise StoreError("compact one shard's store at a time (revisions are per store)")
        await self.store_for(DEFAULT_SHARD).compact(revision)

    async def members(self) -> Sequence[MemberStatus]:
        """The default shard's members; :mod:`kumonet.cluster.status` reports
        every shard."""
        return await self.store_for(DEFAULT_SHARD).members()

    async def close(self) -> None:
        for store in self._stores.values():
            await store.close()
