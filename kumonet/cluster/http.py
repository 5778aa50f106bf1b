"""Cluster status over HTTP: ``GET /v1/cluster/status`` (JSON) and a
Jolokia-compatible read path, so that the seed's curl commands work::

    curl -s http://SERVER:9696/jolokia/read/org.opendaylight.controller:\
Category=Shards,name=member-1-shard-inventory-config,type=DistributedConfigDatastore

Any server answers for any replica: the status comes from the store
cluster, not from the server that is asked. The operational datastore
(``type=DistributedOperationalDatastore``, ``...-operational``) lives in the
same shard store as the config one and answers the same figures.

Wiring (in the API's ``build_api``)::

    routes=[..., ClusterStatusRoutes(context.store)]
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from kumonet.cluster.status import (
    ClusterStatus,
    ReplicaStatus,
    ShardStatus,
    collect_status,
    shard_member_name,
)
from kumonet.store.contract import Store

JOLOKIA_DOMAIN = "org.opendaylight.controller"
# Operators' paths: the API takes ODL's basic credentials or an admin token
# on them (kumonet.api.app), since curl and Jolokia clients carry no token.
OPERATOR_PREFIXES = ("/v1/cluster/", "/jolokia/")
_DATASTORES = {
    "DistributedConfigDatastore": "config",
    "DistributedOperationalDatastore": "operational",
}


class ClusterStatusRoutes:
    """Adds the status routes to an aiohttp app (a ``RouteProvider``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/cluster/status", self.status)
        app.router.add_get("/jolokia/read/{path:.+}", self.jolokia_read)

    async def status(self, request: web.Request) -> web.Response:
        status = await collect_status(self.store)
        return web.json_response({**status.as_json(), "timestamp": int(time.time())})

    async def jolokia_read(self, request: web.Request) -> web.Response:
        mbean, _, attribute = request.match_info["path"].partition("/")
        request_echo: dict[str, Any] = {"mbean": mbean, "type": "read"}
        if attribute:
            request_echo["attribute"] = attribute
        target = parse_shard_mbean(mbean)
        if target is None:
            return _jolokia_error(request_echo, 404, "javax.management.InstanceNotFoundException",
                                  mbean)  # fmt: skip
        replica_name, datastore = target
        status = await collect_status(self.store)
        found = find_replica(status, replica_name, datastore)
        if found is None:
            return _jolokia_error(request_echo, 404, "javax.management.InstanceNotFoundException",
                                  mbean)  # fmt: skip
        shard, replica = found
        value: Any = jolokia_value(shard, replica, datastore)
        if attribute:
            if attribute not in value:
                return _jolokia_error(request_echo, 404,
                                      "javax.management.AttributeNotFoundException",
                                      f"No such attribute: {attribute}")  # fmt: skip
            value = value[attribute]
        return web.json_response(
            {"request": request_echo, "value": value, "timestamp": int(time.time()),
             "status": 200}
        )  # fmt: skip


def parse_shard_mbean(mbean: str) -> tuple[str, str] | None:
    """``org.opendaylight.controller:Category=Shards,name=N,type=T`` ->
    (N, "config"|"operational"); None for any other MBean. Properties may
    come in any order, as JMX allows."""
    domain, colon, properties = mbean.partition(":")
    if domain != JOLOKIA_DOMAIN or not colon:
        return None
    pairs: dict[str, str] = {}
    for item in properties.split(","):
        name, equals, value = item.partition("=")
        if not equals:
            return None
        pairs[name.strip()] = value.strip()
    datastore = _DATASTORES.get(pairs.get("type", ""))
    if pairs.get("Category") != "Shards" or datastore is None or "name" not in pairs:
        return None
    if set(pairs) != {"Category", "name", "type"}:
        return None
    return pairs["name"], datastore


def find_replica(
    status: ClusterStatus, replica_name: str, datastore: str
) -> tuple[ShardStatus, ReplicaStatus] | None:
    for shard in status.shards:
        for replica in shard.replicas:
            if shard_member_name(replica.member, shard.name, datastore) == replica_name:
                return shard, replica
    return None


def jolokia_value(shard: ShardStatus, replica: ReplicaStatus, datastore: str) -> dict[str, Any]:
    """The shard MBean's attributes, as far as etcd reports them. Indexes
    are the members' own (etcd has no per-follower match index on the
    leader), so a follower's ``matchIndex`` is the index it applied."""

    def named(member: str) -> str:
        return shard_member_name(member, shard.name, datastore)

    leader = next((r for r in shard.replicas if r.raft_state == "Leader"), None)
    peers = [r for r in shard.replicas if r is not replica]
    value: dict[str, Any] = {
        "ShardName": named(replica.member),
        "RaftState": replica.raft_state,
        "Leader": named(leader.member) if leader is not None and replica.leader else None,
        "CurrentTerm": replica.current_term,
        "CommitIndex": replica.commit_index,
        "LastApplied": replica.last_applied,
        "LastIndex": replica.commit_index,
        "LastLogIndex": replica.commit_index,
        "LastTerm": replica.current_term,
        "LastLogTerm": replica.current_term,
        "PeerAddresses": ", ".join(f"{named(p.member)}: {p.endpoint}" for p in peers),
        "DbSize": replica.db_size,
        "Healthy": replica.healthy,
        "StatRetrievalError": "; ".join(replica.errors) or None,
    }
    if replica.raft_state == "Leader":
        value["FollowerInfo"] = [
            {
                "id": named(p.member),
                "active": p.healthy,
                "matchIndex": p.last_applied,
                "nextIndex": None if p.last_applied is None else p.last_applied + 1,
            }
            for p in peers
        ]
    return value


def _jolokia_error(request_echo: dict[str, Any], status: int, error_type: str,
                   detail: str) -> web.Response:  # fmt: skip
    # As Jolokia does: the HTTP status is 200 and the error's status is in the
    # body (its clients, e.g. telegraf's plugin, read it there).
    return web.json_response(
        {"request": request_echo, "error_type": error_type, "error": f"{error_type} : {detail}",
         "status": status, "timestamp": int(time.time())},
    )  # fmt: skip
