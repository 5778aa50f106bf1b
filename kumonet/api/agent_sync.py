"""The servers' internal API for ``kumonet-agent`` (``/v1/agent/...``).

Agents never talk to the store: they read intent from the servers (a
snapshot, then a long-poll watch from its revision) and report state back.
Admin-only under keystone (agents use a service account). All bodies JSON.

Snapshot and watch
------------------

``GET /v1/agent/snapshot?prefix=/config/neutron/``
    ``{"revision": N, "items": [{"key", "mod_revision", "value"}...]}``
    (sorted by key); the prefix must lie under one of the served roots
    (``/config/neutron/``, ``/config/topology/``, ``/operational/topology/``,
    ``/operational/neutron/``). Store bookkeeping (IPAM allocations, MAC
    reservations, segment allocations, deletion guards) is left out. Served
    from the server's change feed (its state of the root in memory): the
    store is read once per root per server, not once per agent.

``GET /v1/agent/watch?prefix=P&revision=R&timeout=S&limit=L``
    Long poll: as soon as there are events at revision ``>= R`` under ``P``,
    ``{"revision": last, "events": [{"type": "put"|"delete", "key",
    "mod_revision", "value"|null}...]}`` with every event available then
    (at most ``L``, default 1000, never splitting a transaction); after
    ``S`` seconds (default 30, at most 300) ``{"revision": current,
    "events": []}``. Either way the next request asks for ``revision + 1``.
    ``410`` with ``{"compact_revision": F, ...}`` if ``R`` is older than this
    server can serve (compacted in the store, or older than the history the
    server's feed replayed when it started), or newer than the store ever
    reached (a replaced or restored store): re-snapshot and watch from the
    new revision + 1.

    Why long poll rather than a streamed NDJSON response: every request is
    independent, so an agent can move to another server behind the load
    balancer between two polls and resume from its revision; proxies and
    timeouts need nothing special; a batch answers a burst of changes in one
    response. The cost is one request per batch, which the shared change
    feed makes cheap (see :mod:`kumonet.api.change_feed`: one store watch
    per root prefix per server, however many agents wait).

Hosts
-----

``PUT /v1/agent/hosts/{host}``
    Register (or re-register) with the host's facts ``{"host",
    "agent_types": ["Open vSwitch agent", "DHCP agent", "L3 agent",
    "Metadata agent"], "tunnel_ip", "tunnel_types", "bridge_mappings",
    "configurations", "heartbeat_interval" (s, default 30),
    "availability_zone", "integration_bridge", "datapath_type"}``. Answers
    ``{"host": <stored record>, "agents": [{"id", "agent_type"}...],
    "lease_ttl": 3 × interval}``.

``POST /v1/agent/hosts/{host}/heartbeat``
    Renews the host's lease (``{"lease_ttl"}``); ``404`` once it expired:
    register again.

Operational state
-----------------

``PUT /v1/agent/ports/{port_id}/status`` ``{"status": "ACTIVE"|"DOWN", "host"}``
    Sets the port's ``status`` and, as Neutron's OVS agent binding does,
    ``binding:host_id`` (if empty), ``binding:vif_type`` ``ovs`` and
    ``binding:vif_details``; through the ports' guarded plain update (revision
    bump). No write when nothing changes. ``409`` if the port is bound to
    another host. Answers ``{"port": {"id", "status", "revision_number"}}``.

``PUT /v1/agent/ports/status`` ``{"host", "ports": [{"port_id", "status"}...]}``
    The same for many ports at once (bring-up of a host), applied
    concurrently; answers ``{"ports": [{"id", "status", "revision_number"} |
    {"id", "error": {"type", "message"}}...]}`` in request order.

``PUT /v1/agent/routers/{router_id}/ha_state`` ``{"host", "state": "active"|"standby"|"fault"}``
    Stores ``/operational/neutron/l3/<router_id>/<host>`` under the host's
    lease (a dead host reports nothing). ``404`` if the host's lease expired.
    A registration that gets a new lease (after expiry, or a new heartbeat
    interval) leaves earlier HA states on the old one: report them again
    after registering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from kumonet.api.change_feed import ChangeFeeds, FeedGone
from kumonet.api.context import ApiContext
from kumonet.api.hosts import HostNotRegistered, HostRegistry
from kumonet.api.identity import ADMIN
from kumonet.api.neutron.agents import ha_state_key
from kumonet.api.neutron.ports import Ports
from kumonet.api.neutron.resource import identity_of, json_response, read_json
from kumonet.api.repository import Resource, neutron_prefix
from kumonet.model.agent import AGENT_TYPES, HOST_NAME, agent_id, parse_host_facts
from kumonet.model.common import timestamp
from kumonet.model.errors import BadRequest, Conflict, NeutronError, NotAuthorized
from kumonet.model.port import VIF_TYPE_UNBOUND
from kumonet.store import trees
from kumonet.store.contract import LeaseNotFound

AGENT_ROOTS = (
    trees.prefix(trees.Tree.CONFIG, "neutron"),
    trees.prefix(trees.Tree.CONFIG, "topology"),
    trees.prefix(trees.Tree.OPERATIONAL, "topology"),
    trees.prefix(trees.Tree.OPERATIONAL, "neutron"),
)
# The API's own bookkeeping: agents compile from resources, not from these.
HIDDEN_PREFIXES = tuple(neutron_prefix(part) for part in ("ipam", "macs", "segments",
                                                          "deleting"))
PORT_STATUSES = frozenset({"ACTIVE", "DOWN", "BUILD", "ERROR"})
HA_STATES = frozenset({"active", "standby", "fault"})
DEFAULT_WAIT_SECONDS = 30.0
MAX_WAIT_SECONDS = 300.0
DEFAULT_WATCH_LIMIT = 1000
MAX_WATCH_LIMIT = 10000
# Port reports of one batch in flight at once: enough to fill the store's
# group commits, few enough not to starve other requests.
PORT_REPORT_CONCURRENCY = 64


def shown_to_agents(key: str) -> bool:
    return not key.startswith(HIDDEN_PREFIXES)


def vif_details(host: dict[str, Any]) -> dict[str, Any]:
    """What Neutron's OVS mechanism driver puts in ``binding:vif_details``."""
    return {"port_filter": True, "connectivity": "l2", "ovs_hybrid_plug": False,
            "datapath_type": host.get("datapath_type", "system"),
            "bridge_name": host.get("integration_bridge", "br-int")}


