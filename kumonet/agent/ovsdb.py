"""The agent's OVSDB adapter: bridges, tunnel and patch ports, and port change events.

Built on ovsdbapp's IDL connection (its own thread, as python-ovs requires); every
blocking call runs in the loop's default executor, and the IDL thread hands port
changes to the asyncio loop with ``call_soon_threadsafe``, so the agent reacts to a
plugged VIF or a newly assigned ofport as soon as ovsdb-server tells us, with no
polling.

Desired state (``BridgeSpec``, ``TunnelPortSpec``, ``PatchPortSpec``), present state
(``PortState``) and the plan between them (``PortPlan``) are separate types; the plan
is computed by a pure function, so it is unit-tested without OVS.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, TypeVar

from ovs.db import idl as ovs_idl
from ovsdbapp.backend.ovs_idl import connection as ovsdbapp_connection
from ovsdbapp.backend.ovs_idl import idlutils
from ovsdbapp.schema.open_vswitch import impl_idl

_T = TypeVar("_T")

#: Interface ``external_ids`` key marking the ports kumonet created.
#: Reconciliation removes only ports carrying it; everything else (VIFs plugged by
#: Nova/os-vif, ports an operator added) is never touched.
OWNER_KEY = "kumonet-owned"
OWNER_VALUE = "true"

#: OpenFlow versions every kumonet bridge speaks: 1.3 for the packet-in channel,
#: 1.5 for ``ovs-ofctl -O OpenFlow15`` bundles.
BRIDGE_PROTOCOLS = ("OpenFlow13", "OpenFlow14", "OpenFlow15")

DATAPATH_TYPES = ("netdev", "system")
TunnelType = Literal["vxlan", "gre"]

# Only these columns are replicated: the Interface table's statistics change every
# few seconds and would otherwise wake the snapshot code for nothing.
_INTERFACE_COLUMNS = (
    "name",
    "type",
    "options",
    "external_ids",
    "ofport",
    "ofport_request",
    "mac_in_use",
    "admin_state",
    "link_state",
    "error",
)
_WHOLE_TABLES = ("Open_vSwitch", "Bridge", "Port")


@dataclass(frozen=True, slots=True)
class BridgeSpec:
    """A bridge as kumonet wants it. ``hwaddr`` pins the bridge MAC (``other_config``)."""

    name: str
    datapath_type: str = "netdev"  # "netdev" (userspace) or "system" (kernel)
    hwaddr: str | None = None

    def __post_init__(self) -> None:
        if self.datapath_type not in DATAPATH_TYPES:
            raise ValueError(f"datapath_type {self.datapath_type!r}: one of {DATAPATH_TYPES}")


@dataclass(frozen=True, slots=True)
class TunnelPortSpec:
    """A tunnel port to one remote host; the tunnel key comes from the flow (``tun_id``)."""

    bridge: str
    kind: TunnelType
    local_ip: str
    remote_ip: str

    @property
    def name(self) -> str:
        return tunnel_port_name(self.kind, self.remote_ip)

    @property
    def interface_type(self) -> str:
        return self.kind

    @property
    def options(self) -> dict[str, str]:
        return {"key": "flow", "local_ip": self.local_ip, "remote_ip": self.remote_ip}


@dataclass(frozen=True, slots=True)
class PatchPortSpec:
    """One end of a patch pair; ``patch_pair`` builds both ends."""

    bridge: str
    name: str
    peer: str

    @property
    def interface_type(self) -> str:
        return "patch"

    @property
    def options(self) -> dict[str, str]:
        return {"peer": self.peer}


PortSpec = TunnelPortSpec | PatchPortSpec


def tunnel_port_name(kind: TunnelType, remote_ip: str) -> str:
    """``vxlan-192.0.2.7``: the seeds' naming, readable in ``ovs-vsctl show``.

    Tunnel vports are not kernel netdevs, so the 15-character interface-name limit
    does not apply to them. The address is kept as written (only checked), so the
    name is the one ``kumonet.dataplane.intent.tunnel_port_name`` gives.
    """
    ipaddress.ip_address(remote_ip)  # raises ValueError on anything but an address
    return f"{kind}-{remote_ip}"


def patch_pair(integration_bridge: str, provider_bridge: str) -> tuple[PatchPortSpec, ...]:
    """The two ends joining br-int and a provider bridge, named as Neutron's OVS agent does:
    ``int-<provider>`` on br-int, ``phy-<provider>`` on the provider bridge."""
    int_end = f"int-{provider_bridge}"
    phy_end = f"phy-{provider_bridge}"
    return (
        PatchPortSpec(bridge=integration_bridge, name=int_end, peer=phy_end),
        PatchPortSpec(bridge=provider_bridge, name=phy_end, peer=int_end),
    )


@dataclass(frozen=True, slots=True)
class PortState:
    """One interface as OVSDB has it now (tunnel, patch, VIF or internal port)."""

    bridge: str
    name: str
    type: str
    ofport: int | None
    external_ids: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None  # why vswitchd could not create the interface, if it could not

    def __hash__(self) -> int:
        # The mappings are not hashable; (bridge, name) identifies the interface.
        return hash((self.bridge, self.name))

    @property
    def iface_id(self) -> str | None:
        """The Neutron port id, as Nova/os-vif record it."""
        return self.external_ids.get("iface-id")

    @property
    def attached_mac(self) -> str | None:
        return self.external_ids.get("attached-mac")

    @property
    def is_vif(self) -> bool:
        return self.iface_id is not None

    @property
    def owned(self) -> bool:
        return self.external_ids.get(OWNER_KEY) == OWNER_VALUE


class PortEventKind(enum.Enum):
    ADDED = "added"
    CHANGED = "changed"  # e.g. ofport assigned, iface-id set after the port was added
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class PortEvent:
    kind: PortEventKind
    port: PortState  # for REMOVED, the last state seen


@dataclass(frozen=True, slots=True)
class PortPlan:
    """What to do to turn present ports into desired ones on the bridges in scope."""

    add: tuple[PortSpec, ...] = ()
    update: tuple[PortSpec, ...] = ()  # present and owned, but type/options differ
    remove: tuple[PortState, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.add or self.update or self.remove)


def plan_ports(
    desired: Iterable[PortSpec],
    present: Iterable[PortState],
    *,
    bridges: Iterable[str],
    kinds: Iterable[str],
) -> PortPlan:
    """Diff desired ports against present ones, within ``bridges`` and interface ``kinds``.

    Only kumonet-owned ports are removed or updated; a foreign port whose name
    collides with a desired one is left alone (and the desired port is not added, so
    ovsdb-server never sees a duplicate name), which the caller sees as a port never
    appearing rather than as an operator's port vanishing.
    """
    scope_bridges = frozenset(bridges)
    scope_kinds = frozenset(kinds)
    wanted = {spec.name: spec for spec in desired}
    present_by_name = {p.name: p for p in present}
    add: list[PortSpec] = []
    update: list[PortSpec] = []
    moved: list[PortState] = []
    for name, spec in sorted(wanted.items()):
        have = present_by_name.get(name)
        if have is None:
            add.append(spec)
        elif not have.owned:
            continue
        elif have.bridge != spec.bridge:
            # A port cannot move between bridges in place: it is rebuilt.
            moved.append(have)
            add.append(spec)
        elif have.type != spec.interface_type or dict(have.options) != spec.options:
            update.append(spec)
    remove = [
        p
        for p in present_by_name.values()
        if p.owned and p.name not in wanted and p.bridge in scope_bridges and p.type in scope_kinds
    ]
    return PortPlan(
        add=tuple(add), update=tuple(update), remove=tuple(sorted(remove + moved, key=_name))
    )


def _name(port: PortState) -> str:
    return port.name


class OvsdbError(RuntimeError):
    """An OVSDB transaction failed or a row kumonet needs is missing."""


def _read_ports(idl: ovs_idl.Idl) -> dict[tuple[str, str], PortState]:
    ports: dict[tuple[str, str], PortState] = {}
    for bridge in idl.tables["Bridge"].rows.values():
        for port in bridge.ports:
            for iface in port.interfaces:
                ofports = list(iface.ofport)
                ofport = ofports[0] if ofports and ofports[0] > 0 else None
                state = PortState(
                    bridge=bridge.name,
                    name=iface.name,
                    type=iface.type or "system",
                    ofport=ofport,
                    external_ids=dict(iface.external_ids),
                    options=dict(iface.options),
                    error=next(iter(iface.error), None),
                )
                ports[(bridge.name, iface.name)] = state
    return ports


def _diff_ports(
    before: Mapping[tuple[str, str], PortState], after: Mapping[tuple[str, str], PortState]
) -> list[PortEvent]:
    events = [PortEvent(PortEventKind.REMOVED, p) for k, p in before.items() if k not in after]
    for key, port in after.items():
        old = before.get(key)
        if old is None:
            events.append(PortEvent(PortEventKind.ADDED, port))
        elif old != port:
            events.append(PortEvent(PortEventKind.CHANGED, port))
    return events


class _WatchingIdl(ovsdbapp_connection.OvsdbIdl):
    """An IDL that, after each batch of updates, diffs the port table and hands the
    differences to the asyncio loop.

    Diffing whole snapshots after ``run()`` (rather than reacting to single-row
    ``notify`` calls) makes events consistent: an Interface row is only reported once
    its Port is attached to a Bridge, whatever order the rows arrived in.
    """

    def __init__(
        self,
        remote: str,
        schema_helper: ovs_idl.SchemaHelper,
        *,
        deliver: Callable[[list[PortEvent], dict[tuple[str, str], PortState]], None],
    ) -> None:
        super().__init__(remote, schema_helper)
        self._deliver = deliver
        self._ports: dict[tuple[str, str], PortState] = {}

    def run(self) -> Any:
        seqno = self.change_seqno
        result = super().run()
        if self.change_seqno != seqno:
            ports = _read_ports(self)
            events = _diff_ports(self._ports, ports)
            self._ports = ports
            if events:
                self._deliver(events, ports)
        return result


class _HostOvsdbApi(impl_idl.OvsdbIdl):
    """ovsdbapp's API keeps its connection on the class, one per process; kumonet
    needs one per ``Ovsdb`` (an agent talks to one host, but tests and the lab run
    several hosts in one process), so the connection lives on the instance."""

    @property
    def ovsdb_connection(self) -> ovsdbapp_connection.Connection:
        return self._host_connection

    @ovsdb_connection.setter
    def ovsdb_connection(self, connection: ovsdbapp_connection.Connection) -> None:
        self._host_connection = connection


@dataclass(frozen=True, slots=True)
class OvsdbConfig:
    """Where the host's ovsdb-server is, e.g. ``unix:/run/openvswitch/db.sock``."""

    remote: str
    timeout: float = 10.0


