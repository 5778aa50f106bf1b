"""The L3 host: turns router intents into router namespaces, and back into nothing.

`L3Host` is what the agent calls. ``apply`` plans a router purely and then
reconciles, in dependency order, namespace → sysctls → interfaces → addresses →
routes → nftables → keepalived, diffing each step against what is there, so
applying an unchanged intent changes nothing (and never restarts keepalived).
``reconcile`` does this for every wanted router and removes routers whose
namespaces, keepalived processes or OVS ports exist but are no longer wanted.

    async with L3Host(settings, OvsVethDriver("unix:/run/openvswitch/db.sock"),
                      on_ha_state=report) as l3:
        await l3.reconcile(intents)        # on start, and after a re-list
        await l3.apply(intent)             # on a router change
        await l3.remove(router_id)         # on a router unscheduled or deleted
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kumonet.l3.conntrackd import ConntrackdFiles, ConntrackdProcess
from kumonet.l3.garp import announce
from kumonet.l3.ha_state import HaStateCallback, HaStateWatcher, RouterHAState
from kumonet.l3.intent import RouterIntent
from kumonet.l3.interface import InterfaceDriver
from kumonet.l3.keepalived import KeepalivedAction, KeepalivedMonitor, KeepalivedProcess
from kumonet.l3.namespace import (
    RouterNamespace,
    delete_namespace,
    ensure_namespace,
    list_namespaces,
)
from kumonet.l3.plan import (
    Address,
    KeepalivedFiles,
    L3Settings,
    RouterPlan,
    namespace_name,
    plan_router,
    router_id_of_namespace,
)

logger = logging.getLogger(__name__)

#: How long an apply waits for keepalived to add reloaded addresses before
#: announcing those it has (the rest are announced by keepalived's refresh).
VIP_WAIT = 1.0


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """What one ``apply`` changed (for logs and tests: a re-apply changes nothing)."""

    plan: RouterPlan
    namespace_created: bool
    interfaces_plugged: tuple[str, ...]
    interfaces_unplugged: tuple[str, ...]
    addresses_changed: int
    routes_changed: int
    nft_replaced: bool
    keepalived: KeepalivedAction | None

    @property
    def changed(self) -> bool:
        return bool(
            self.namespace_created
            or self.interfaces_plugged
            or self.interfaces_unplugged
            or self.addresses_changed
            or self.routes_changed
            or self.nft_replaced
            or self.keepalived not in (None, KeepalivedAction.UNCHANGED)
        )


class L3Host:
    """The routers of one L3 host. ``on_ha_state(router_id, state)`` is called on
    every VRRP transition of an HA router hosted here (the agent forwards it to
    ``PUT /v1/agent/routers/{id}/ha_state``)."""

    def __init__(
        self, settings: L3Settings, driver: InterfaceDriver, *, on_ha_state: HaStateCallback
    ) -> None:
        self.settings = settings
        self.driver = driver
        self._on_ha_state = on_ha_state
        self._watcher: HaStateWatcher | None = None
        self._monitor: KeepalivedMonitor | None = None
        self._intents: dict[str, RouterIntent] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._respawns: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> L3Host:
        self._watcher = HaStateWatcher(self._on_ha_state)
        self._monitor = KeepalivedMonitor(self._keepalived_exited)
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Routers keep running without the agent; only the watching stops.
        for task in list(self._respawns):
            task.cancel()
        await asyncio.gather(*self._respawns, return_exceptions=True)
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

    def _lock(self, router_id: str) -> asyncio.Lock:
        return self._locks.setdefault(router_id, asyncio.Lock())

    def _keepalived_exited(self, router_id: str) -> None:
        intent = self._intents.get(router_id)
        if intent is None:
            return
        logger.warning("keepalived of router %s exited; re-applying the router", router_id)
        task = asyncio.create_task(self._respawn(intent))
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _respawn(self, intent: RouterIntent) -> None:
        try:
            async with self._lock(intent.id):
                # Removed or changed meanwhile: the remover or the newer apply decides.
                if self._intents.get(intent.id) is intent:
                    await self._apply(intent)
        except Exception:  # the next apply from the agent retries; keep the loop alive
            logger.exception("re-applying router %s after keepalived exited failed", intent.id)

    @property
    def watcher(self) -> HaStateWatcher:
        if self._watcher is None:
            raise RuntimeError("L3Host used outside `async with`")
        return self._watcher

    def ha_state(self, router_id: str) -> RouterHAState | None:
        """The last state keepalived reported for the router on this host."""
        return self.watcher.states.get(router_id)

    def keepalived(self, router_id: str) -> KeepalivedProcess:
        return KeepalivedProcess(
            KeepalivedFiles(self.settings.router_dir(router_id)),
            namespace_name(router_id, self.settings.namespace_prefix),
        )

    def conntrackd(self, router_id: str) -> ConntrackdProcess:
        return ConntrackdProcess(
            ConntrackdFiles(self.settings.router_dir(router_id)),
            namespace_name(router_id, self.settings.namespace_prefix),
        )

    def plan(self, intent: RouterIntent) -> RouterPlan:
        return plan_router(intent, self.settings)

    async def apply(self, intent: RouterIntent) -> ApplyReport:
        """Make the router's namespace match ``intent`` (idempotent; serialised per router)."""
        async with self._lock(intent.id):
            if not intent.admin_state_up:
                # As Neutron's l3 agent: an administratively down router is torn down.
                self._intents.pop(intent.id, None)
                await self._remove(intent.id)
                return ApplyReport(self.plan(intent), False, (), (), 0, 0, False, None)
            report = await self._apply(intent)
            self._intents[intent.id] = intent
            return report

    async def _apply(self, intent: RouterIntent) -> ApplyReport:
        plan = self.plan(intent)
        created = await ensure_namespace(plan.namespace)
        ns = RouterNamespace(plan.namespace)
        # Always (one cheap command): a namespace created by a crashed run may lack them.
        await ns.set_sysctls(plan.sysctls)

        # Interfaces: plug the wanted ones, unplug the router's other ones.
        links = await ns.links()
        on_bridge = set((await self.driver.router_ports()).get(plan.router_id, []))
        plugged = []
        for interface in plan.interfaces:
            present = links.get(interface.name)
            needs_fix = present is None or (
                present.mac.lower() != interface.mac.lower()
                or present.mtu != interface.mtu
                or not present.up
            )
            if needs_fix or interface.port_id not in on_bridge:
                await self.driver.plug(plan.namespace, interface, plan.router_id, present)
                plugged.append(interface.name)
        await ns.set_sysctls(plan.link_sysctls)
        wanted_names = {i.name for i in plan.interfaces}
        stale = sorted(
            name for name in links if name not in wanted_names and name[:3] in ("qr-", "qg-", "ha-")
        )
        unplugged = []
        for name in stale:
            await ns.batch([f"link del {name}"])
            unplugged.append(name)
        wanted_ports = {i.port_id for i in plan.interfaces}
        for port_id in sorted(on_bridge):
            if port_id not in wanted_ports:
                await self.driver.unplug(port_id)

        # Addresses: the static ones exactly; keepalived's are left to a running
        # keepalived. With none running (a crash, SIGKILL, host reboot without a
        # namespace wipe), addresses it held are stale: a fresh keepalived starts as
        # BACKUP and must not share the master's addresses, so they are removed.
        keepalived = self.keepalived(plan.router_id) if plan.is_ha else None
        fresh_keepalived = keepalived is not None and not keepalived.running
        added, removed = await ns.sync_addresses(
            plan.addresses,
            devices=wanted_names,
            keep=() if fresh_keepalived else plan.virtual_addresses,
        )
        if not plan.is_ha:
            await self._announce(plan, added)
        routes_changed = 0
        if not plan.is_ha or fresh_keepalived:
            route_add, route_del = await ns.sync_routes(plan.routes)
            routes_changed = len(route_add) + len(route_del)

        # NAT: replaced atomically when the text differs from the one recorded.
        nft_replaced = await self._sync_nft(plan, ns)

        # conntrackd before keepalived: keepalived's first transition runs its script.
        if plan.conntrackd_conf is not None and plan.conntrackd_script is not None:
            await self.conntrackd(plan.router_id).ensure(
                plan.conntrackd_conf, plan.conntrackd_script
            )
        elif (conntrackd := self.conntrackd(plan.router_id)).files.config.exists():
            # Sync turned off, or the router no longer HA (a stop removes the file,
            # so routers that never had one skip the process scan).
            await conntrackd.stop()

        action: KeepalivedAction | None = None
        if keepalived is not None and plan.keepalived_conf is not None:
            self.watcher.add(plan.router_id, keepalived.files)
            before = await ns.addresses() if keepalived.running else set()
            action = await keepalived.ensure(plan.keepalived_conf)
            pid = keepalived.pid
            if pid is not None and self._monitor is not None:
                self._monitor.watch(plan.router_id, pid)
            if action is KeepalivedAction.RELOADED and self.ha_state(plan.router_id) is (
                RouterHAState.ACTIVE
            ):
                await self._announce_new_vips(plan, ns, set(plan.virtual_addresses) - before)
        else:
            # A router that stopped being HA keeps no keepalived.
            await self._stop_keepalived(plan.router_id)

        return ApplyReport(
            plan=plan,
            namespace_created=created,
            interfaces_plugged=tuple(plugged),
            interfaces_unplugged=tuple(unplugged),
            addresses_changed=len(added) + len(removed),
            routes_changed=routes_changed,
            nft_replaced=nft_replaced,
            keepalived=action,
        )

    async def _announce(self, plan: RouterPlan, added: Iterable[Address]) -> None:
        macs = {interface.name: interface.mac for interface in plan.interfaces}
        by_device: dict[str, list[str]] = {}
        for address in added:
            by_device.setdefault(address.device, []).append(
                str(ipaddress.ip_interface(address.cidr).ip)
            )
        for device, ips in sorted(by_device.items()):
            await announce(plan.namespace, device, macs[device], ips)

    async def _announce_new_vips(
        self, plan: RouterPlan, ns: RouterNamespace, new: set[Address]
    ) -> None:
        """Announce addresses a reload gave the master (a floating IP associated).

        keepalived adds them after SIGHUP on its own time and does not announce
        them until the next refresh; upstream neighbours that had given up on the
        address (a disassociated floating IP) would wait for their own retry.
        """
        if not new:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + VIP_WAIT
        present: set[Address] = set()
        while loop.time() < deadline:
            present = new & await ns.addresses()
            if present == new:
                break
            await asyncio.sleep(0.01)
        await self._announce(plan, present)

    def _nft_record(self, router_id: str) -> Path:
        return self.settings.router_dir(router_id) / "nftables.conf"

    async def _sync_nft(self, plan: RouterPlan, ns: RouterNamespace) -> bool:
        record = self._nft_record(plan.router_id)
        try:
            applied = record.read_text()
        except FileNotFoundError:
            applied = None
        # The record says what we loaded; the table's existence that it is still there
        # (a namespace re-created behind our back starts empty).
        if applied == plan.nft_ruleset and await ns.nft_table() is not None:
            return False
        await ns.replace_nft_table(plan.nft_ruleset)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(plan.nft_ruleset)
        return True

    async def _stop_keepalived(self, router_id: str) -> None:
        if self._monitor is not None:
            self._monitor.unwatch(router_id)  # a stop is not a crash to repair
        process = self.keepalived(router_id)
        if process.running or process.vrrp_pid is not None:
            await process.stop()
        if self._watcher is not None:
            self._watcher.remove(router_id)

    async def remove(self, router_id: str) -> None:
        """Remove everything of the router on this host (idempotent)."""
        async with self._lock(router_id):
            self._intents.pop(router_id, None)
            await self._remove(router_id)
        self._locks.pop(router_id, None)

    async def _remove(self, router_id: str) -> None:
        await self._stop_keepalived(router_id)
        await self.conntrackd(router_id).stop()
        namespace = namespace_name(router_id, self.settings.namespace_prefix)
        await delete_namespace(namespace)
        for port_id in (await self.driver.router_ports()).get(router_id, []):
            await self.driver.unplug(port_id)
        shutil.rmtree(self.settings.router_dir(router_id), ignore_errors=True)

    def present_routers(self) -> set[str]:
        """Routers with a namespace or a state directory on this host."""
        found = {
            rid
            for ns in list_namespaces()
            if (rid := router_id_of_namespace(ns, self.settings.namespace_prefix)) is not None
        }
        confs = self.settings.state_path / "ha_confs"
        if confs.is_dir():
            found.update(p.name for p in confs.iterdir() if p.is_dir())
        return found

    async def reconcile(self, wanted: Iterable[RouterIntent]) -> dict[str, ApplyReport]:
        """Make this host's routers exactly ``wanted``: apply each, remove the rest
        (namespaces, keepalived processes, OVS ports). Running routers that are
        still wanted are not disturbed."""
        intents = {intent.id: intent for intent in wanted}
        present = self.present_routers() | set(await self.driver.router_ports())
        for router_id in sorted(present - intents.keys()):
            await self.remove(router_id)
        reports = {}
        for router_id, intent in sorted(intents.items()):
            reports[router_id] = await self.apply(intent)
        return reports
