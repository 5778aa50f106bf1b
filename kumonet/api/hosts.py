"""Hosts that registered with the servers, and whether they are alive.

Keys (shard ``topology``):

    /operational/topology/hosts/<host>   the host's facts (persistent: Neutron
                                         lists dead agents too), with its lease id
    /operational/topology/alive/<host>   exists while the host's lease lives
    /config/topology/agents/<agent_id>   what operators set on one agent
                                         (``admin_state_up``, ``description``)

A host's lease lives ``3 × heartbeat_interval`` seconds; a heartbeat is one
lease keep-alive and writes nothing, so hundreds of hosts heartbeating do not
wake every agent watching the topology tree. Only a registration, an expiry
or an operator's change writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from kumonet.api.context import ApiContext
from kumonet.api.transaction import Plan, commit_with_retry
from kumonet.model.agent import HostFacts
from kumonet.model.common import timestamp
from kumonet.model.errors import NotFound
from kumonet.store import trees
from kumonet.store.contract import (
    Compare,
    KeyValue,
    LeaseNotFound,
    Put,
    key_absent,
    key_unchanged,
)

HOSTS_PREFIX = trees.prefix(trees.Tree.OPERATIONAL, "topology", "hosts")
ALIVE_PREFIX = trees.prefix(trees.Tree.OPERATIONAL, "topology", "alive")
AGENT_SETTINGS_PREFIX = trees.prefix(trees.Tree.CONFIG, "topology", "agents")
# Attempts at registering when the fresh lease expires under our feet.
_LEASE_ATTEMPTS = 3


def host_key(host: str) -> str:
    return HOSTS_PREFIX + host


def alive_key(host: str) -> str:
    return ALIVE_PREFIX + host


def agent_settings_key(agent_id: str) -> str:
    return AGENT_SETTINGS_PREFIX + agent_id


class HostNotRegistered(NotFound):
    type_name = "HostNotRegistered"

    def __init__(self, host: str) -> None:
        super().__init__(f"Host {host} is not registered or its lease expired; register "
                         "it again.")


def _unchanged_or_absent(key: str, kv: KeyValue | None) -> Compare:
    return key_unchanged(kv) if kv is not None else key_absent(key)


class HostRegistry:
    """Registration, heartbeats and liveness of hosts (one per server
    process, built in ``kumonet.api.main.build_api``)."""

    def __init__(self, context: ApiContext) -> None:
        self.context = context
        self.store = context.store
        # When this server last saw each host's heartbeat (Neutron shows
        # heartbeat_timestamp; writing it would wake every watcher). A
        # per-process hint, never the truth.
        self.last_heartbeat: dict[str, datetime] = {}

    async def register(self, facts: HostFacts) -> dict[str, Any]:
        """Store the host's facts and make it alive; a host still alive keeps
        its lease (a re-registration is not an outage)."""
        for _ in range(_LEASE_ATTEMPTS):
            granted: int | None = None

            async def decide() -> Plan[dict[str, Any]]:
                nonlocal granted
                now = timestamp(self.context.clock())
                kv = await self.store.get(host_key(facts.host))
                old = orjson.loads(kv.value) if kv is not None else {}
                alive = await self.store.get(alive_key(facts.host))
                lease = await self._reusable_lease(old, alive, facts)
                if lease is None:
                    if granted is None:
                        granted = (await self.store.grant_lease(facts.lease_ttl)).id
                    lease = granted
                record = facts.record()
                record.update({"lease_id": lease, "created_at": old.get("created_at", now),
                               "started_at": now, "heartbeat_timestamp": now})
                marker = {"host": facts.host, "tunnel_ip": facts.tunnel_ip, "since": now}
                compares = [_unchanged_or_absent(host_key(facts.host), kv),
                            _unchanged_or_absent(alive_key(facts.host), alive)]
                ops = [Put(host_key(facts.host), orjson.dumps(record)),
                       Put(alive_key(facts.host), orjson.dumps(marker), lease=lease)]
                return Plan(compares, ops, record)

            try:
                record = await commit_with_retry(self.store, decide)
            except LeaseNotFound:
                # The lease we meant to keep expired between the check and
                # the write: register again with a fresh one.
                continue
            self.last_heartbeat[facts.host] = self.context.clock()
            return record
        raise HostNotRegistered(facts.host)

    async def _reusable_lease(self, old: Mapping[str, Any], alive: KeyValue | None,
                              facts: HostFacts) -> int | None:
        lease = old.get("lease_id")
        if alive is None or not lease or alive.lease != lease \
                or old.get("heartbeat_interval") != facts.heartbeat_interval:
            return None
        try:
            await self.store.keepalive_lease(lease)
        except LeaseNotFound:
            return None
        return int(lease)

    async def record(self, host: str) -> dict[str, Any] | None:
        kv = await self.store.get(host_key(host))
        return orjson.loads(kv.value) if kv is not None else None

    async def heartbeat(self, host: str) -> int:
        """Renew the host's lease; returns its TTL. :class:`HostNotRegistered`
        when the lease expired or the host was deleted (the host registers
        again, which brings deleted agents back, as in Neutron)."""
        record = await self.record(host)
        if record is None:
            raise HostNotRegistered(host)
        try:
            ttl = await self.store.keepalive_lease(int(record["lease_id"]))
        except LeaseNotFound:
            raise HostNotRegistered(host) from None
        self.last_heartbeat[host] = self.context.clock()
        return ttl

    async def records(self) -> list[dict[str, Any]]:
        result = await self.store.range(HOSTS_PREFIX)
        return [orjson.loads(kv.value) for kv in result.kvs]

    async def alive_hosts(self) -> set[str]:
        result = await self.store.range(ALIVE_PREFIX)
        return {kv.key[len(ALIVE_PREFIX):] for kv in result.kvs}

    async def agent_settings(self) -> dict[str, dict[str, Any]]:
        result = await self.store.range(AGENT_SETTINGS_PREFIX)
        return {kv.key[len(AGENT_SETTINGS_PREFIX):]: orjson.loads(kv.value)
                for kv in result.kvs}

    def heartbeat_timestamp(self, record: Mapping[str, Any], alive: bool) -> str | None:
        """The last heartbeat this server knows of (its own, or the host's
        registration when its heartbeats went to another server)."""
        seen = self.last_heartbeat.get(record["host"])
        if alive and seen is not None:
            return timestamp(seen)
        stored: str | None = record.get("heartbeat_timestamp")
        return stored