class Ovsdb:
    """The agent's handle on one host's Open_vSwitch database.

    ``port_events`` receives a ``PortEvent`` for every interface added, changed
    (ofport assigned, external_ids edited) or removed on any bridge; the first
    events after ``connect`` describe what already exists. ``ports()`` is the latest
    snapshot, consistent with the events delivered so far.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, config: OvsdbConfig) -> None:
        self._loop = loop
        self._config = config
        self.port_events: asyncio.Queue[PortEvent] = asyncio.Queue()
        self._ports: dict[tuple[str, str], PortState] = {}
        self._published = asyncio.Event()
        self._api: Any = None
        self._connection: ovsdbapp_connection.Connection | None = None

    @classmethod
    async def connect(cls, config: OvsdbConfig) -> Ovsdb:
        ovsdb = cls(asyncio.get_running_loop(), config)
        await ovsdb._run_blocking(ovsdb._connect_blocking)
        return ovsdb

    def _connect_blocking(self) -> None:
        try:
            helper = idlutils.get_schema_helper(self._config.remote, "Open_vSwitch")
        except Exception as error:  # ovsdbapp raises a bare Exception here
            raise OvsdbError(f"cannot reach {self._config.remote}: {error}") from error
        for table in _WHOLE_TABLES:
            helper.register_table(table)
        helper.register_columns("Interface", list(_INTERFACE_COLUMNS))
        idl = _WatchingIdl(self._config.remote, helper, deliver=self._deliver_threadsafe)
        self._connection = ovsdbapp_connection.Connection(idl, timeout=self._config.timeout)
        self._api = _HostOvsdbApi(self._connection)

    def _deliver_threadsafe(
        self, events: list[PortEvent], ports: dict[tuple[str, str], PortState]
    ) -> None:
        # Called on the IDL thread; the snapshot and the events are published together
        # on the loop thread so that ports() never runs ahead of port_events.
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._publish, events, ports)

    def _publish(self, events: list[PortEvent], ports: dict[tuple[str, str], PortState]) -> None:
        self._ports = ports
        for event in events:
            self.port_events.put_nowait(event)
        # Wake whoever waits for the next snapshot; later waiters get a fresh event.
        published, self._published = self._published, asyncio.Event()
        published.set()

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await self._run_blocking(connection.stop, self._config.timeout)

    async def __aenter__(self) -> Ovsdb:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run_blocking(self, func: Callable[..., _T], *args: Any) -> _T:
        return await self._loop.run_in_executor(None, partial(func, *args))

    # -- reading -------------------------------------------------------------

    def ports(self, bridge: str | None = None) -> tuple[PortState, ...]:
        """The latest snapshot, optionally of one bridge, sorted by name."""
        return tuple(
            sorted(
                (p for p in self._ports.values() if bridge is None or p.bridge == bridge),
                key=_name,
            )
        )

    def vif_ports(self, bridge: str) -> tuple[PortState, ...]:
        """The VIFs (ports with ``external_ids:iface-id``) plugged into ``bridge``."""
        return tuple(p for p in self.ports(bridge) if p.is_vif)

    def ofport(self, bridge: str, name: str) -> int | None:
        port = self._ports.get((bridge, name))
        return port.ofport if port is not None else None

    async def wait_for_ofport(self, bridge: str, name: str) -> int:
        """Wait until OVS has assigned ``name`` an OpenFlow port number.

        For callers that need one port's number now; it consumes no ``port_events``.
        Raises ``OvsdbError`` if vswitchd reports it cannot create the interface (a
        missing netdev, bad tunnel options), which would otherwise be a silent hang.
        """
        while True:
            published = self._published
            port = self._ports.get((bridge, name))
            if port is not None and port.ofport is not None:
                return port.ofport
            if port is not None and port.error:
                raise OvsdbError(f"{bridge}/{name}: {port.error}")
            await published.wait()

    # -- writing -------------------------------------------------------------

    def _commit(self, build: Callable[[Any, Any], None]) -> None:
        """Run ``build(api, txn)`` in one transaction; errors raise (check_error=True).

        The vsctl-style transaction waits until ovs-vswitchd has applied the change,
        so new interfaces have their ofport when this returns.
        """
        if self._api is None:
            raise OvsdbError("not connected")
        try:
            with self._api.transaction(check_error=True, log_errors=False) as txn:
                build(self._api, txn)
        except Exception as error:  # ovsdbapp raises a mix of its own and RuntimeError
            raise OvsdbError(str(error) or type(error).__name__) from error

    async def ensure_bridge(self, spec: BridgeSpec) -> None:
        """Create or correct ``spec.name``; running it again changes nothing."""

        def build(api: Any, txn: Any) -> None:
            txn.add(api.add_br(spec.name, may_exist=True, datapath_type=spec.datapath_type))
            txn.add(
                api.db_set(
                    "Bridge",
                    spec.name,
                    ("fail_mode", "secure"),
                    ("protocols", list(BRIDGE_PROTOCOLS)),
                    # No controller is ever set; in-band control would only add
                    # hidden flows for one.
                    ("other_config", {"disable-in-band": "true"}),
                )
            )
            if spec.hwaddr is not None:
                txn.add(api.db_set("Bridge", spec.name, ("other_config", {"hwaddr": spec.hwaddr})))

        await self._run_blocking(self._commit, build)

    def bridge_exists(self, name: str) -> bool:
        """Whether ``name`` exists (every bridge has its own internal port)."""
        return any(bridge == name for bridge, _ in self._ports)

    async def delete_bridge(self, name: str) -> None:
        await self._run_blocking(
            self._commit, lambda api, txn: txn.add(api.del_br(name, if_exists=True))
        )

    async def bridge_config(self, name: str) -> dict[str, Any]:
        """The bridge's columns kumonet sets (for checks and diagnostics)."""
        rows = await self._run_blocking(
            lambda: self._api.db_list(
                "Bridge",
                [name],
                columns=["datapath_type", "fail_mode", "protocols", "other_config"],
            ).execute(check_error=True)
        )
        if not rows:
            raise OvsdbError(f"no bridge {name}")
        return dict(rows[0])

    async def apply_port_plan(self, plan: PortPlan) -> None:
        """Apply a plan in one OVSDB transaction (all or nothing).

        The one exception is a port rebuilt on another bridge: OVSDB's unique
        Interface name forbids the old and new row coexisting, so removals are
        committed first in that case.
        """
        if plan.empty:
            return
        removed = {p.name for p in plan.remove}
        if any(spec.name in removed for spec in plan.add):
            await self.apply_port_plan(PortPlan(remove=plan.remove))
            await self.apply_port_plan(PortPlan(add=plan.add, update=plan.update))
            return

        def build(api: Any, txn: Any) -> None:
            for port in plan.remove:
                txn.add(api.del_port(port.name, bridge=port.bridge, if_exists=True))
            for spec in plan.update:
                txn.add(
                    api.db_set(
                        "Interface",
                        spec.name,
                        ("type", spec.interface_type),
                        ("options", spec.options),
                    )
                )
            for spec in plan.add:
                txn.add(
                    api.add_port(
                        spec.bridge,
                        spec.name,
                        may_exist=False,
                        type=spec.interface_type,
                        options=spec.options,
                        external_ids={OWNER_KEY: OWNER_VALUE},
                    )
                )

        await self._run_blocking(self._commit, build)

    async def reconcile_tunnels(self, bridge: str, desired: Iterable[TunnelPortSpec]) -> PortPlan:
        """Make ``bridge``'s kumonet tunnel ports exactly ``desired``; returns what was done."""
        wanted = list(desired)
        if any(spec.bridge != bridge for spec in wanted):
            raise ValueError(f"tunnel ports must all be on {bridge}")
        plan = plan_ports(wanted, self.ports(), bridges=[bridge], kinds=("vxlan", "gre"))
        await self.apply_port_plan(plan)
        return plan

    async def reconcile_patch_ports(
        self, desired: Iterable[PatchPortSpec], *, bridges: Iterable[str]
    ) -> PortPlan:
        """Make the kumonet patch ports on ``bridges`` exactly ``desired``."""
        plan = plan_ports(list(desired), self.ports(), bridges=bridges, kinds=("patch",))
        await self.apply_port_plan(plan)
        return plan
