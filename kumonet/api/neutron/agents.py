"""``/v2.0/agents`` and the L3 scheduling endpoints.

Agents are not stored as such: each registered host (see
:mod:`kumonet.api.hosts`) shows one agent per role it runs, with an id
derived from (host, role), ``alive`` from its lease key, and what operators
set (``admin_state_up``, ``description``) from
``/config/topology/agents/<agent_id>``. Agents are admin-only (Neutron's
policy): members list none and get 404 for any.

L3 placements (which L3 agents host a router) are intent:

    /config/neutron/l3_placements/<router_id>/<host>   {"router_id", "host", "agent_id"}

written by an admin (``POST /v2.0/agents/{id}/l3-routers``) and by the
router scheduler (:mod:`kumonet.api.neutron.l3_scheduler`, which also makes
and removes the HA port with each placement of an HA router); agents read
them through the agent sync API. The HA state an L3 host reports lives in
``/operational/neutron/l3/<router_id>/<host>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, Protocol

import orjson
from aiohttp import web

from kumonet.api.hosts import HOSTS_PREFIX, HostRegistry, agent_settings_key, alive_key
from kumonet.api.identity import Identity
from kumonet.api.listing import SpecialFilters
from kumonet.api.neutron.extensions import Extension
from kumonet.api.neutron.resource import (
    Visible,
    identity_of,
    json_response,
    read_json,
)
from kumonet.api.repository import (
    Repository,
    Resource,
    Stored,
    neutron_key,
    neutron_prefix,
)
from kumonet.api.transaction import Plan, commit_with_retry
from kumonet.model.agent import AGENT, AGENT_TYPES, L3_AGENT, agent_body, agent_id
from kumonet.model.errors import (
    BadRequest,
    Conflict,
    NeutronError,
    NotAuthorized,
    NotFound,
    resource_not_found,
)
from kumonet.store import trees
from kumonet.store.contract import Delete, KeyValue, Op, Put, Store, key_absent, key_unchanged

AGENT_EXTENSIONS = (
    Extension("agent", "agent", "The agent management extension."),
    Extension("l3_agent_scheduler", "L3 Agent Scheduler",
              "Schedule routers among l3 agents"),
)
L3_PLACEMENTS_PREFIX = neutron_prefix("l3_placements")
HA_STATES_PREFIX = trees.prefix(trees.Tree.OPERATIONAL, "neutron", "l3")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")


def l3_placement_key(router_id: str, host: str) -> str:
    return f"{L3_PLACEMENTS_PREFIX}{router_id}/{host}"


def ha_state_key(router_id: str, host: str) -> str:
    return f"{HA_STATES_PREFIX}{router_id}/{host}"


class MethodNotAllowed(NeutronError):
    status = 405
    type_name = "HTTPMethodNotAllowed"


class AgentDirectory(Repository):
    """The agents of every registered host, read as a collection."""

    def __init__(self, store: Store, hosts: HostRegistry) -> None:
        super().__init__(store, AGENT)
        self.hosts = hosts

    def _body(self, name: str, record: dict[str, Any], alive: bool,
              admin: dict[str, Any]) -> Resource:
        body = agent_body(AGENT_TYPES[name], record, alive=alive, admin=admin)
        body["heartbeat_timestamp"] = self.hosts.heartbeat_timestamp(record, alive)
        return body

    async def all(self) -> list[Resource]:
        records = await self.hosts.records()
        alive = await self.hosts.alive_hosts()
        settings = await self.hosts.agent_settings()
        return [self._body(name, record, record["host"] in alive,
                           settings.get(agent_id(record["host"], name), {}))
                for record in records for name in record.get("agent_types", ())
                if name in AGENT_TYPES]

    async def find(self, resource_id: str) -> Stored | None:
        if not _SAFE_ID.match(resource_id):
            return None
        # Ids are derived, not indexed: scan the hosts (hundreds, in memory).
        for kv in (await self.store.range(HOSTS_PREFIX)).kvs:
            record = orjson.loads(kv.value)
            for name in record.get("agent_types", ()):
                if name in AGENT_TYPES and agent_id(record["host"], name) == resource_id:
                    alive = await self.store.get(alive_key(record["host"])) is not None
                    settings = await self.store.get(agent_settings_key(resource_id))
                    admin = orjson.loads(settings.value) if settings is not None else {}
                    return Stored(self._body(name, record, alive, admin), kv)
        return None


def _admin_only(identity: Identity, action: str) -> None:
    if not identity.is_admin:
        raise NotAuthorized(f"rule:{action} is disallowed by policy")


class Agents:
    """The agents logic for the generic controller: list/show/update/delete."""

    special_filters: SpecialFilters = MappingProxyType({})

    def bulk_concurrently(self, items: list[dict[str, Any]]) -> bool:
        return False  # agents are not created through the API

    def __init__(self, store: Store, hosts: HostRegistry) -> None:
        self.store = store
        self.hosts = hosts
        self.definition = AGENT
        self.repository: Repository = AgentDirectory(store, hosts)

    async def visibility(self, identity: Identity) -> Visible:
        admin = identity.is_admin
        return lambda _r: admin

    async def presented(self, resources: list[Resource]) -> list[Resource]:
        return resources

    async def _found(self, identity: Identity, resource_id: str) -> Stored:
        found = await self.repository.find(resource_id)
        if found is None or not identity.is_admin:
            raise resource_not_found("agent", resource_id)
        return found

    async def create(self, identity: Identity, attrs: dict[str, Any]) -> Resource:
        raise MethodNotAllowed("Agents register themselves; they cannot be created.")

    async def update(self, identity: Identity, resource_id: str, changes: dict[str, Any],
                     expected_revision: int | None) -> Resource:
        found = await self._found(identity, resource_id)
        key = agent_settings_key(resource_id)

        async def decide() -> Plan[None]:
            kv = await self.store.get(key)
            settings = orjson.loads(kv.value) if kv is not None else {}
            settings.update(changes)
            compare = key_unchanged(kv) if kv is not None else key_absent(key)
            return Plan([compare], [Put(key, orjson.dumps(settings))], None)

        await commit_with_retry(self.store, decide)
        return {**found.resource, **changes}

    async def delete(self, identity: Identity, resource_id: str,
                     expected_revision: int | None) -> None:
        """Forget one role of a host (Neutron lets admins delete agents; a
        host that registers again brings it back)."""
        await self._found(identity, resource_id)

        async def decide() -> Plan[None]:
            found = await self.repository.find(resource_id)
            if found is None:
                raise resource_not_found("agent", resource_id)
            record = orjson.loads(found.kv.value)
            record["agent_types"] = [t for t in record["agent_types"]
                                     if agent_id(record["host"], t) != resource_id]
            ops: list[Op] = [Delete(agent_settings_key(resource_id))]
            if record["agent_types"]:
                ops.append(Put(found.kv.key, orjson.dumps(record)))
            else:
                ops.append(Delete(found.kv.key))
            return Plan([key_unchanged(found.kv)], ops, None)

        await commit_with_retry(self.store, decide)

    async def set_tags(self, identity: Identity, resource_id: str,
                       edit: Callable[[list[str]], list[str]]) -> Resource:
        await self._found(identity, resource_id)
        raise BadRequest("Agents do not support tags.")


class Placements(Protocol):
    """Writes placements (with an HA router's HA port on the host)."""

    async def add_by_hand(self, router_id: str, host: str) -> None: ...

    async def remove_host(self, router_id: str, host: str) -> bool: ...


class L3Scheduling:
    """``/v2.0/routers/{id}/l3-agents`` and ``/v2.0/agents/{id}/l3-routers``."""

    def __init__(self, store: Store, agents: Agents, placements: Placements) -> None:
        self.store = store
        self.agents = agents
        self.placements = placements

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v2.0/routers/{id}/l3-agents", self.router_agents)
        app.router.add_get("/v2.0/agents/{id}/l3-routers", self.agent_routers)
        app.router.add_post("/v2.0/agents/{id}/l3-routers", self.schedule)
        app.router.add_delete("/v2.0/agents/{id}/l3-routers/{router_id}", self.unschedule)

    async def _router(self, router_id: str) -> KeyValue:
        # Read the router key directly: the routers resource is optional here.
        kv = await self.store.get(neutron_key("routers", router_id)) \
            if _SAFE_ID.match(router_id) else None
        if kv is None:
            raise resource_not_found("router", router_id)
        return kv

    async def _l3_agent(self, identity: Identity, resource_id: str) -> Resource:
        found = await self.agents._found(identity, resource_id)
        return found.resource

    async def router_agents(self, request: web.Request) -> web.Response:
        _admin_only(identity_of(request), "get_l3-agents")
        router_id = request.match_info["id"]
        router = orjson.loads((await self._router(router_id)).value)
        placements = await self.store.range(f"{L3_PLACEMENTS_PREFIX}{router_id}/")
        states: dict[str, str] = {}
        newest: tuple[int, str] | None = None
        for kv in (await self.store.range(f"{HA_STATES_PREFIX}{router_id}/")).kvs:
            host = kv.key.rsplit("/", 1)[1]
            states[host] = orjson.loads(kv.value).get("state")
            if states[host] == "active" and (newest is None or (kv.mod_revision, host) > newest):
                newest = (kv.mod_revision, host)
        # Only the latest transition to active is shown active: an older one is
        # a replaced master (dead, whose lease has not expired yet, or cut off),
        # as the agents see it when they pick where the router's ports live.
        for host, state in states.items():
            if state == "active" and (newest is None or host != newest[1]):
                states[host] = "standby"
        agents = []
        for kv in placements.kvs:
            found = await self.agents.repository.find(orjson.loads(kv.value)["agent_id"])
            if found is None:
                continue
            body = dict(found.resource)
            host = body["host"]
            if router.get("ha") or host in states:
                body["ha_state"] = states.get(host) or "standby"
            agents.append(body)
        return json_response({"agents": agents})

    async def agent_routers(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        _admin_only(identity, "get_l3-routers")
        agent = await self._l3_agent(identity, request.match_info["id"])
        routers = []
        for kv in (await self.store.range(L3_PLACEMENTS_PREFIX)).kvs:
            placement = orjson.loads(kv.value)
            if placement.get("agent_id") != agent["id"]:
                continue
            router = await self.store.get(neutron_key("routers", placement["router_id"]))
            if router is not None:
                routers.append(orjson.loads(router.value))
        return json_response({"routers": routers})

    async def schedule(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        _admin_only(identity, "create_l3-router")
        agent = await self._l3_agent(identity, request.match_info["id"])
        body = await read_json(request)
        router_id = body.get("router_id") if isinstance(body, dict) else None
        if not isinstance(router_id, str):
            raise BadRequest("Request body must be {\"router_id\": ...}")
        if agent["agent_type"] != L3_AGENT.name or not agent["admin_state_up"]:
            # Neutron answers this one as a 404 (neutron-lib's InvalidL3Agent).
            raise NotFound(f"Agent {agent['id']} is not a L3 Agent or has been disabled",
                           type_name="InvalidL3Agent")
        await self._router(router_id)
        # Neutron: a router already on this agent is fine (nothing to do); a
        # legacy router on another agent is 409 RouterHostedByL3Agent.
        await self.placements.add_by_hand(router_id, agent["host"])
        return json_response({}, status=201)

    async def unschedule(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        _admin_only(identity, "delete_l3-router")
        agent = await self._l3_agent(identity, request.match_info["id"])
        router_id = request.match_info["router_id"]
        if not _SAFE_ID.match(router_id) or \
                not await self.placements.remove_host(router_id, agent["host"]):
            raise Conflict(f"The router {router_id} is not hosted by L3 agent {agent['id']}.",
                           type_name="RouterNotHostedByL3Agent")
        return web.Response(status=204)
