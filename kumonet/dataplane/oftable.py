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

Conjunctive matches are looked up as OVS does: at each priority, a complete
conjunction leads to a second lookup with `conj_id` set (ignoring conjunction
flows); two equal-priority flows that both match are an error unless their
actions are the same.  Connection tracking is a small `ConnectionTable`
shared by the packets sent through one `OpenFlowTables`: `ct(table=N)` sets
`ct_state` and `ct_mark` from it (new, established and reply, invalid for a
SYN+ACK or SYN+FIN nothing opened, a bare mid-stream ACK picked up as new, as
the userspace datapath does) and `ct(commit)` remembers the connection and
writes the mark it carries; a test may instead dictate the states, as
`ofproto/trace --ct-next` does (the mark is then the packet's `ct_mark`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from kumonet.dataplane.flow import (
    CT_STATE_BITS,
    FIELDS,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    TCP_FLAG_BITS,
    Action,
    Clone,
    Conjunction,
    Conntrack,
    Controller,
    CtClear,
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
    parse_flags,
)

Packet = dict[str, int]

# Fields that describe the pipeline's state, not the packet on the wire.
_PIPELINE_STATE = frozenset(
    {
        "metadata", "reg2", "reg3", "reg4", "reg5", "reg6", "reg7",
        "ct_state", "ct_mark", "ct_zone", "conj_id",
    }
)  # fmt: skip
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
    if spec.kind is FieldKind.FLAGS:
        return parse_flags(name, text)
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
    if kind is FieldKind.FLAGS:
        return sum(FLAG_NAMES[name][flag] for flag in text.replace("|", ",").split(",") if flag)
    return int(text, 0)


# Packets may give flag fields by name: `tcp_flags="syn|ack"`, `ct_state="trk,est"`.
FLAG_NAMES = {"ct_state": CT_STATE_BITS, "tcp_flags": TCP_FLAG_BITS}
NEW, EST, REL, RPL, INV, TRK = (
    CT_STATE_BITS[n] for n in ("new", "est", "rel", "rpl", "inv", "trk")
)
_SYN, _ACK, _FIN = TCP_FLAG_BITS["syn"], TCP_FLAG_BITS["ack"], TCP_FLAG_BITS["fin"]
_ICMP_REPLY = {(IPPROTO_ICMP, 8): 0, (IPPROTO_ICMPV6, 128): 129}


def ct_states(*states: str) -> list[int]:
    """`ct_states("trk,est", "trk,new")`: states to dictate, one per `ct(table=)`."""
    return [_value("ct_state", state) for state in states]


@dataclass
class Connection:
    """One committed connection: whether a reply was seen, and its ct_mark."""

    replied: bool = False
    mark: int = 0