def _query_number(request: web.Request, name: str, default: float | None,
                  low: float, high: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"Query parameter '{name}' is required")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"Query parameter '{name}' must be a number, not {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"Query parameter '{name}' must be between {low:g} and {high:g}")
    return value


def _require_admin(request: web.Request) -> None:
    if not identity_of(request).is_admin:
        raise NotAuthorized("rule:kumonet_agent is disallowed by policy")


class AgentSync:
    """The ``/v1/agent`` routes (listed in ``ApiParts.routes``); owns the
    server's change feeds and closes them when the app shuts down."""

    def __init__(self, context: ApiContext, hosts: HostRegistry, ports: Ports, *,
                 roots: Sequence[str] = AGENT_ROOTS, buffer_events: int | None = None) -> None:
        self.context = context
        self.store = context.store
        self.hosts = hosts
        self.ports = ports
        extra = {} if buffer_events is None else {"buffer_events": buffer_events}
        self.feeds = ChangeFeeds(context.store, roots, shown=shown_to_agents, **extra)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/agent/snapshot", self.snapshot)
        app.router.add_get("/v1/agent/watch", self.watch)
        app.router.add_put("/v1/agent/hosts/{host}", self.register)
        app.router.add_post("/v1/agent/hosts/{host}/heartbeat", self.heartbeat)
        app.router.add_put("/v1/agent/ports/status", self.port_statuses)
        app.router.add_put("/v1/agent/ports/{port_id}/status", self.port_status)
        app.router.add_put("/v1/agent/routers/{router_id}/ha_state", self.ha_state)
        app.on_shutdown.append(self._shutdown)

    async def _shutdown(self, _app: web.Application) -> None:
        # Answer parked long polls now instead of holding the shutdown.
        await self.feeds.close()

    def _feed_for(self, request: web.Request) -> tuple[str, Any]:
        prefix = request.query.get("prefix", "")
        feed = self.feeds.root_of(prefix) if prefix.endswith("/") else None
        if feed is None:
            raise BadRequest(f"prefix {prefix!r} is not served; use one under "
                             f"{', '.join(self.feeds.feeds)} ending in '/'")
        return prefix, feed

    async def snapshot(self, request: web.Request) -> web.Response:
        _require_admin(request)
        prefix, feed = self._feed_for(request)
        await feed.start()
        # Served from the feed's state in memory; the feed's buffer reaches
        # back before it, so watching from revision + 1 never gets 410 here.
        return web.Response(body=feed.snapshot(prefix).body(),
                            content_type="application/json")

    async def watch(self, request: web.Request) -> web.Response:
        _require_admin(request)
        prefix, feed = self._feed_for(request)
        since = int(_query_number(request, "revision", None, 1, 2**62))
        wait = _query_number(request, "timeout", DEFAULT_WAIT_SECONDS, 0, MAX_WAIT_SECONDS)
        limit = int(_query_number(request, "limit", DEFAULT_WATCH_LIMIT, 1, MAX_WATCH_LIMIT))
        try:
            batch = await feed.changes(since, key_prefix=prefix, wait_seconds=wait,
                                       limit=limit)
        except FeedGone as gone:
            return json_response({"NeutronError": {
                "type": "RevisionCompacted", "detail": "",
                "message": f"Revision {since} is compacted; re-snapshot."},
                "compact_revision": gone.floor}, status=410)
        return web.Response(body=batch.body, content_type="application/json")

    async def register(self, request: web.Request) -> web.Response:
        _require_admin(request)
        facts = parse_host_facts(request.match_info["host"], await read_json(request))
        record = await self.hosts.register(facts)
        return json_response({
            "host": record, "lease_ttl": facts.lease_ttl,
            "agents": [{"id": agent_id(facts.host, t), "agent_type": t,
                        "binary": AGENT_TYPES[t].binary} for t in facts.agent_types]})

    async def heartbeat(self, request: web.Request) -> web.Response:
        _require_admin(request)
        ttl = await self.hosts.heartbeat(request.match_info["host"])
        return json_response({"lease_ttl": ttl})

    async def _host_record(self, body: Any) -> dict[str, Any]:
        host = body.get("host") if isinstance(body, dict) else None
        if not isinstance(host, str) or not host:
            raise BadRequest("'host' is required")
        record = await self.hosts.record(host)
        if record is None:
            raise HostNotRegistered(host)
        return record

    async def _report_port(self, host: dict[str, Any], port_id: Any, status: Any) -> Resource:
        if status not in PORT_STATUSES:
            raise BadRequest(f"'status' must be one of {sorted(PORT_STATUSES)}")
        if not isinstance(port_id, str):
            raise BadRequest("'port_id' must be a string")
        found = await self.ports.repository.get(port_id)
        port = found.resource
        self._check_binding(port, host["host"])
        changes: dict[str, Any] = {"status": status, "binding:host_id": host["host"],
                                   "binding:vif_type": "ovs",
                                   "binding:vif_details": vif_details(host)}
        if port.get("binding:vif_type") not in (None, VIF_TYPE_UNBOUND, "ovs"):
            # Bound by another mechanism (e.g. a binding failure): leave it.
            changes = {"status": status}
        if all(port.get(k) == v for k, v in changes.items()):
            return port
        # Status and binding only: the plain guarded update (revision bump),
        # re-checking the binding on the port as it is when written.
        return await self.ports.update_plain(
            ADMIN, port_id, changes, None,
            check=lambda old, _new: self._check_binding(old, host["host"]))

    @staticmethod
    def _check_binding(port: Resource, host: str) -> None:
        bound = port.get("binding:host_id") or ""
        if bound and bound != host:
            raise Conflict(f"Port {port['id']} is bound to host {bound}, not {host}.",
                           type_name="PortBoundToOtherHost")

    @staticmethod
    def _port_answer(port: Resource) -> dict[str, Any]:
        return {"id": port["id"], "status": port["status"],
                "revision_number": port["revision_number"]}

    async def port_status(self, request: web.Request) -> web.Response:
        _require_admin(request)
        body = await read_json(request)
        host = await self._host_record(body)
        port = await self._report_port(host, request.match_info["port_id"], body.get("status"))
        return json_response({"port": self._port_answer(port)})

    async def port_statuses(self, request: web.Request) -> web.Response:
        _require_admin(request)
        body = await read_json(request)
        host = await self._host_record(body)
        reports = body.get("ports")
        if not isinstance(reports, list) or not all(isinstance(r, dict) for r in reports):
            raise BadRequest("'ports' must be a list of {\"port_id\", \"status\"}")
        limit = asyncio.Semaphore(PORT_REPORT_CONCURRENCY)

        async def one(report: dict[str, Any]) -> dict[str, Any]:
            async with limit:
                try:
                    port = await self._report_port(host, report.get("port_id"),
                                                   report.get("status"))
                except NeutronError as error:
                    return {"id": report.get("port_id"),
                            "error": {"type": error.type_name, "message": error.message}}
                return self._port_answer(port)

        results = await asyncio.gather(*(one(r) for r in reports))
        return json_response({"ports": results})

    async def ha_state(self, request: web.Request) -> web.Response:
        _require_admin(request)
        body = await read_json(request)
        host = await self._host_record(body)
        state = body.get("state")
        if state not in HA_STATES:
            raise BadRequest(f"'state' must be one of {sorted(HA_STATES)}")
        router_id = request.match_info["router_id"]
        if not HOST_NAME.match(router_id):
            raise BadRequest(f"Invalid router id {router_id!r}")
        key = ha_state_key(router_id, host["host"])
        lease = int(host["lease_id"])
        current = await self.store.get(key)
        if current is not None and current.lease == lease \
                and orjson.loads(current.value).get("state") == state:
            return json_response({"ha_state": orjson.loads(current.value)})
        value = {"router_id": router_id, "host": host["host"], "state": state,
                 "updated_at": timestamp(self.context.clock())}
        try:
            await self.store.put(key, orjson.dumps(value), lease=lease)
        except LeaseNotFound:
            raise HostNotRegistered(host["host"]) from None
        return json_response({"ha_state": value})
