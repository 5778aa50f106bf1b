"""Cluster status per shard and per replica, in the terms an operator knows
from OpenDaylight's shard MBeans (seed 000's Jolokia output).

Each shard's replicas are its store's members (etcd's maintenance Status,
asked of each member). Shards on one store share one Raft group, so they
show the same members under their own shard names. Field meanings:

* ``RaftState``: Leader / Follower, Candidate when the member knows no leader
  (etcd reports leader 0 during an election or cut off from the majority),
  ``unreachable`` when it does not answer;
* ``CurrentTerm``: the member's Raft term; ``CommitIndex``: its Raft commit
  index; ``LastApplied``: its applied index (etcd's ``raftAppliedIndex``);
* ``Leader``: the leader's ODL-style name, ``member-N-shard-<shard>-config``;
* ``PeerAddresses``: the other replicas and their client endpoints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kumonet.cluster.shards import ShardedStore, ShardMap, ShardSpec
from kumonet.store.contract import MemberStatus, Store, StoreError
from kumonet.store.delegating import DelegatingStore
from kumonet.store.trees import SHARDS

UNREACHABLE = "unreachable"


def shard_member_name(member: str, shard: str, datastore: str = "config") -> str:
    """ODL's name of one replica of one shard: ``member-1-shard-default-config``."""
    return f"{member}-shard-{shard}-{datastore}"


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    member: str  # the operator's name, member-N by default
    shard_name: str  # member-N-shard-<shard>-config
    endpoint: str
    raft_state: str
    leader: str | None  # the leader's shard_name
    current_term: int | None
    commit_index: int | None
    last_applied: int | None
    db_size: int | None
    healthy: bool
    peer_addresses: tuple[tuple[str, str], ...]  # (shard_name, endpoint) of the others
    errors: tuple[str, ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "ShardName": self.shard_name,
            "endpoint": self.endpoint,
            "RaftState": self.raft_state,
            "Leader": self.leader,
            "CurrentTerm": self.current_term,
            "CommitIndex": self.commit_index,
            "LastApplied": self.last_applied,
            "DbSize": self.db_size,
            "healthy": self.healthy,
            "PeerAddresses": dict(self.peer_addresses),
            "errors": list(self.errors),
        }


@dataclass(frozen=True, slots=True)
class ShardStatus:
    name: str
    replicas: tuple[ReplicaStatus, ...]
    # True when the shard has no store of its own (it lives on default's).
    inherited: bool = False

    @property
    def leader(self) -> str | None:
        leaders = [r.shard_name for r in self.replicas if r.raft_state == "Leader"]
        return leaders[0] if len(leaders) == 1 else None

    @property
    def has_majority(self) -> bool:
        """A leader and a majority of replicas answering and following it."""
        following = [r for r in self.replicas if r.healthy and r.leader == self.leader]
        return self.leader is not None and 2 * len(following) > len(self.replicas)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "leader": self.leader,
            "majority": self.has_majority,
            "shares_store_of": "default" if self.inherited else None,
            "replicas": [r.as_json() for r in self.replicas],
        }


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    shards: tuple[ShardStatus, ...]

    def shard(self, name: str) -> ShardStatus:
        for shard in self.shards:
            if shard.name == name:
                return shard
        raise KeyError(name)

    def replica(self, shard_name: str) -> ReplicaStatus:
        """A replica by its ODL name (``member-2-shard-neutron-config``)."""
        for shard in self.shards:
            for replica in shard.replicas:
                if replica.shard_name == shard_name:
                    return replica
        raise KeyError(shard_name)

    def as_json(self) -> dict[str, Any]:
        return {"shards": [s.as_json() for s in self.shards]}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ClusterStatus:
        """The inverse of :meth:`as_json` (the CLI reads a server's answer)."""
        return cls(
            tuple(
                ShardStatus(
                    name=shard["name"],
                    inherited=shard.get("shares_store_of") is not None,
                    replicas=tuple(
                        ReplicaStatus(
                            member=r["member"],
                            shard_name=r["ShardName"],
                            endpoint=r["endpoint"],
                            raft_state=r["RaftState"],
                            leader=r["Leader"],
                            current_term=r["CurrentTerm"],
                            commit_index=r["CommitIndex"],
                            last_applied=r["LastApplied"],
                            db_size=r["DbSize"],
                            healthy=r["healthy"],
                            peer_addresses=tuple(r["PeerAddresses"].items()),
                            errors=tuple(r["errors"]),
                        )
                        for r in shard["replicas"]
                    ),
                )
                for shard in document["shards"]
            )
        )


