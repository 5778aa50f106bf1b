"""Scheduling routers onto L3 hosts, and rescheduling off dead ones.

Placements are the intent :class:`~kumonet.api.neutron.agents.L3Scheduling`
reads and agents follow (``/config/neutron/l3_placements/<router>/<host>``).
Beside them each router made through the API has a schedule record
(``/config/neutron/l3_schedules/<router>``, :class:`RouterSchedule`), written
in the router's create transaction and rewritten under its revision with
every placement change: two servers scheduling one router at once cannot
both add hosts past its maximum, and one placement per host is the key's
shape. Routers without a record (written without the API) are scheduled by
hand only.

Who schedules:

* the server creating a router places it at once, on up to
  ``max_l3_agents_per_router`` live L3 hosts for an HA router (one for a
  legacy router), least loaded first; with fewer live hosts than
  ``min_l3_agents_per_router`` it takes what there is, as Neutron does
  since it deprecated the minimum (a create never fails for want of
  agents);
* admins add and remove placements by hand (``/v2.0/agents/{id}/l3-routers``);
* the :class:`L3Rescheduler`, singleton work of the leader
  (:class:`~kumonet.cluster.leadership.Leadership`), places routers that
  have no host when L3 hosts register, tops routers below the minimum up
  onto hosts that (re)register, and moves placements off a host whose
  alive key has been gone for the grace period — unless the router's live
  hosts all report standby: then the lost host is still its VRRP master
  (only its agent lost the servers) and moving would only cause a failover
  when it returns. Each of its writes carries the fencing token.

An HA placement comes with the router's HA port on that host: the port is
made first, then the placement is committed; if the commit loses, the port
is deleted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Any

import orjson
from aiohttp import web

from kumonet.api.context import ApiContext
from kumonet.api.hosts import ALIVE_PREFIX, HostRegistry
from kumonet.api.neutron.agents import (
    HA_STATES_PREFIX,
    L3_PLACEMENTS_PREFIX,
    l3_placement_key,
)
from kumonet.api.neutron.l3_ha import RouterHA
from kumonet.api.neutron.routers import RouterChange
from kumonet.api.repository import Resource, neutron_key, neutron_prefix, still_exists
from kumonet.cluster.leadership import Leadership, LeaderTerm
from kumonet.model.agent import L3_AGENT, agent_id
from kumonet.model.common import timestamp
from kumonet.model.errors import Conflict, NotFound
from kumonet.model.l3_ha import (
    HA_NETWORK_NAME,
    ROUTER_STATUS_ACTIVE,
    ROUTER_STATUS_SPLIT_BRAIN,
    AgentCount,
    HANetwork,
    RouterSchedule,
    agent_count,
    choose_hosts,
    split_brain,
)
from kumonet.store.contract import (
    Compare,
    Delete,
    DeletePrefix,
    KeyValue,
    Op,
    Put,
    StoreUnavailable,
    key_absent,
    key_unchanged,
)

log = logging.getLogger(__name__)
SCHEDULES_PREFIX = neutron_prefix("l3_schedules")
LEADER_NAME = "l3-scheduler"
# Dead hosts stay placed this many of their heartbeat intervals after their
# alive key (itself 3 intervals of lease) is gone.
GRACE_HEARTBEATS = 3


def schedule_key(router_id: str) -> str:
    return SCHEDULES_PREFIX + router_id


class Added(Enum):
    ADDED = "added"
    ALREADY = "already"
    LOST_RACE = "lost race"
    NO_ROUTER = "no router"


@dataclass(frozen=True, slots=True)
class ReschedulerSettings:
    """The rescheduler's pace. ``grace_seconds`` None: three heartbeat
    intervals of the dead host."""

    scan_seconds: float = 2.0
    grace_seconds: float | None = None
    leader_ttl: int = 10
    sweep_seconds: float = 60.0


def held_by_unreachable(
    states: Mapping[str, str], placed: Iterable[str], alive: Iterable[str]
) -> bool:
    """An HA router whose live hosts all report standby (at least one) is
    served by a host the servers lost: its peers still hear its VRRP adverts,
    else one of them would be active by now. Its agent lost the servers (a
    management network cut), not its dataplane: moving the router off would
    stop a working master when the agent returns, a needless failover."""
    live = [states.get(host) for host in placed if host in set(alive)]
    return bool(live) and all(state == "standby" for state in live)


@dataclass
class LeaderMemory:
    """What the leader keeps between passes (lost with the term; a new
    leader starts afresh, which only delays a move by one grace period)."""

    # When this leader first saw each placed host dead.
    dead_since: dict[str, float] = field(default_factory=dict)
    # Routers whose status it set to ERROR (split brain); read at start.
    errored: set[str] | None = None
    # When this leader first saw two live hosts report each router active.
    split_since: dict[str, float] = field(default_factory=dict)
    last_sweep: float = 0.0


class RouterScheduler:
    """Placements of routers on L3 hosts, with their HA ports."""

    def __init__(self, context: ApiContext, hosts: HostRegistry, ha: RouterHA) -> None:
        self.context = context
        self.store = context.store
        self.hosts = hosts
        self.ha = ha

    def count_for(self, router: Resource) -> AgentCount:
        l3 = self.context.config.l3
        return agent_count(bool(router.get("ha")), l3.min_l3_agents_per_router,
                           l3.max_l3_agents_per_router)

    # -- reads -----------------------------------------------------------------

    async def candidates(self) -> dict[str, int]:
        """Live L3 hosts whose L3 agent is enabled, with their load (the
        routers placed on each)."""
        alive = await self.hosts.alive_hosts()
        settings = await self.hosts.agent_settings()
        hosts = {}
        for record in await self.hosts.records():
            host = record["host"]
            if host not in alive or L3_AGENT.name not in record.get("agent_types", ()):
                continue
            if settings.get(agent_id(host, L3_AGENT.name), {}).get("admin_state_up",
                                                                     True) is False:
                continue
            hosts[host] = 0
        for kv in (await self.store.range(L3_PLACEMENTS_PREFIX)).kvs:
            host = kv.key.rsplit("/", 1)[1]
            if host in hosts:
                hosts[host] += 1
        return hosts

    async def placed_hosts(self, router_id: str) -> list[str]:
        prefix = f"{L3_PLACEMENTS_PREFIX}{router_id}/"
        return [kv.key[len(prefix):] for kv in (await self.store.range(prefix)).kvs]

    async def schedule_of(self, router_id: str) -> tuple[RouterSchedule, KeyValue] | None:
        kv = await self.store.get(schedule_key(router_id))
        if kv is None:
            return None
        return RouterSchedule.from_json(orjson.loads(kv.value)), kv

    async def schedules(self) -> list[RouterSchedule]:
        return [RouterSchedule.from_json(orjson.loads(kv.value))
                for kv in (await self.store.range(SCHEDULES_PREFIX)).kvs]

    # -- the router's own transactions -----------------------------------------

    @staticmethod
    def creating(router: Resource) -> tuple[list[Compare], list[Op]]:
        """The schedule record, committed with the new router."""
        record = RouterSchedule(router["id"], router.get("tenant_id") or "",
                                bool(router.get("ha")))
        key = schedule_key(router["id"])
        return [key_absent(key)], [Put(key, orjson.dumps(record.to_json()))]

    async def converting(self, router: Resource) -> tuple[list[Compare], list[Op]]:
        """The record follows the router's ``ha`` (committed with it)."""
        found = await self.schedule_of(router["id"])
        if found is None:
            return [], []
        record, kv = found
        new = RouterSchedule(record.router_id, record.project_id, bool(router.get("ha")),
                             record.hosts)
        return [key_unchanged(kv)], [Put(kv.key, orjson.dumps(new.to_json()))]

    @staticmethod
    def deleting(router_id: str) -> list[Op]:
        """Placements and record go with the router (in its delete)."""
        return [DeletePrefix(f"{L3_PLACEMENTS_PREFIX}{router_id}/"),
                Delete(schedule_key(router_id))]

    # -- placing -----------------------------------------------------------------

    async def add_host(self, router_id: str, host: str, *, expected: KeyValue | None = None,
                       fence: Compare | None = None) -> Added:
        """Place the router on ``host`` (with its HA port). With
        ``expected``, only if the schedule record is still that one (the
        decision it was based on holds)."""
        router_kv = await self.store.get(neutron_key("routers", router_id))
        if router_kv is None:
            return Added.NO_ROUTER
        router = orjson.loads(router_kv.value)
        key = l3_placement_key(router_id, host)
        if await self.store.get(key) is not None:
            return Added.ALREADY
        found = await self.schedule_of(router_id)
        if expected is not None and (found is None or found[1].mod_revision
                                     != expected.mod_revision):
            return Added.LOST_RACE
        port = await self.ha.create_port(router, host) if router.get("ha") else None
        placement = {"router_id": router_id, "host": host,
                     "agent_id": agent_id(host, L3_AGENT.name)}
        # The router must still be the one read: no placement outlives it.
        compares = [still_exists(router_kv), key_absent(key)]
        ops: list[Op] = [Put(key, orjson.dumps(placement))]
        if found is not None:
            record, kv = found
            compares.append(key_unchanged(kv))
            ops.append(Put(kv.key, orjson.dumps(record.with_hosts([*record.hosts, host])
                                                .to_json())))
        if fence is not None:
            compares.append(fence)
        try:
            result = await self.store.txn(compares, ops)
        except BaseException:
            await self._drop_port(port)
            raise
        if not result.succeeded:
            await self._drop_port(port)
            return Added.LOST_RACE
        if port is not None:
            # Ports a lost race or a crash left on this host for the router.
            for other in (await self.ha.ports_of(router_id)).get(host, []):
                if other["id"] != port["id"]:
                    await self._drop_port(other)
        return Added.ADDED

    async def _drop_port(self, port: Resource | None) -> None:
        if port is not None:
            await self.ha.delete_port(port["id"])

    async def remove_host(self, router_id: str, host: str, *,
                          fence: Compare | None = None, keep_ha_port: bool = False) -> bool:
        """Take the router off ``host`` (and its HA port there, unless
        ``keep_ha_port``); False if it was not placed there."""
        key = l3_placement_key(router_id, host)
        while True:
            placement = await self.store.get(key)
            if placement is None:
                return False
            compares = [key_unchanged(placement)]
            ops: list[Op] = [Delete(key)]
            found = await self.schedule_of(router_id)
            if found is not None:
                record, kv = found
                compares.append(key_unchanged(kv))
                ops.append(Put(kv.key, orjson.dumps(record.with_hosts(
                    h for h in record.hosts if h != host).to_json())))
            if fence is not None:
                compares.append(fence)
            result = await self.store.txn(compares, ops)
            if result.succeeded:
                break
            if fence is not None:
                kv_fence = await self.store.get(fence.key)
                if kv_fence is None or kv_fence.create_revision != fence.value:
                    return False
        if not keep_ha_port:
            await self.ha.delete_ports(router_id, [host])
        return True

    async def schedule(self, router_id: str, *, up_to: str = "max",
                       fence: Compare | None = None, only: Iterable[str] | None = None
                       ) -> list[str]:
        """Add hosts until the router has its maximum (``up_to="min"``: its
        minimum) or no live candidate is left; idempotent. ``only``: choose
        among these hosts only. Returns the hosts added."""
        added: list[str] = []
        for _ in range(100):
            router_kv = await self.store.get(neutron_key("routers", router_id))
            found = await self.schedule_of(router_id)
            if router_kv is None or found is None:
                return added
            _, kv = found
            count = self.count_for(orjson.loads(router_kv.value))
            target = count.maximum if up_to == "max" else count.minimum
            current = await self.placed_hosts(router_id)
            if len(current) >= min(target, count.maximum):
                return added
            candidates = await self.candidates()
            if only is not None:
                allowed = set(only)
                candidates = {h: n for h, n in candidates.items() if h in allowed}
            chosen = choose_hosts(candidates, current, 1)
            if not chosen:
                return added
            outcome = await self.add_host(router_id, chosen[0], expected=kv, fence=fence)
            if outcome is Added.NO_ROUTER:
                return added
            if outcome is Added.ADDED:
                added.append(chosen[0])
            elif fence is not None and not await self._fence_holds(fence):
                return added
        return added

    async def _fence_holds(self, fence: Compare) -> bool:
        kv = await self.store.get(fence.key)
        return kv is not None and kv.create_revision == fence.value

    async def add_by_hand(self, router_id: str, host: str) -> None:
        """``POST /v2.0/agents/{id}/l3-routers``, as Neutron: no-op if the
        router is on that host already; a legacy router on another host is
        409 RouterHostedByL3Agent; an HA router gets one more host (even
        past its maximum: the admin said so)."""
        for _ in range(100):
            router_kv = await self.store.get(neutron_key("routers", router_id))
            if router_kv is None:
                raise NotFound(f"Router {router_id} could not be found",
                               type_name="RouterNotFound")
            router = orjson.loads(router_kv.value)
            current = await self.placed_hosts(router_id)
            if host in current:
                return
            if current and not router.get("ha"):
                raise Conflict(f"The router {router_id} has been already hosted by the L3 "
                               f"Agent {agent_id(current[0], L3_AGENT.name)}.",
                               type_name="RouterHostedByL3Agent")
            outcome = await self.add_host(router_id, host)
            if outcome in (Added.ADDED, Added.ALREADY):
                return
            if outcome is Added.NO_ROUTER:
                raise NotFound(f"Router {router_id} could not be found",
                               type_name="RouterNotFound")
        raise Conflict(f"Router {router_id} is being rescheduled; retry.",
                       type_name="RouterSchedulingFailed")

    async def trim(self, router_id: str, keep: int) -> None:
        """Keep at most ``keep`` placements (a router that stopped being HA):
        live hosts first."""
        alive = await self.hosts.alive_hosts()
        current = sorted(await self.placed_hosts(router_id),
                         key=lambda h: (h not in alive, h))
        for host in current[keep:]:
            await self.remove_host(router_id, host)


