"""The agent's L3 role (``[agent] l3_agent = true``): routers placed on this
host become namespaces, NAT and keepalived through `kumonet.l3.L3Host`.

Intent comes from the agent's `IntentMirror` (routers, floating IPs, the
``l3_placements`` of every router, ports, subnets, networks as Neutron JSON).
For every router placed on this host a `RouterIntent` is built
(`router_from_neutron`) and compared with the one last applied: only changed
routers are applied, unplaced or deleted ones removed. The first pass, and the
first after a re-snapshot, is a full ``reconcile`` (which also removes
leftovers of routers no longer wanted). An unchanged router is never
re-applied, and ``L3Host.apply`` itself leaves a running keepalived alone
when its configuration did not change: an agent restart causes no failover.

Partitions. All hosts run keepalived at one priority with ``nopreempt``, so
VRRP alone settles two masters meeting after a partition by the higher
address: an isolated old master could take the role back from the host that
took over, a second transition and outage. The agent decides the outcome
instead, through each router's priority offset (a ``track_file`` keepalived
follows by inotify, no reload; `priority_offset` is the rule):

* a master the servers know as the newest active, while an older active
  report still stands (it took over from a master that may be cut off, not
  dead), is raised by ``TAKEOVER_BOOST`` until that report goes (the old
  master's lease expires or it reports standby);
* a master the servers have not acknowledged yet, one with a newer active
  elsewhere (it was cut off from its peers), and every master of an agent cut
  off from the servers for ``ISOLATION_INTERVALS`` report intervals are
  lowered by ``DEMOTION``;
* otherwise (and always on a standby) the offset is 0.

So when a partition heals, the side the servers saw take over keeps the
master role and the cut-off host yields at once: one transition (its own, to
standby), none on the master. The isolation timeout is below the lease time
(3 intervals): the booster keeps its boost until the old master's lease has
expired, and by then the old master has lowered itself.

Coming back from isolation, the masters of this host stay lowered ("held")
until the servers' HA states, read afresh (a snapshot: the mirror may not have
caught up yet, and may still lack the report of the host that took over), show
no ACTIVE elsewhere newer than this host's own transition. Nor is a held
master's ACTIVE reported meanwhile: after a lease expired, the re-report would
get a revision newer than the takeover's and look like a takeover itself (the
others would yield to it). A held master that was replaced stays lowered and
unreported until VRRP makes it a standby (hearing the other master), or until
the other host's report goes or says standby (it is a master alone again).

A takeover whose report did not get through (the servers unreachable at the
transition: this host may be the one cut off, a standby that lost its peers)
is held the same way, from the failed report on. When the servers answer and
show another master, the takeover stays unreported for ``VRRP_SETTLE`` more:
if the partition healed, this host (lowered) hears the other master and
yields, and the ports never move here and back (a lost packet on the heal).
If it is still master after that, the other one does not hear it (dead with
its lease not expired yet, or still cut off): it is reported, and the latest
transition wins as usual.

VRRP transitions arrive through ``on_ha_state`` (keepalived's notify FIFO, read
on the event loop) and are sent at once by their own task to
``PUT /v1/agent/routers/{id}/ha_state``; a report that fails is retried with the
latest state. Every state is reported again after each (re-)registration,
since a new lease drops the states stored under the old one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kumonet.agent.config import AgentConfig
from kumonet.agent.mirror import HA_STATES_PREFIX, HaReport, IntentMirror
from kumonet.agent.router_hosts import ACTIVE
from kumonet.agent.server_client import ServerClient, ServerUnavailable
from kumonet.l3.command import L3CommandError, run
from kumonet.l3.garp import announce
from kumonet.l3.ha_state import RouterHAState
from kumonet.l3.intent import RouterIntent, RouterIntentError, router_from_neutron
from kumonet.l3.interface import OvsVethDriver
from kumonet.l3.keepalived import KeepalivedAction, KeepalivedError, write_priority_offset
from kumonet.l3.plan import KeepalivedFiles, L3Settings, VrrpSettings
from kumonet.l3.router import L3Host

LOG = logging.getLogger(__name__)

RETRY_DELAY = 0.5
L3_ERRORS = (L3CommandError, KeepalivedError, OSError)
#: How far a master that must yield drops its VRRP priority (any drop does).
DEMOTION = 10
#: How far a master that took over from a possibly cut-off one raises it.
TAKEOVER_BOOST = 10
#: Report intervals without an answer from the servers after which this host's
#: masters count as cut off (below the 3 intervals of the host's lease).
ISOLATION_INTERVALS = 1.5
#: Every host's VRRP priority (equal: ``nopreempt`` and the first election
#: decide). High, because the backup's master-down timer is 3 adverts plus a
#: skew of (256 - priority)/256 adverts: 200 waits 0.32 s at 0.1 s adverts where
#: Neutron's 50 waits 0.38 s.
VRRP_PRIORITY = 200
#: How long an unreported takeover waits for VRRP to settle it once the servers
#: show another master (module docstring): at least a second, and at least ten
#: adverts (the master-down interval is about 3.2 adverts).
VRRP_SETTLE_MIN = 1.0
VRRP_SETTLE_ADVERTS = 10


class L3Role:
    """The routers of this host, following the mirror (see the module docstring).

    The agent calls ``changed()`` when routers or their ports, subnets,
    floating IPs or placements change, ``announce(port_ids)`` after a flow
    update made router ports local here, ``report_all_states()`` after a
    registration, and runs ``run(config_loaded)`` as one of its tasks."""

    def __init__(
        self,
        config: AgentConfig,
        client: ServerClient,
        mirror: IntentMirror,
        *,
        on_local_state: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        # Told when a router's role here changed (the L2 side recompiles at once).
        self._on_local_state = on_local_state
        # router → active here? From keepalived directly, ahead of the servers' echo.
        self.local_active: dict[str, bool] = {}
        self._announcing: set[asyncio.Task[None]] = set()
        self.client = client
        self.mirror = mirror
        self.settings = L3Settings(
            state_path=config.l3_state_path,
            namespace_prefix=config.router_namespace_prefix,
            vrrp=VrrpSettings(advert_int=config.ha_vrrp_advert_int, priority=VRRP_PRIORITY),
            conntrack_sync=config.ha_conntrack_sync,
        )
        self.driver = OvsVethDriver(ovsdb=config.ovsdb_connection, bridge=config.integration_bridge)
        self._dirty = asyncio.Event()
        self._resync = True  # the next pass reconciles everything
        self._applied: dict[str, RouterIntent] = {}
        self._pending: dict[str, tuple[RouterHAState, float]] = {}  # router → (state, since)
        self._report_due = asyncio.Event()
        self._l3: L3Host | None = None
        # Routers whose latest transition here the servers have not acknowledged.
        self._unacknowledged: set[str] = set()
        self._last_contact = time.monotonic()  # the servers last answered us
        self.isolated = False  # no answer for ISOLATION_INTERVALS report intervals
        self.offsets: dict[str, int] = {}  # router → priority offset written
        # Masters here while cut off, not yet checked against fresh HA states: the
        # revision of this host's report of the transition, when the mirror had it.
        self._held: dict[str, int | None] = {}
        # Held takeovers whose report never got through → when they are reported
        # anyway if VRRP has not settled them (None: the servers not read yet).
        self._unreported: dict[str, float | None] = {}
        self.vrrp_settle = max(
            VRRP_SETTLE_MIN, VRRP_SETTLE_ADVERTS * self.settings.vrrp.advert_int
        )
        self._check_due = asyncio.Event()  # contact is back: check the held masters
        self._started: set[str] = set()  # keepalived started by the last reconcile
        self.passes = 0
        self.ready = asyncio.Event()  # set after the first reconciliation

    # -- what the agent calls ----------------------------------------------------

    def changed(self, *, resync: bool = False) -> None:
        """Routers (or what they are built from) changed; ``resync`` after a snapshot."""
        self._resync |= resync
        self._dirty.set()
        # HA states of other hosts are among the changes: offsets follow at once.
        self.update_offsets()

    def configurations(self) -> dict[str, Any]:
        """The L3 agent's ``configurations`` in ``GET /v2.0/agents`` (Neutron's keys)."""
        return {
            "agent_mode": self.config.agent_mode,
            "external_network_bridge": "",
            "gateway_external_network_id": "",
            "handle_internal_only_routers": True,
            "interface_driver": "openvswitch",
            "ha_vrrp_advert_int": self.config.ha_vrrp_advert_int,
            "routers": len(self._applied),
            "ex_gw_ports": sum(1 for i in self._applied.values() if i.gateway is not None),
            "interfaces": sum(len(i.internal) for i in self._applied.values()),
            "floating_ips": sum(len(i.floating_ips) for i in self._applied.values()),
        }

    def report_all_states(self, *, skip: Iterable[str] = ()) -> None:
        """Queue every known HA state (after a registration: a new lease).
        ``skip``: routers whose keepalived was just started, whose state on
        record is stale (a killed master's file still says active)."""
        if self._l3 is None:
            return
        try:
            states = dict(self._l3.watcher.states)
        except RuntimeError:  # not entered yet, or leaving
            return
        now = time.monotonic()
        for router_id in set(skip):
            states.pop(router_id, None)
        for router_id, state in states.items():
            self._pending.setdefault(router_id, (state, now))
            self.local_active.setdefault(router_id, state is RouterHAState.ACTIVE)
        self._report_due.set()
        self._on_local_state()

    def announce(self, port_ids: Iterable[str]) -> None:
        """Gratuitous ARPs for the addresses of these router ports (just made
        local here by a flow update), sent by a task of their own."""
        by_router: dict[str, set[str]] = {}
        for port_id in port_ids:
            body = self.mirror.port_bodies.get(port_id) or {}
            router_id = str(body.get("device_id") or "")
            if router_id in self._applied:
                by_router.setdefault(router_id, set()).add(port_id)
        for router_id, ports in by_router.items():
            if self.local_active.get(router_id) is False:
                continue  # not the master here: it holds none of the addresses
            task = asyncio.create_task(self._announce(self._applied[router_id], ports))
            self._announcing.add(task)
            task.add_done_callback(self._announcing.discard)

    async def _announce(self, intent: RouterIntent, port_ids: set[str]) -> None:
        if self._l3 is None:
            return
        plan = self._l3.plan(intent)
        if intent.gateway is not None and intent.gateway.port_id in port_ids:
            await self._flush_provider_bridges()
        addresses = (*plan.addresses, *plan.virtual_addresses)
        for interface in plan.interfaces:
            if interface.port_id not in port_ids or interface.kind == "ha":
                continue
            ips = [
                str(ipaddress.ip_interface(a.cidr).ip)
                for a in addresses
                if a.device == interface.name
            ]
            try:
                await announce(plan.namespace, interface.name, interface.mac, ips)
            except L3_ERRORS as error:
                LOG.warning("gratuitous ARPs from %s failed: %s", interface.name, error)
        LOG.info("announced router %s's addresses after its flow update", intent.id)

    async def _flush_provider_bridges(self) -> None:
        """Forget the provider bridges' learned MACs before announcing.

        br-ex forwards by MAC learning (NORMAL). While another host was master,
        its refresh ARPs taught this br-ex that the router's gateway MAC lives
        out on the physical port, so frames from outside to that MAC are
        dropped here (never sent back out the port they came in by) and the
        datapath caches the drop. Our gratuitous ARPs pass through datapath
        flows cached before the flow update and, measured, do not move the
        entry: traffic stayed dropped until a fresh flow (the router's own ARP
        for its next hop) did, 0.5 s later. A flush makes the MAC unknown
        (flooded, so also into br-int) and the ARPs sent next teach it anew.
        """
        for bridge in sorted(set(self.config.bridge_mappings.values())):
            try:
                await run(["ovs-appctl", "-t", self.config.vswitchd_unixctl, "fdb/flush", bridge])
            except L3_ERRORS as error:
                LOG.warning("flushing %s's MAC table failed: %s", bridge, error)

    async def run(self, config_loaded: asyncio.Event) -> None:
        l3 = L3Host(self.settings, self.driver, on_ha_state=self._on_ha_state)
        async with l3:
            self._l3 = l3
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._sync_loop(l3, config_loaded), name="l3 routers")
                    tasks.create_task(self._report_loop(), name="l3 ha states")
                    tasks.create_task(self._contact_loop(), name="l3 server contact")
                    tasks.create_task(self._held_loop(), name="l3 held masters")
            finally:
                self._l3 = None

    # -- routers -----------------------------------------------------------------

    def wanted(self) -> dict[str, RouterIntent]:
        """The intents of the routers placed on this host that can be built now."""
        host = self.config.host
        mirror = self.mirror
        mine = [
            router_id
            for router_id, hosts in mirror.placements.items()
            if host in hosts and router_id in mirror.routers
        ]
        if not mine:
            return {}
        ports_of: dict[str, list[Mapping[str, Any]]] = {}
        for body in mirror.port_bodies.values():
            device = body.get("device_id")
            if device in mirror.placements:
                ports_of.setdefault(str(device), []).append(body)
        floatingips = [f for f in mirror.floatingips.values() if f.get("router_id")]
        intents: dict[str, RouterIntent] = {}
        for router_id in mine:
            try:
                intents[router_id] = router_from_neutron(
                    mirror.routers[router_id],
                    ports_of.get(router_id, []),
                    mirror.subnet_bodies.values(),
                    host=host,
                    floatingips=floatingips,
                    networks=mirror.network_bodies.values(),
                )
            except (RouterIntentError, KeyError, TypeError, ValueError) as error:
                # Typically the HA port of a new placement not mirrored yet: its
                # own watch event brings it and another pass.
                LOG.info("router %s not buildable yet: %s", router_id, error)
        return intents

    async def _sync_loop(self, l3: L3Host, config_loaded: asyncio.Event) -> None:
        await config_loaded.wait()
        self._dirty.set()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            resync, self._resync = self._resync, False
            started = time.perf_counter()
            try:
                changed = await self._sync(l3, resync)
            except L3_ERRORS as error:
                LOG.error("router sync failed, retrying: %s", error)
                self._resync = True
                await asyncio.sleep(RETRY_DELAY)
                self._dirty.set()
                continue
            self.passes += 1
            if resync and not self.ready.is_set():
                self.ready.set()
                # A keepalived started by this pass reports its own state soon; the
                # state on record is its killed predecessor's.
                self.report_all_states(skip=self._started)
            if changed or resync:
                LOG.info(
                    "routers %s: %d here, %s changed in %.1f ms",
                    "reconciled" if resync else "synced",
                    len(self._applied),
                    ", ".join(sorted(changed)) or "none",
                    (time.perf_counter() - started) * 1000,
                )

    def priority_offset(self, router_id: str) -> int:
        """The VRRP priority offset this host's keepalived should run the router
        with (the rule is in the module docstring)."""
        if not self.local_active.get(router_id):
            return 0
        if self.isolated or router_id in self._held or router_id in self._unacknowledged:
            return -DEMOTION
        here = self.config.host
        states = self.mirror.ha_states.get(router_id, {})
        mine = states.get(here)
        # Acknowledged but not echoed yet: ours is the newest transition.
        newest = mine.revision if mine is not None and mine.state == ACTIVE else None
        others = [r.revision for h, r in states.items() if h != here and r.state == ACTIVE]
        if newest is not None and any(revision > newest for revision in others):
            return -DEMOTION  # replaced while cut off from the others
        return TAKEOVER_BOOST if others else 0

    def update_offsets(self) -> None:
        """Write the priority offset of every HA router built here that changed
        (a few bytes per router, on the loop: keepalived acts on it at once)."""
        if self._l3 is None:
            return
        for router_id, intent in self._applied.items():
            if intent.ha is None:
                continue
            offset = self.priority_offset(router_id)
            if self.offsets.get(router_id) == offset:
                continue
            files = KeepalivedFiles(self.settings.router_dir(router_id))
            try:
                write_priority_offset(files, offset)
            except OSError as error:
                LOG.warning("priority offset of router %s not written: %s", router_id, error)
                continue
            if offset or self.offsets.get(router_id):
                LOG.info("router %s: VRRP priority offset %+d here", router_id, offset)
            self.offsets[router_id] = offset
        for router_id in set(self.offsets) - set(self._applied):
            del self.offsets[router_id]

    async def _sync(self, l3: L3Host, resync: bool) -> list[str]:
        wanted = self.wanted()
        changed: list[str] = []
        if resync:
            # Routers placed here but not buildable yet are not removed: keep
            # what runs until their intent is complete.
            keep = {r for r in self._applied if r not in wanted and self._placed_here(r)}
            keep_intents = [self._applied[r] for r in keep]
            reports = await l3.reconcile([*wanted.values(), *keep_intents])
            changed = [rid for rid, report in reports.items() if report.changed]
            self._started = {
                rid
                for rid, report in reports.items()
                if report.keepalived is KeepalivedAction.STARTED
            }
            self._applied = {**{r: self._applied[r] for r in keep}, **wanted}
            self.update_offsets()
            return changed
        for router_id in sorted(set(self._applied) - set(wanted)):
            if self._placed_here(router_id) and router_id in self.mirror.routers:
                continue  # placed but momentarily incomplete: leave it running
            await l3.remove(router_id)
            del self._applied[router_id]
            self.local_active.pop(router_id, None)
            self._unacknowledged.discard(router_id)
            self._held.pop(router_id, None)
            self._unreported.pop(router_id, None)
            changed.append(f"-{router_id}")
        for router_id, intent in sorted(wanted.items()):
            if self._applied.get(router_id) == intent:
                continue
            report = await l3.apply(intent)
            self._applied[router_id] = intent
            if report.changed:
                changed.append(router_id)
        self.update_offsets()
        return changed

    def _placed_here(self, router_id: str) -> bool:
        return self.config.host in self.mirror.placements.get(router_id, frozenset())

    # -- HA states ---------------------------------------------------------------

    def _on_ha_state(self, router_id: str, state: RouterHAState) -> None:
        # Called from the event loop's reader: must not block.
        LOG.info("router %s is now %s here", router_id, state.value)
        # A transition of its own (a standby now, or a new master): nothing to hold.
        self._held.pop(router_id, None)
        self._unreported.pop(router_id, None)
        self._pending[router_id] = (state, time.monotonic())
        self._unacknowledged.add(router_id)
        self._report_due.set()
        active = state is RouterHAState.ACTIVE
        if self.local_active.get(router_id) != active:
            self.local_active[router_id] = active
            self._on_local_state()
        self.update_offsets()

    async def _report_loop(self) -> None:
        while True:
            await self._report_due.wait()
            self._report_due.clear()
            pending, self._pending = self._pending, {}
            failed = False
            for router_id, (state, since) in sorted(pending.items()):
                if router_id in self._held and state is RouterHAState.ACTIVE:
                    # Reported by the check if it stays ours (module docstring).
                    continue
                try:
                    known = await self.client.report_ha_state(
                        router_id, self.config.host, state.value
                    )
                except ServerUnavailable as error:
                    if state is RouterHAState.ACTIVE and router_id not in self._pending:
                        # Maybe this host is the one cut off: held, and reported
                        # by the check once the servers answer (module docstring).
                        LOG.warning(
                            "takeover of %s not reported (%s): held until the servers'"
                            " HA states are read",
                            router_id,
                            error,
                        )
                        self._held[router_id] = None
                        self._unreported[router_id] = None
                        self._check_due.set()
                        self.update_offsets()
                        continue
                    LOG.warning("HA state report of %s failed, will retry: %s", router_id, error)
                    # A newer transition queued meanwhile wins over the retry.
                    self._pending.setdefault(router_id, (state, since))
                    failed = True
                    continue
                self._contact()
                if known and router_id not in self._pending:  # no newer transition since
                    self._unacknowledged.discard(router_id)
                    self.update_offsets()
                if not known:
                    # Our lease expired: the heartbeat registers again, and every
                    # state is reported after that.
                    LOG.warning("HA state of %s refused: host not registered", router_id)
                    continue
                LOG.info(
                    "reported router %s %s in %.1f ms after the transition",
                    router_id,
                    state.value,
                    (time.monotonic() - since) * 1000,
                )
            if failed:
                await asyncio.sleep(RETRY_DELAY)
                self._report_due.set()

    # -- contact with the servers ------------------------------------------------

    def _contact(self) -> None:
        self._last_contact = time.monotonic()
        if self.isolated:
            LOG.warning(
                "servers answer again: masters here stay lowered until the servers'"
                " HA states show no takeover meanwhile"
            )
            self.isolated = False
            self._check_due.set()
            self.update_offsets()

    def _cut_off(self) -> None:
        """No answer from the servers: lower every master here, and hold them (the
        revision of their report as mirrored now tells later who is newer)."""
        self.isolated = True
        here = self.config.host
        for router_id, active in self.local_active.items():
            if active and router_id not in self._held:
                mine = self.mirror.ha_states.get(router_id, {}).get(here)
                self._held[router_id] = (
                    mine.revision if mine is not None and mine.state == ACTIVE else None
                )
        self.update_offsets()

    def settle_held(
        self, ha_states: Mapping[str, Mapping[str, HaReport]], *, now: float | None = None
    ) -> list[str]:
        """Release the held masters that no other host replaced according to
        ``ha_states`` (fresh from the servers), and the unreported takeovers that
        VRRP did not settle in time: their ACTIVE is queued for a report and they
        stay lowered until it is acknowledged. Returns those still held."""
        here = self.config.host
        now = time.monotonic() if now is None else now
        released = []
        for router_id, recorded in list(self._held.items()):
            if not self.local_active.get(router_id):
                del self._held[router_id]
                self._unreported.pop(router_id, None)
                continue
            states = ha_states.get(router_id, {})
            if router_id in self._unreported:
                if self._settling(router_id, states, now):
                    continue  # another master stands: VRRP may settle it
                del self._unreported[router_id]
            else:
                mine = states.get(here)
                since = recorded
                if since is None and mine is not None and mine.state == ACTIVE:
                    since = mine.revision  # our lease held: the original report
                newer = [
                    host
                    for host, report in states.items()
                    if host != here
                    and report.state == ACTIVE
                    and (since is None or report.revision > since)
                ]
                if newer:
                    continue  # replaced while cut off: yield to it
            del self._held[router_id]
            released.append(router_id)
            self._pending[router_id] = (RouterHAState.ACTIVE, time.monotonic())
            self._unacknowledged.add(router_id)
        if released:
            LOG.info("routers %s: no takeover while cut off, reported again", released)
            self._report_due.set()
        self.update_offsets()
        return sorted(self._held)

    def _settling(self, router_id: str, states: Mapping[str, HaReport], now: float) -> bool:
        """Whether an unreported takeover still waits for VRRP: another master
        stands, and ``vrrp_settle`` has not passed since the servers first said so."""
        here = self.config.host
        if not any(h != here and r.state == ACTIVE for h, r in states.items()):
            return False
        deadline = self._unreported[router_id]
        if deadline is None:
            deadline = self._unreported[router_id] = now + self.vrrp_settle
        if now < deadline:
            return True
        LOG.warning(
            "router %s: still master %.1f s after the servers answered, beside another:"
            " reporting the takeover",
            router_id,
            self.vrrp_settle,
        )
        return False

    async def _held_loop(self) -> None:
        """Check the held masters against the servers' HA states when contact comes
        back, and again each half interval while one stays held."""
        while True:
            await self._check_due.wait()
            self._check_due.clear()
            if self.isolated or not self._held:
                continue
            try:
                snapshot = await self.client.snapshot(HA_STATES_PREFIX)
            except ServerUnavailable as error:
                LOG.warning("HA states not read, will retry: %s", error)
                held = list(self._held)
            else:
                fresh = IntentMirror()
                fresh.reset_ha_states((i.key, i.value, i.mod_revision) for i in snapshot.items)
                held = self.settle_held(fresh.ha_states)
                if held:
                    LOG.warning(
                        "routers %s: another host took over while this one was cut off:"
                        " yielding to it",
                        held,
                    )
            if held:
                await asyncio.sleep(self._next_check())
                self._check_due.set()

    def _next_check(self) -> float:
        """Half a report interval, or less when an unreported takeover's time to
        settle ends sooner."""
        delay = self.config.report_interval / 2
        now = time.monotonic()
        for deadline in self._unreported.values():
            if deadline is not None:
                delay = min(delay, max(deadline - now, 0.05))
        return delay

    async def _contact_loop(self) -> None:
        """Tell when this host is cut off from the servers while it is a master.

        The heartbeat of the agent would tell too, but late (its request waits
        for its whole timeout); this probe waits half an interval. It runs only
        while a router is active here: a standby's priority does not matter."""
        interval = self.config.report_interval
        limit = ISOLATION_INTERVALS * interval
        while True:
            await asyncio.sleep(interval / 2)
            if not any(self.local_active.values()):
                self._last_contact = time.monotonic()
                continue
            try:
                async with asyncio.timeout(interval / 2):
                    await self.client.heartbeat(self.config.host)
            except (ServerUnavailable, TimeoutError):
                pass
            else:
                self._contact()
                continue
            if not self.isolated and time.monotonic() - self._last_contact > limit:
                LOG.warning(
                    "no answer from the servers for %.1f s: lowering the VRRP priority of"
                    " the routers active here (a partition must not bring them back)",
                    time.monotonic() - self._last_contact,
                )
                self._cut_off()
