"""A small in-memory model of OpenFlow tables, to test compiled flows as packets.

Feed a packet (a dict of header fields and `in_port`) through a set of flows
and get a `Verdict`: the copies that left by which port with which headers,
the copies sent to the controller, or nothing (dropped).  It follows OVS where
the pipeline relies on it: highest priority wins (two matching flows of equal
priority are an error here, since OpenFlow leaves that undefined), an output
to the packet's own in_port is dropped, `clone` isolates changes, `resubmit`
returns, registers and metadata start at zero.  Only the actions
`kumonet.dataplane.flow` defines are modelled.  Idea from faucet's
`clib/fakeoftable.py`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kumonet.dataplane.flow import (
    FIELDS,
    Action,
    Clone,
    Controller,
    FieldKind,
    Flow,
    Goto,
    Normal,
    Output,
    OutputToField,
    PopVlan,
    PushVlan,
    Resubmit,
    SetField,
)

Packet = dict[str, int]

# Fields that describe the pipeline's state, not the packet on the wire.
_PIPELINE_STATE = frozenset({"metadata", "reg4", "reg5", "reg6", "reg7"})
_MAX_DEPTH = 64


class ModelError(AssertionError):
    """The flows are ambiguous or loop; a compiler bug, surfaced in tests."""


def _parse(name: str, text: str) -> tuple[int, int]:
    """(value, mask) of a match value in ovs-ofctl text."""
    spec = FIELDS[name]
    full = (1 << spec.bits) - 1
    value_text, _, mask_text = text.partition("/")
    if spec.kind is FieldKind.INT:
        return int(value_text, 0), int(mask_text, 0) if mask_text else full
    if spec.kind is FieldKind.MAC:
        mask = _mac(mask_text) if mask_text else full
        return _mac(value_text), mask
    network = ipaddress.ip_network(text, strict=False)
    return int(network.network_address), int(network.netmask)


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def _value(name: str, value: object) -> int:
    """A packet field given as text or int → int."""
    if isinstance(value, int):
        return value
    text = str(value)
    kind = FIELDS[name].kind if name in FIELDS else FieldKind.INT
    if kind is FieldKind.MAC:
        return _mac(text)
    if kind in (FieldKind.IPV4, FieldKind.IPV6):
        return int(ipaddress.ip_address(text))
    return int(text, 0)


def make_packet(**fields: object) -> Packet:
    """A packet from keyword fields (`dl_src="fa:16:3e:..."`, `nw_src="10.0.0.1"`, ints)."""
    return {name: _value(name, value) for name, value in fields.items()}


@dataclass(frozen=True)
class Delivery:
    """A copy of the packet that left the switch by `port` (or to NORMAL: port -1)."""

    port: int
    packet: Mapping[str, int]

    def get(self, name: str) -> int:
        return self.packet.get(name, 0)


@dataclass
class Verdict:
    """Where a packet went."""

    outputs: list[Delivery] = field(default_factory=list)
    to_controller: list[Packet] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)

    @property
    def dropped(self) -> bool:
        return not self.outputs and not self.to_controller

    def ports(self) -> set[int]:
        return {delivery.port for delivery in self.outputs}

    def output(self, port: int) -> Delivery:
        """The single copy sent out of `port` (raises if none or several)."""
        found = [delivery for delivery in self.outputs if delivery.port == port]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} copies out of port {port}; trace: {self.trace}")
        return found[0]

    def is_output(self, port: int, **fields: object) -> bool:
        """Exactly one copy left by `port`, with these header values."""
        found = [delivery for delivery in self.outputs if delivery.port == port]
        if len(found) != 1:
            return False
        return all(found[0].get(name) == _value(name, value) for name, value in fields.items())


@dataclass(frozen=True)
class _Entry:
    priority: int
    match: tuple[tuple[str, int, int], ...]
    flow: Flow


class OpenFlowTables:
    """The flows of one bridge, indexed by table, ready to take packets."""

    def __init__(self, flows: Iterable[Flow]) -> None:
        tables: dict[int, list[_Entry]] = {}
        for flow in flows:
            match = tuple((name, *_parse(name, text)) for name, text in flow.match)
            entry = _Entry(flow.priority, match, flow)
            tables.setdefault(flow.table.number, []).append(entry)
        for entries in tables.values():
            entries.sort(key=lambda entry: -entry.priority)
        self._tables = tables

    def process(self, packet: Mapping[str, int]) -> Verdict:
        """Run a packet from table 0; `packet` must carry `in_port`."""
        state: Packet = dict(packet)
        verdict = Verdict()
        self._run_table(0, state, verdict, 0)
        return verdict

    def send(self, **fields: object) -> Verdict:
        return self.process(make_packet(**fields))

    def lookup(self, table: int, state: Mapping[str, int]) -> Flow | None:
        hits: list[_Entry] = []
        for entry in self._tables.get(table, ()):
            if hits and entry.priority < hits[0].priority:
                break
            if all(
                (state.get(name, 0) & mask) == (value & mask) for name, value, mask in entry.match
            ):
                hits.append(entry)
        if len(hits) > 1:
            bodies = " | ".join(hit.flow.body for hit in hits)
            raise ModelError(f"ambiguous match in table {table}: {bodies}")
        return hits[0].flow if hits else None

    def _run_table(self, table: int, state: Packet, verdict: Verdict, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise ModelError(f"pipeline too deep: {verdict.trace}")
        flow = self.lookup(table, state)
        if flow is None:
            verdict.trace.append(f"table {table}: no flow, drop")
            return
        verdict.trace.append(flow.body)
        self._apply(flow.actions, state, verdict, depth)

    def _apply(
        self, actions: tuple[Action, ...], state: Packet, verdict: Verdict, depth: int
    ) -> None:
        for action in actions:
            if isinstance(action, Output):
                self._output(action.port, state, verdict)
            elif isinstance(action, OutputToField):
                self._output(state.get(action.field, 0), state, verdict)
            elif isinstance(action, Normal):
                verdict.outputs.append(Delivery(-1, _wire(state)))
            elif isinstance(action, SetField):
                state[action.field] = _value(action.field, action.value)
            elif isinstance(action, PushVlan):
                if state.get("vlan_tci", 0) & 0x1000:
                    raise ModelError("the model keeps one VLAN tag only")
                state["vlan_tci"] = 0x1000 | action.vid
            elif isinstance(action, PopVlan):
                state["vlan_tci"] = 0
            elif isinstance(action, Controller):
                verdict.to_controller.append(dict(state))
            elif isinstance(action, Goto | Resubmit):
                self._run_table(action.table.number, state, verdict, depth + 1)
            elif isinstance(action, Clone):
                self._apply(action.actions, dict(state), verdict, depth + 1)

    @staticmethod
    def _output(port: int, state: Packet, verdict: Verdict) -> None:
        if port == state.get("in_port"):
            verdict.trace.append(f"output:{port} is the in_port: dropped, as OVS does")
            return
        verdict.outputs.append(Delivery(port, _wire(state)))


def _wire(state: Packet) -> dict[str, int]:
    return {name: value for name, value in state.items() if name not in _PIPELINE_STATE}