class RouterL3:
    """The :class:`~kumonet.api.neutron.routers.RouterLifecycle` of L3 HA and
    scheduling: what a router's create, ``ha`` conversion and delete add."""

    def __init__(self, ha: RouterHA, scheduler: RouterScheduler) -> None:
        self.ha = ha
        self.scheduler = scheduler

    async def creating(self, router: Resource) -> RouterChange:
        compares, ops = self.scheduler.creating(router)
        router.pop("ha_vr_id", None)
        if router.get("ha"):
            membership = await self.ha.joining(router)
            compares += membership.compares
            ops += membership.ops

        async def place() -> None:
            await self.scheduler.schedule(router["id"])

        return RouterChange(compares, ops, place)

    async def converting(self, old: Resource, new: Resource) -> RouterChange:
        compares, ops = await self.scheduler.converting(new)
        router_id = new["id"]
        if new.get("ha"):
            membership = await self.ha.joining(new)

            async def to_ha() -> None:
                # The hosts it has keep it, now with HA ports; then more.
                found = await self.scheduler.store.get(neutron_key("routers", router_id))
                if found is None:
                    return
                router = orjson.loads(found.value)
                for host in await self.scheduler.placed_hosts(router_id):
                    await self.ha.create_port(router, host)
                await self.scheduler.schedule(router_id)

            after = to_ha
        else:
            membership = await self.ha.leaving(old)
            new.pop("ha_vr_id", None)
            gone = membership.network_to_delete

            async def to_legacy() -> None:
                await self.scheduler.trim(router_id, 1)
                await self.ha.delete_ports(router_id)
                if gone is not None:
                    await self.ha.delete_network(gone)

            after = to_legacy
        return RouterChange([*compares, *membership.compares], [*ops, *membership.ops], after)

    async def deleting(self, router: Resource) -> RouterChange:
        membership = await self.ha.leaving(router) if router.get("ha") else None
        ops = self.scheduler.deleting(router["id"])
        gone = membership.network_to_delete if membership is not None else None

        async def cleanup() -> None:
            await self.ha.delete_ports(router["id"])
            if gone is not None:
                await self.ha.delete_network(gone)

        if membership is None:
            return RouterChange((), ops, cleanup)
        return RouterChange(membership.compares, [*membership.ops, *ops], cleanup)