def _shard_status(spec: ShardSpec, members: Sequence[MemberStatus] | StoreError) -> ShardStatus:
    if isinstance(members, StoreError):
        members = [
            MemberStatus(name=r, endpoint="", raft_state=UNREACHABLE, healthy=False,
                         errors=(str(members),))
            for r in spec.replicas
        ]  # fmt: skip
    # Members come in the order of the store URL's endpoints, which is the
    # order the shards file names its replicas in.
    operator_names = [
        spec.replicas[i] if i < len(spec.replicas) else m.name for i, m in enumerate(members)
    ]
    by_store_name = {m.name: operator_names[i] for i, m in enumerate(members)}
    names = [shard_member_name(n, spec.name) for n in operator_names]
    replicas: list[ReplicaStatus] = []
    for i, member in enumerate(members):
        leader = by_store_name.get(member.leader or "")
        replicas.append(
            ReplicaStatus(
                member=operator_names[i],
                shard_name=names[i],
                endpoint=member.endpoint,
                raft_state=member.raft_state,
                leader=shard_member_name(leader, spec.name) if leader else None,
                current_term=member.raft_term,
                commit_index=member.commit_index,
                last_applied=member.applied_index,
                db_size=member.db_size,
                healthy=member.healthy,
                peer_addresses=tuple(
                    (names[j], other.endpoint) for j, other in enumerate(members) if j != i
                ),
                errors=member.errors,
            )
        )
    return ShardStatus(spec.name, tuple(replicas), inherited=spec.inherited)


async def _members(store: Store) -> Sequence[MemberStatus] | StoreError:
    try:
        return await store.members()
    except StoreError as error:
        return error


async def collect_status(store: Store) -> ClusterStatus:
    """The status of every shard. A :class:`ShardedStore` reports each
    shard's store; any other store holds every shard."""
    # The server's wrappers add behaviour, not members: look through them.
    while isinstance(store, DelegatingStore):
        store = store.store
    if isinstance(store, ShardedStore):
        shard_map = store.shard_map
        stores = {spec.url: store.store_for(spec.name) for spec in shard_map.shards}
    else:
        members = await _members(store)
        count = 1 if isinstance(members, StoreError) else len(members)
        replicas = tuple(f"member-{i}" for i in range(1, count + 1))
        shard_map = ShardMap.from_specs([ShardSpec("default", "", replicas)])
        stores = {"": store}
    urls = list(stores)
    answers = await asyncio.gather(*(_members(stores[url]) for url in urls))
    by_url = dict(zip(urls, answers, strict=True))
    return ClusterStatus(
        tuple(_shard_status(shard_map.spec(name), by_url[shard_map.spec(name).url])
              for name in SHARDS)
    )  # fmt: skip


def format_table(status: ClusterStatus) -> str:
    """The ``kumonet cluster status`` table. A shard living on the default
    shard's store is shown as ``topology=default``."""
    header = ("SHARD", "MEMBER", "ENDPOINT", "RAFT STATE", "LEADER", "TERM", "COMMIT",
              "APPLIED", "DB SIZE", "HEALTH")  # fmt: skip
    rows: list[tuple[str, ...]] = [header]
    for shard in status.shards:
        for r in shard.replicas:
            rows.append(
                (
                    shard.name + ("=default" if shard.inherited else ""),
                    r.member,
                    r.endpoint or "-",
                    r.raft_state,
                    r.leader or "-",
                    _text(r.current_term),
                    _text(r.commit_index),
                    _text(r.last_applied),
                    _size(r.db_size),
                    "healthy" if r.healthy else _brief("; ".join(r.errors) or "unhealthy"),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
             for row in rows]  # fmt: skip
    return "\n".join(lines)


def _brief(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _text(value: int | None) -> str:
    return "-" if value is None else str(value)


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    if value < 1024:
        return f"{value} B"
    size = value / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
