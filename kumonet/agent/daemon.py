"""kumonet-agent's main object: follows intent from the servers and keeps this
host's Open vSwitch matching it.

The loop (DESIGN.md "Data flow"): snapshot + long-poll watch of
``/config/neutron/`` and of the host table → `IntentMirror` → the pure
compiler (`PlanCompiler`) with this host's facts read from OVSDB → OVSDB
ports (tunnels, patches) and OpenFlow flows reconciled by cookie in one
atomic bundle per bridge → port status reported back. Reconciliation runs in
one task; changes arriving while it runs are coalesced into the next pass.

Nothing is reconciled before both snapshots and the OVSDB snapshot are
loaded: on a restart the first pass then finds the flows already installed
and changes nothing (no still-wanted flow is deleted and re-added).

Every agent also follows the routers' HA states (``/operational/neutron/l3/``):
a router's ``qr-``/``qg-`` ports are compiled as living on the host where the
router is active (`kumonet.agent.router_hosts`), so a failover moves the
tenant side's flows on every host. With ``[agent] l3_agent = true`` the agent
also plays Neutron's L3 agent (`kumonet.agent.l3_role.L3Role`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from kumonet.agent.config import AgentConfig
from kumonet.agent.flow_channel import FlowChannel
from kumonet.agent.host_state import host_facts, patch_specs, tunnel_specs
from kumonet.agent.l3_role import L3Role
from kumonet.agent.mirror import (
    CONFIG_PREFIX,
    HA_STATES_PREFIX,
    HOSTS_PREFIX,
    Change,
    IntentMirror,
)
from kumonet.agent.openflow import OpenFlowBridge, OpenFlowError
from kumonet.agent.ovsdb import BridgeSpec, Ovsdb, OvsdbError, PortPlan, plan_ports
from kumonet.agent.packet_in import PacketChannelDown, PacketIn, PacketInChannel
from kumonet.agent.router_hosts import router_port_hosts
from kumonet.agent.server_client import (
    Compacted,
    PortStatus,
    ServerClient,
    ServerUnavailable,
)
from kumonet.dataplane.compiler import HostPlan, PlanCompiler, diff_flows
from kumonet.dataplane.dhcp import answer_dhcp
from kumonet.dataplane.dhcpv6 import answer_dhcpv6
from kumonet.dataplane.intent import HostFacts, Intent
from kumonet.dataplane.router_advert import (
    advert_inputs,
    answer_router_solicitation,
    network_router_advert,
    wants_unsolicited,
)

LOG = logging.getLogger(__name__)

AGENT_TYPES = ("Open vSwitch agent", "DHCP agent")
L3_AGENT_TYPE = "L3 agent"

Entry = tuple[str, Any, int]  # key, value (None: deleted), mod_revision
RETRY_DELAY = 0.5
# Unsolicited router advertisements: radvd's Min/MaxRtrAdvInterval as Neutron
# configures them (30 s, 100 s), a uniformly random pick between (RFC 4861 6.2.4).
RA_INTERVAL = (30.0, 100.0)


class Agent:
    def __init__(self, config: AgentConfig, client: ServerClient, ovsdb: Ovsdb) -> None:
        self.config = config
        self.client = client
        self.ovsdb = ovsdb
        self.mirror = IntentMirror()
        self.compiler = PlanCompiler()
        # Flow changes go over one persistent OpenFlow connection per bridge (an
        # ovs-ofctl process per change cost most of a pass).
        self.bridges = {
            name: OpenFlowBridge(
                target=config.bridge_target(name),
                channel=FlowChannel(config.bridge_target(name)),
            )
            for name in (config.integration_bridge, *config.bridge_mappings.values())
        }
        self.channel = PacketInChannel(
            config.bridge_target(config.integration_bridge), self._on_packet_in
        )
        self._installed: dict[str, dict[int, int]] = {}  # bridge → cookie → count
        # Bumped whenever _installed is forgotten: a pass suspended meanwhile must not
        # write back what it computed against the switch from before.
        self._installed_epoch = 0
        self._dirty = asyncio.Event()
        self._report_due = asyncio.Event()
        self._loaded = {
            "config": asyncio.Event(),
            "hosts": asyncio.Event(),
            "ha_states": asyncio.Event(),
        }
        self.l3 = (
            L3Role(config, client, self.mirror, on_local_state=self._dirty.set)
            if config.l3_agent
            else None
        )
        self._registered: dict[str, Any] = {}  # the facts last registered
        self._router_ports_here: frozenset[str] = frozenset()  # of the current pass
        self._announced: frozenset[str] = frozenset()  # router ports local after the last pass
        self._facts = HostFacts(host=config.host)
        self._intent = Intent()
        self._reported: dict[str, tuple[str, str]] = {}  # port → (status, host) in flight/done
        self.passes = 0  # reconciliation passes done (for tests and status)
        self.last_flow_changes = (0, 0)  # (added, deleted) flows of the current/last pass
        # Where the last pass's time went (its log line says): compiling, flow bundles.
        self._pass_ms = {"compile": 0.0, "flows": 0.0}
        self.ready = asyncio.Event()  # set after the first full reconciliation
        self._advertise_to: set[str] = set()  # local ports due an RA now (just came up)
        self._advert_inputs: dict[str, Any] = {}  # network → what its RA was made of
        self._advertise_due = asyncio.Event()
        self._random = random.Random()

    # -- start-up -----------------------------------------------------------

    async def setup_ovs(self) -> None:
        for name in self.bridges:
            spec = BridgeSpec(name=name, datapath_type=self.config.datapath_type)
            await self.ovsdb.ensure_bridge(spec)
        for name in self.bridges:
            # Also waits for the IDL snapshot to include the bridge: facts are complete.
            await self.ovsdb.wait_for_ofport(name, name)

    def registration(self) -> dict[str, Any]:
        config = self.config
        configurations: dict[str, Any] = {
            "tunneling_ip": config.local_ip,
            "tunnel_types": list(config.tunnel_types),
            "bridge_mappings": dict(config.bridge_mappings),
            "integration_bridge": config.integration_bridge,
            "datapath_type": config.datapath_type,
            "ovs_hybrid_plug": False,
            "arp_responder_enabled": False,
            "l2_population": True,
        }
        agent_types = list(AGENT_TYPES)
        if self.l3 is not None:
            agent_types.append(L3_AGENT_TYPE)
            configurations |= self.l3.configurations()
        return {
            "host": config.host,
            "agent_types": agent_types,
            "tunnel_ip": config.local_ip,
            "tunnel_types": list(config.tunnel_types),
            "bridge_mappings": dict(config.bridge_mappings),
            # Whole seconds, as Neutron's report_interval; the lease is 3 intervals.
            "heartbeat_interval": max(1, math.ceil(config.report_interval)),
            "configurations": configurations,
        }

    async def register(self) -> None:
        facts = self.registration()
        await self.client.register(self.config.host, facts)
        self._registered = facts
        if self.l3 is not None:
            # A new lease dropped the HA states stored under the old one.
            self.l3.report_all_states()

    async def run(self) -> None:
        await self.setup_ovs()
        self.channel.start()
        try:
            await self._retry(self.register)
            mirror = self.mirror
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._heartbeat_loop(), name="heartbeat")
                tasks.create_task(
                    self._follow(
                        CONFIG_PREFIX,
                        "config",
                        lambda entries: mirror.reset_config(_pairs(entries)),
                        lambda entries: mirror.apply_config(_pairs(entries)),
                    ),
                    name="watch config",
                )
                tasks.create_task(
                    self._follow(
                        HOSTS_PREFIX,
                        "hosts",
                        lambda entries: mirror.reset_hosts(_pairs(entries)),
                        lambda entries: mirror.apply_hosts(_pairs(entries)),
                    ),
                    name="watch hosts",
                )
                tasks.create_task(
                    self._follow(
                        HA_STATES_PREFIX,
                        "ha_states",
                        mirror.reset_ha_states,
                        mirror.apply_ha_states,
                    ),
                    name="watch HA states",
                )
                if self.l3 is not None:
                    tasks.create_task(self.l3.run(self._loaded["config"]), name="l3")
                tasks.create_task(self._ovsdb_events(), name="ovsdb events")
                tasks.create_task(self._reconcile_loop(), name="reconcile")
                tasks.create_task(self._report_loop(), name="port status")
                tasks.create_task(self._switch_restarts(), name="switch restarts")
                tasks.create_task(self._router_advert_loop(), name="router adverts")
        finally:
            await self.channel.stop()
            for bridge in self.bridges.values():
                if bridge.channel is not None:
                    await bridge.channel.close()

    async def _retry(self, call: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await call()
                return
            except ServerUnavailable as error:
                LOG.warning("servers unavailable, retrying: %s", error)
                await asyncio.sleep(RETRY_DELAY)

    # -- following the servers ---------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self.config.report_interval
        while True:
            await asyncio.sleep(interval)
            try:
                if self.registration() != self._registered:
                    # The L3 agent's counts (routers, interfaces, floating IPs) changed:
                    # Neutron's agents report them with every state report. The
                    # server keeps the lease on a re-registration.
                    await self.register()
                elif not await self.client.heartbeat(self.config.host):
                    LOG.warning("lease expired on the server: registering again")
                    await self.register()
            except ServerUnavailable as error:
                LOG.warning("heartbeat failed: %s", error)

    async def _follow(
        self,
        prefix: str,
        name: str,
        reset: Callable[[Iterable[Entry]], Change],
        apply: Callable[[Iterable[Entry]], Change],
    ) -> None:
        while True:
            try:
                snapshot = await self.client.snapshot(prefix)
            except ServerUnavailable as error:
                LOG.warning("snapshot of %s failed: %s", prefix, error)
                await asyncio.sleep(RETRY_DELAY)
                continue
            self._changed(
                reset((i.key, i.value, i.mod_revision) for i in snapshot.items), resync=True
            )
            self._loaded[name].set()
            revision = snapshot.revision + 1
            while True:
                try:
                    batch = await self.client.watch(prefix, revision)
                except Compacted:
                    LOG.info("watch of %s compacted: taking a new snapshot", prefix)
                    break
                except ServerUnavailable as error:
                    LOG.warning("watch of %s failed: %s", prefix, error)
                    await asyncio.sleep(RETRY_DELAY)
                    continue
                if batch.events:
                    self._changed(
                        apply(
                            (e.key, e.value if e.type == "put" else None, e.mod_revision)
                            for e in batch.events
                        )
                    )
                revision = max(revision, batch.revision + 1)

    def _changed(self, change: Change, *, resync: bool = False) -> None:
        if change.intent_changed or change.routers_changed:
            self._dirty.set()
        elif change.ports:
            # Only what the servers hold about ports changed, not what they compile to
            # (mostly the statuses agents report, ours coming back): the report loop
            # settles that without a pass. A batch of new ports on other hosts would
            # otherwise cost every agent a pass per status batch, while their own new
            # ports wait.
            self._report_due.set()
        if self.l3 is not None and (change.routers_changed or resync):
            self.l3.changed(resync=resync)

    async def _ovsdb_events(self) -> None:
        while True:
            await self.ovsdb.port_events.get()
            # Drain what else is queued: one pass handles them all.
            while not self.ovsdb.port_events.empty():
                self.ovsdb.port_events.get_nowait()
            self._dirty.set()

    async def _switch_restarts(self) -> None:
        """Flows live in ovs-vswitchd's memory: when it restarts (the packet-in
        channel reconnects), forget what we believed installed and push again."""
        generation = 1
        while True:
            await self.channel.wait_ready(generation=generation + 1)
            generation = self.channel.generation
            LOG.warning("ovs-vswitchd reconnected (generation %d): re-pushing flows", generation)
            self._installed.clear()
            self._installed_epoch += 1
            self._dirty.set()

    # -- reconciliation -----------------------------------------------------

    async def _reconcile_loop(self) -> None:
        for loaded in self._loaded.values():
            await loaded.wait()
        self._dirty.set()  # the first pass runs even for an empty cloud
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            started = time.perf_counter()
            self.last_flow_changes = (0, 0)
            self._pass_ms = {"compile": 0.0, "flows": 0.0}
            try:
                await self.reconcile_once()
            except (OvsdbError, OpenFlowError) as error:
                LOG.error("reconciliation failed, retrying: %s", error)
                self._installed.clear()  # re-read the switch next time
                self._installed_epoch += 1
                await asyncio.sleep(RETRY_DELAY)
                self._dirty.set()
                continue
            self.passes += 1
            self.ready.set()
            added, deleted = self.last_flow_changes
            # Operators (and the end-to-end tests) see when the switch changed and
            # that a restart's first pass changed nothing; idle passes stay quiet.
            log = LOG.info if self.passes == 1 or added or deleted else LOG.debug
            log(
                "reconciliation %d: +%d -%d flows in %.1f ms (compile %.1f ms, flows %.1f ms)",
                self.passes,
                added,
                deleted,
                (time.perf_counter() - started) * 1000,
                self._pass_ms["compile"],
                self._pass_ms["flows"],
            )

    def read_facts(self) -> HostFacts:
        config = self.config
        return host_facts(
            self.ovsdb.ports(),
            host=config.host,
            tunnel_ip=config.local_ip,
            integration_bridge=config.integration_bridge,
            tunnel_types=config.tunnel_types,
            bridge_mappings=config.bridge_mappings,
            direct_arp_requests=config.direct_arp_requests,
        )

    def current_intent(self, facts: HostFacts) -> Intent:
        """The mirrored intent, with ports plugged here but not yet bound taken as
        bound here (Nova binds before plugging; this only saves a round trip when
        a port is plugged by hand), and routers' ports on their active (HA) or
        placement host."""
        mirror = self.mirror
        intent = mirror.intent()
        where = router_port_hosts(
            mirror.port_bodies,
            mirror.routers,
            mirror.placements,
            mirror.ha_states,
            here=self.config.host,
            local_active=self.l3.local_active if self.l3 is not None else None,
        )
        self._router_ports_here = frozenset(p for p, h in where.items() if h == self.config.host)
        moved = {p: h for p, h in where.items() if p in intent.ports and intent.ports[p].host != h}
        unbound = [
            port_id
            for port_id in facts.local_ofports
            if port_id in intent.ports and not intent.ports[port_id].host and port_id not in where
        ]
        if not unbound and not moved:
            return intent
        ports = dict(intent.ports)
        for port_id in unbound:
            ports[port_id] = dataclasses.replace(ports[port_id], host=self.config.host)
        # Router ports live where their router is active (or placed), on every host.
        for port_id, host in moved.items():
            ports[port_id] = dataclasses.replace(ports[port_id], host=host)
        return dataclasses.replace(intent, ports=ports)

    async def reconcile_once(self) -> HostPlan:
        clock = time.perf_counter()
        facts = self.read_facts()
        intent = self.current_intent(facts)
        plan = self.compiler.compile(intent, facts)
        self._pass_ms["compile"] += (time.perf_counter() - clock) * 1000
        port_plan = self._port_plan(plan)
        if port_plan.add or port_plan.update:
            await self.ovsdb.apply_port_plan(PortPlan(add=port_plan.add, update=port_plan.update))
            for spec in port_plan.add:
                await self.ovsdb.wait_for_ofport(spec.bridge, spec.name)
            clock = time.perf_counter()
            facts = self.read_facts()
            intent = self.current_intent(facts)
            plan = self.compiler.compile(intent, facts)
            self._pass_ms["compile"] += (time.perf_counter() - clock) * 1000
        clock = time.perf_counter()
        for bridge_name, bridge in self.bridges.items():
            # Flows are rendered to text only when added: a pass over a host with
            # thousands of flows renders the few that changed.
            desired = plan.bridge_flows(bridge_name)
            epoch = self._installed_epoch
            installed = self._installed.get(bridge_name)
            if installed is None:
                installed = await bridge.dump_cookies()
            change = diff_flows(desired, installed)
            if not change.empty:
                await bridge.apply(change)
                added, deleted = self.last_flow_changes
                self.last_flow_changes = (
                    added + len(change.add),
                    deleted + len(change.delete_cookies),
                )
            if self._installed_epoch == epoch:
                self._installed[bridge_name] = dict.fromkeys(desired, 1)
        self._pass_ms["flows"] += (time.perf_counter() - clock) * 1000
        if port_plan.remove:
            await self.ovsdb.apply_port_plan(PortPlan(remove=port_plan.remove))
        # Router ports that just became local (a failover to here): the flows now
        # pass their traffic, so announce their addresses now; keepalived's own
        # gratuitous ARPs, sent at the transition, may have met no flow yet.
        here = self._router_ports_here
        if self.l3 is not None and here - self._announced:
            self.l3.announce(here - self._announced)
        self._announced = here
        came_up = facts.local_ofports.keys() - self._facts.local_ofports.keys()
        self._facts, self._intent = facts, intent
        # A port that came up, or whose network's advertisement changed (a subnet
        # added after the VM gave up soliciting), is advertised to at once.
        inputs = advert_inputs(intent)
        changed = {n for n in inputs.keys() | self._advert_inputs.keys()
                   if inputs.get(n) != self._advert_inputs.get(n)}  # fmt: skip
        self._advert_inputs = inputs
        if changed:
            came_up |= {
                port_id
                for port_id in facts.local_ofports
                if port_id in intent.ports and intent.ports[port_id].network_id in changed
            }
        if came_up:
            self._advertise_to |= came_up
            self._advertise_due.set()
        # Reported by its own task: the next pass never waits for the servers.
        self._report_due.set()
        return plan

    def _port_plan(self, plan: HostPlan) -> PortPlan:
        br_int = self.config.integration_bridge
        present = self.ovsdb.ports()
        tunnels = plan_ports(
            tunnel_specs(plan, br_int), present, bridges=[br_int], kinds=("vxlan", "gre")
        )
        patches = plan_ports(
            patch_specs(plan, br_int), present, bridges=list(self.bridges), kinds=("patch",)
        )
        return PortPlan(
            add=tunnels.add + patches.add,
            update=tunnels.update + patches.update,
            remove=tunnels.remove + patches.remove,
        )

    async def _report_loop(self) -> None:
        while True:
            await self._report_due.wait()
            self._report_due.clear()
            await self._report_ports(self._facts)

    async def _report_ports(self, facts: HostFacts) -> None:
        host = self.config.host
        reports: list[PortStatus] = []
        for port_id, body in self.mirror.port_bodies.items():
            bound_to = body.get("binding:host_id") or ""
            plugged = port_id in facts.local_ofports
            if plugged and bound_to in ("", host):
                wanted = "ACTIVE" if body.get("admin_state_up", True) else "DOWN"
            elif bound_to == host and not plugged:
                wanted = "DOWN"
            else:
                continue
            if body.get("status") == wanted and bound_to == host:
                self._reported.pop(port_id, None)
                continue
            if self._reported.get(port_id) == (wanted, host):
                continue  # already sent; the watch will bring the new body
            self._reported[port_id] = (wanted, host)
            reports.append(PortStatus(port_id, wanted, host))
        for gone in set(self._reported) - set(self.mirror.port_bodies):
            del self._reported[gone]
        if reports:
            try:
                await self.client.report_ports(reports)
            except ServerUnavailable as error:
                LOG.warning("port status report failed, will retry: %s", error)
                for report in reports:
                    self._reported.pop(report.port_id, None)
                await asyncio.sleep(RETRY_DELAY)
                self._report_due.set()

    # -- DHCP, DHCPv6, router advertisements ------------------------------------

    async def _on_packet_in(self, packet: PacketIn) -> None:
        port_id = next(
            (pid for pid, ofport in self._facts.local_ofports.items() if ofport == packet.in_port),
            None,
        )
        if port_id is None:
            return
        intent, settings = self._intent, self.config.dhcp
        # Each responder rejects what is not its packet within its first bytes.
        reply = (
            answer_dhcp(packet.data, intent, port_id, settings)
            or answer_router_solicitation(packet.data, intent, port_id, settings)
            or answer_dhcpv6(packet.data, intent, port_id, settings)
        )
        if reply is None:
            return
        with contextlib.suppress(PacketChannelDown):
            await self.channel.send_packet_out(packet.in_port, reply)

    async def _router_advert_loop(self) -> None:
        """Unsolicited RAs: to every local port now and then, and to a port as it
        comes up (its VM may have solicited before the flows were in place)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._random.uniform(*RA_INTERVAL)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advertise_due.wait(), max(0.0, deadline - loop.time()))
            self._advertise_due.clear()
            if loop.time() >= deadline:
                ports = set(self._facts.local_ofports)
                deadline = loop.time() + self._random.uniform(*RA_INTERVAL)
            else:
                ports = set(self._advertise_to)
            self._advertise_to.clear()
            await self.advertise(ports)

    async def advertise(self, port_ids: Iterable[str]) -> int:
        """Send an unsolicited RA to each of these local ports whose network has
        subnets to advertise; how many were sent."""
        sent = 0
        intent, ofports = self._intent, self._facts.local_ofports
        adverts: dict[str, bytes | None] = {}  # one per network and round
        for port_id in sorted(port_ids):
            ofport = ofports.get(port_id)
            network_id = wants_unsolicited(intent, port_id)
            if ofport is None or network_id is None:
                continue
            if network_id not in adverts:
                adverts[network_id] = network_router_advert(intent, network_id, self.config.dhcp)
            advert = adverts[network_id]
            if advert is None:
                continue
            try:
                await self.channel.send_packet_out(ofport, advert)
            except PacketChannelDown:
                return sent  # the next round will do
            sent += 1
        return sent


def _pairs(entries: Iterable[Entry]) -> Iterable[tuple[str, Any]]:
    return ((key, value) for key, value, _ in entries)