class L3Rescheduler:
    """The leader's singleton work: see the module docstring."""

    def __init__(self, scheduler: RouterScheduler, settings: ReschedulerSettings) -> None:
        self.scheduler = scheduler
        self.store = scheduler.store
        self.hosts = scheduler.hosts
        self.settings = settings

    async def run(self, term: LeaderTerm) -> None:
        """Scan until cancelled (the term ends)."""
        memory = LeaderMemory()
        while not term.lost.is_set():
            try:
                await self.scan(term, memory)
                if time.monotonic() - memory.last_sweep >= self.settings.sweep_seconds:
                    await self.sweep()
                    memory.last_sweep = time.monotonic()
            except Exception:
                # One failed pass (store briefly unavailable) must not end
                # the leader's work; the next pass starts from fresh reads.
                log.exception("L3 rescheduling pass failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.scan_seconds):
                    await term.lost.wait()

    def _grace(self, record: dict[str, Any] | None) -> float:
        if self.settings.grace_seconds is not None:
            return self.settings.grace_seconds
        interval = (record or {}).get("heartbeat_interval") or 30
        return float(interval) * GRACE_HEARTBEATS

    async def scan(self, term: LeaderTerm, memory: LeaderMemory) -> None:
        """One pass over every scheduled router: a few range reads, then
        writes only where something is to be done."""
        fence = term.fence()
        now = time.monotonic()
        # When each live host (re)registered: its alive key's create_revision.
        alive = {kv.key[len(ALIVE_PREFIX):]: kv.create_revision
                 for kv in (await self.store.range(ALIVE_PREFIX)).kvs}
        records = {r["host"]: r for r in await self.hosts.records()}
        placements: dict[str, list[str]] = {}
        for kv in (await self.store.range(L3_PLACEMENTS_PREFIX)).kvs:
            router_id, host = kv.key[len(L3_PLACEMENTS_PREFIX):].split("/", 1)
            placements.setdefault(router_id, []).append(host)
        states: dict[str, dict[str, str]] = {}
        for kv in (await self.store.range(HA_STATES_PREFIX)).kvs:
            router_id, host = kv.key[len(HA_STATES_PREFIX):].split("/", 1)
            states.setdefault(router_id, {})[host] = orjson.loads(kv.value).get("state")
        for host in alive:
            memory.dead_since.pop(host, None)
        if memory.errored is None:
            memory.errored = {router_id for router_id, status in await self._router_statuses()
                              if status == ROUTER_STATUS_SPLIT_BRAIN}
        for kv in (await self.store.range(SCHEDULES_PREFIX)).kvs:
            if term.lost.is_set():
                return
            schedule = RouterSchedule.from_json(orjson.loads(kv.value))
            router_id = schedule.router_id
            placed = placements.get(router_id, [])
            held = schedule.ha and held_by_unreachable(states.get(router_id, {}), placed, alive)
            for host in placed:
                if host in alive:
                    continue
                since = memory.dead_since.setdefault(host, now)
                if now - since >= self._grace(records.get(host)) and not held:
                    await self._move_off(router_id, host, fence)
            if not placed:
                await self.scheduler.schedule(router_id, fence=fence)
            else:
                # Hosts that registered after the router's placements last
                # changed top it up to its minimum; a host an admin took it
                # off on purpose is not put back.
                newer = [h for h, created in alive.items() if created > kv.mod_revision]
                if newer:
                    await self.scheduler.schedule(router_id, up_to="min", fence=fence,
                                                  only=newer)
            split = schedule.ha and split_brain(states.get(router_id, {}), alive)
            if split:
                # A master that died keeps its "active" until its lease expires
                # (a grace of heartbeats): every failover would show as a split
                # for that long. Longer, both hosts are alive: a real split.
                since = memory.split_since.setdefault(router_id, now)
                actives = [h for h, state in states[router_id].items() if state == "active"]
                split = now - since >= max(self._grace(records.get(h)) for h in actives)
            else:
                memory.split_since.pop(router_id, None)
            wanted = ROUTER_STATUS_SPLIT_BRAIN if split else ROUTER_STATUS_ACTIVE
            if split != (router_id in memory.errored) and \
                    await self._set_status(router_id, wanted, fence):
                if split:
                    memory.errored.add(router_id)
                else:
                    memory.errored.discard(router_id)
        for host in list(memory.dead_since):
            if host not in records:
                del memory.dead_since[host]
        for router_id in set(memory.split_since) - set(states):
            del memory.split_since[router_id]

    async def _router_statuses(self) -> list[tuple[str, str]]:
        prefix = neutron_prefix("routers")
        return [(kv.key[len(prefix):], orjson.loads(kv.value).get("status", ""))
                for kv in (await self.store.range(prefix)).kvs]

    async def _move_off(self, router_id: str, host: str, fence: Compare) -> None:
        """Replace a dead host by a live one; a router with no replacement
        keeps its placement (its namespaces come back with the host)."""
        placed = await self.scheduler.placed_hosts(router_id)
        candidates = await self.scheduler.candidates()
        if not choose_hosts(candidates, placed, 1):
            return
        log.info("moving router %s off dead host %s", router_id, host)
        # The lost host's HA port stays (the sweep deletes it once the host is
        # back): if it was cut off, not dead, its keepalived may still be master
        # when the partition heals, and only through that port does it hear the
        # new master's adverts and yield, before its agent catches up.
        if await self.scheduler.remove_host(router_id, host, fence=fence, keep_ha_port=True):
            await self.scheduler.schedule(router_id, up_to="min", fence=fence)
            # A router that was at its maximum gets its place back too.
            await self.scheduler.schedule(router_id, fence=fence)

    async def _set_status(self, router_id: str, status: str, fence: Compare) -> bool:
        """Router status ERROR while split (ACTIVE again after); True once
        the router has that status (or is gone)."""
        key = neutron_key("routers", router_id)
        kv = await self.store.get(key)
        if kv is None:
            return True
        router = orjson.loads(kv.value)
        if router.get("status") == status:
            return True
        if router.get("status") not in (ROUTER_STATUS_ACTIVE, ROUTER_STATUS_SPLIT_BRAIN):
            return False
        router["status"] = status
        router["revision_number"] = router.get("revision_number", 0) + 1
        router["updated_at"] = timestamp(self.scheduler.context.clock())
        result = await self.store.txn([key_unchanged(kv), fence],
                                      [Put(key, orjson.dumps(router))])
        return result.succeeded

    async def sweep(self) -> None:
        """Leftovers of crashes between two steps: HA networks no project
        record names (the last router's delete died before deleting it),
        and HA ports with no placement behind them (a placement that never
        committed, or a router moved off a lost host), older than a sweep
        period (not an add in flight), on live hosts (a lost one may still
        run the router: see `_move_off`)."""
        networks = await self.scheduler.ha.networks.repository.all()
        named = {r.network_id for r in await self.scheduler.ha.all_networks()}
        for network in networks:
            if network["name"].startswith(HA_NETWORK_NAME.format("")) and \
                    network.get("tenant_id") == "" and network["id"] not in named:
                log.info("deleting orphan HA network %s", network["id"])
                await self.scheduler.ha.delete_network(HANetwork(
                    "", network["id"], "", ()))
        placed = {tuple(kv.key[len(L3_PLACEMENTS_PREFIX):].split("/", 1))
                  for kv in (await self.store.range(L3_PLACEMENTS_PREFIX)).kvs}
        oldest = timestamp(self.scheduler.context.clock()
                           - timedelta(seconds=self.settings.sweep_seconds))
        alive = {kv.key[len(ALIVE_PREFIX):] for kv in (await self.store.range(ALIVE_PREFIX)).kvs}
        for port in await self.scheduler.ha.all_ports():
            pair = (port.get("device_id", ""), port.get("binding:host_id", ""))
            if pair not in placed and port.get("created_at", "") < oldest and pair[1] in alive:
                log.info("deleting orphan HA port %s", port["id"])
                await self.scheduler.ha.delete_port(port["id"])

class ReschedulerService:
    """Runs the :class:`L3Rescheduler` under :class:`Leadership` for as long
    as the app serves (every server contends; one leads)."""

    def __init__(self, rescheduler: L3Rescheduler, *, identity: str | None = None) -> None:
        self.rescheduler = rescheduler
        self.store = rescheduler.store
        self.identity = identity or f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.leadership = Leadership(rescheduler.store, LEADER_NAME, identity=self.identity,
                                     ttl=rescheduler.settings.leader_ttl)
        self._task: asyncio.Task[None] | None = None

    def add_routes(self, app: web.Application) -> None:
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._stop)

    async def _start(self, _app: web.Application) -> None:
        self._task = asyncio.create_task(self._run(), name="l3 rescheduler")

    async def _run(self) -> None:
        await self._wait_for_work()
        await self.leadership.run(self.rescheduler.run)

    async def _wait_for_work(self) -> None:
        """Contend only once a router is scheduled: an idle server writes
        nothing (no leader key, no lease). Polled at the scan pace rather
        than watched: one cheap read, and no store watch per server."""
        while True:
            with contextlib.suppress(StoreUnavailable):
                if (await self.store.range(SCHEDULES_PREFIX)).kvs:
                    return
            await asyncio.sleep(self.rescheduler.settings.scan_seconds)

    async def _stop(self, _app: web.Application) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None