@dataclass
class ConnectionTable:
    """A toy connection tracker: committed connections per zone, keyed by the
    original direction's tuple, whether a reply has been seen, and the mark a
    commit wrote (`ct(commit,exec(set_field:...->ct_mark))`)."""

    connections: dict[tuple[int, ...], Connection] = field(default_factory=dict)

    @staticmethod
    def _tuples(zone: int, packet: Mapping[str, int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        ipv6 = packet.get("dl_type") == 0x86DD
        src = packet.get("ipv6_src" if ipv6 else "nw_src", 0)
        dst = packet.get("ipv6_dst" if ipv6 else "nw_dst", 0)
        proto = packet.get("nw_proto", 0)
        if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            # An echo reply belongs to the request's connection (ids are not modelled).
            kind = packet.get("icmpv6_type" if ipv6 else "icmp_type", 0)
            reply_kind = _ICMP_REPLY.get((proto, kind))
            request_kind = next((k for (p, k), r in _ICMP_REPLY.items() if p == proto
                                 and r == kind), None)  # fmt: skip
            if reply_kind is not None:
                return (zone, proto, src, dst, kind), (zone, proto, dst, src, kind)
            if request_kind is not None:
                return (zone, proto, src, dst, kind), (zone, proto, dst, src, request_kind)
            return (zone, proto, src, dst, kind), (zone, proto, dst, src, kind)
        sport, dport = packet.get("tp_src", 0), packet.get("tp_dst", 0)
        return (zone, proto, src, dst, sport, dport), (zone, proto, dst, src, dport, sport)

    def state(self, zone: int, packet: Mapping[str, int]) -> int:
        """The packet's ct_state in `zone` (a reply marks its connection replied)."""
        forward, backward = self._tuples(zone, packet)
        if forward in self.connections:
            return TRK | (EST if self.connections[forward].replied else NEW)
        if backward in self.connections:
            self.connections[backward].replied = True
            return TRK | EST | RPL
        flags = packet.get("tcp_flags", 0) if packet.get("nw_proto") == IPPROTO_TCP else 0
        if flags & _SYN and flags & (_ACK | _FIN):
            return TRK | INV
        return TRK | NEW

    def commit(self, zone: int, packet: Mapping[str, int], mark: str | None = None) -> None:
        forward, backward = self._tuples(zone, packet)
        key = backward if backward in self.connections else forward
        connection = self.connections.setdefault(key, Connection())
        if mark is not None:
            value_text, _, mask_text = mark.partition("/")
            mask = int(mask_text, 0) if mask_text else 0xFFFFFFFF
            connection.mark = (connection.mark & ~mask) | (int(value_text, 0) & mask)

    def mark_of(self, zone: int, packet: Mapping[str, int]) -> int | None:
        """The ct_mark of the packet's connection in `zone` (None: not committed)."""
        forward, backward = self._tuples(zone, packet)
        connection = self.connections.get(forward) or self.connections.get(backward)
        return None if connection is None else connection.mark

    def zones(self) -> set[int]:
        return {key[0] for key in self.connections}


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

    def __init__(self, flows: Iterable[Flow], conntrack: ConnectionTable | None = None) -> None:
        self.conntrack = conntrack if conntrack is not None else ConnectionTable()
        tables: dict[int, list[_Entry]] = {}
        for flow in flows:
            match = tuple((name, *_parse(name, text)) for name, text in flow.match)
            entry = _Entry(flow.priority, match, flow)
            tables.setdefault(flow.table.number, []).append(entry)
        for entries in tables.values():
            entries.sort(key=lambda entry: -entry.priority)
        self._tables = tables
        self._ct_next: list[int] = []
        self._given_mark = 0

    def process(self, packet: Mapping[str, int], ct_next: Iterable[int] = ()) -> Verdict:
        """Run a packet from table 0; `packet` must carry `in_port`.

        `ct_next` dictates the `ct_state` of each `ct(table=)` in turn (see
        `ct_states`) instead of the modelled connection table.
        """
        state: Packet = dict(packet)
        verdict = Verdict()
        self._ct_next = list(ct_next)
        self._given_mark = state.pop("ct_mark", 0)
        self._run_table(0, state, verdict, 0)
        return verdict

    def send(self, ct_next: Iterable[int] = (), **fields: object) -> Verdict:
        return self.process(make_packet(**fields), ct_next)

    def lookup(self, table: int, state: Mapping[str, int]) -> Flow | None:
        entries = self._tables.get(table, [])
        index = 0
        while index < len(entries):
            priority = entries[index].priority
            hits: list[_Entry] = []
            clauses: dict[int, set[int]] = {}
            sizes: dict[int, int] = {}
            while index < len(entries) and entries[index].priority == priority:
                entry = entries[index]
                index += 1
                if not _matches(entry, state):
                    continue
                conjunctions = [a for a in entry.flow.actions if isinstance(a, Conjunction)]
                if not conjunctions:
                    hits.append(entry)
                for conj in conjunctions:
                    clauses.setdefault(conj.id, set()).add(conj.clause)
                    sizes[conj.id] = conj.n_clauses
            complete = sorted(c for c, seen in clauses.items() if len(seen) == sizes[c])
            found = [hit.flow for hit in hits]
            for conj_id in complete:
                target = self._conj_id_flow(table, {**state, "conj_id": conj_id})
                if target is not None:
                    found.append(target)
            if found:
                if any(flow.actions != found[0].actions for flow in found[1:]):
                    bodies = " | ".join(flow.body for flow in found)
                    raise ModelError(f"ambiguous match in table {table}: {bodies}")
                return found[0]
        return None

    def _conj_id_flow(self, table: int, state: Mapping[str, int]) -> Flow | None:
        """The lookup after a complete conjunction: conjunction flows do not take part."""
        for entry in self._tables.get(table, []):
            if any(isinstance(a, Conjunction) for a in entry.flow.actions):
                continue
            if _matches(entry, state):
                return entry.flow
        return None

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
                value_text, _, mask_text = action.value.partition("/")
                value = _value(action.field, value_text)
                if mask_text:
                    mask = int(mask_text, 0)
                    value = (state.get(action.field, 0) & ~mask) | (value & mask)
                state[action.field] = value
            elif isinstance(action, CtClear):
                state["ct_state"] = 0
                state["ct_mark"] = 0
            elif isinstance(action, Conntrack):
                zone = state.get(action.zone_field, 0) & 0xFFFF
                if action.commit:
                    self.conntrack.commit(zone, state, action.mark)
                if action.table is not None:
                    if self._ct_next:
                        # Dictated, as ofproto/trace --ct-next: the state only; the
                        # mark is what the packet was given (ct_mark=...), else 0.
                        ct_state = self._ct_next.pop(0)
                        ct_mark = self._given_mark
                    else:
                        ct_state = self.conntrack.state(zone, state)
                        ct_mark = self.conntrack.mark_of(zone, state) or 0
                    state["ct_state"] = ct_state
                    state["ct_mark"] = ct_mark
                    state["ct_zone"] = zone
                    verdict.trace.append(
                        f"ct(zone={zone}) → ct_state={ct_state:#x} ct_mark={ct_mark:#x}"
                    )
                    # The tracked packet continues there; nothing after ct(table=) runs on it.
                    self._run_table(action.table.number, state, verdict, depth + 1)
                    return
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


def _matches(entry: _Entry, state: Mapping[str, int]) -> bool:
    return all((state.get(name, 0) & mask) == (value & mask) for name, value, mask in entry.match)


def _wire(state: Packet) -> dict[str, int]:
    return {name: value for name, value in state.items() if name not in _PIPELINE_STATE}
