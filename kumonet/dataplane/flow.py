"""OpenFlow flows as immutable values: match fields, actions, cookies, text.

A `Flow` renders to the exact line `ovs-ofctl -O OpenFlow15 --bundle add-flows -`
accepts.  Its cookie is derived from that text (everything but the cookie), so
two flows are the same flow exactly when their cookies are equal: the agent
diffs installed against desired by cookie alone, and a flow whose actions
change is a different flow with a different cookie.

Match values are kept as the ovs-ofctl text of the value (`fa:16:3e:00:00:01`,
`10.0.0.0/24`, `0x1/0x1`): building and rendering flows is then string joins,
which keeps compiling thousands of flows cheap.  The in-memory switch model
(`oftable.py`) parses them back when it needs numbers.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kumonet.dataplane.pipeline import Table

# High 16 bits of every kumonet cookie: "kn".  The agent's OpenFlow adapter
# selects kumonet's flows with this marker and leaves any other flow alone.
COOKIE_MARKER = 0x6B6E
COOKIE_MARKER_SHIFT = 48
COOKIE_MARKER_MASK = 0xFFFF << COOKIE_MARKER_SHIFT
COOKIE_HASH_MASK = (1 << COOKIE_MARKER_SHIFT) - 1


class FieldKind(Enum):
    """How a field's value is written and compared."""

    INT = "int"
    MAC = "mac"
    IPV4 = "ipv4"
    IPV6 = "ipv6"
    FLAGS = "flags"  # `+name-name` text over named bits (ct_state, tcp_flags)


class PipelineError(ValueError):
    """A flow breaks the pipeline declaration or OpenFlow's prerequisites."""


ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_SCTP = 132
IPPROTO_ICMPV6 = 58


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One OpenFlow match field: its ovs-ofctl name, kind, width and prerequisite.

    `requires` names another field and the values it must be matched on in the
    same flow (OpenFlow refuses e.g. `nw_src` without `dl_type=0x0800`).
    """

    name: str
    kind: FieldKind
    bits: int
    requires: tuple[str, tuple[int, ...]] | None = None
    writable: bool = False


def _fields(*specs: FieldSpec) -> dict[str, FieldSpec]:
    return {spec.name: spec for spec in specs}


# Named bits of the FLAGS fields, as ovs-ofctl spells them.
CT_STATE_BITS: dict[str, int] = {
    "new": 0x01, "est": 0x02, "rel": 0x04, "rpl": 0x08,
    "inv": 0x10, "trk": 0x20, "snat": 0x40, "dnat": 0x80,
}  # fmt: skip
TCP_FLAG_BITS: dict[str, int] = {
    "fin": 0x001, "syn": 0x002, "rst": 0x004, "psh": 0x008, "ack": 0x010,
    "urg": 0x020, "ece": 0x040, "cwr": 0x080, "ns": 0x100,
}  # fmt: skip
FLAG_BITS: dict[str, dict[str, int]] = {"ct_state": CT_STATE_BITS, "tcp_flags": TCP_FLAG_BITS}

_IP_TYPES = (ETH_IPV4,)
_L4_PROTOS = (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP)

# The vocabulary of fields kumonet uses, in canonical rendering order.  The
# pipeline declares which of these each table may match.
FIELDS: dict[str, FieldSpec] = _fields(
    FieldSpec("in_port", FieldKind.INT, 32),
    FieldSpec("metadata", FieldKind.INT, 64, writable=True),
    FieldSpec("reg2", FieldKind.INT, 32, writable=True),
    FieldSpec("reg3", FieldKind.INT, 32, writable=True),
    FieldSpec("reg4", FieldKind.INT, 32, writable=True),
    FieldSpec("reg5", FieldKind.INT, 32, writable=True),
    FieldSpec("reg6", FieldKind.INT, 32, writable=True),
    FieldSpec("reg7", FieldKind.INT, 32, writable=True),
    FieldSpec("tun_id", FieldKind.INT, 64, writable=True),
    FieldSpec("ct_state", FieldKind.FLAGS, 32),
    FieldSpec("ct_mark", FieldKind.INT, 32),
    FieldSpec("conj_id", FieldKind.INT, 32),
    FieldSpec("dl_src", FieldKind.MAC, 48, writable=True),
    FieldSpec("dl_dst", FieldKind.MAC, 48, writable=True),
    FieldSpec("vlan_tci", FieldKind.INT, 16, writable=True),
    FieldSpec("dl_type", FieldKind.INT, 16),
    FieldSpec("nw_proto", FieldKind.INT, 8, requires=("dl_type", (ETH_IPV4, ETH_IPV6))),
    FieldSpec("nw_src", FieldKind.IPV4, 32, requires=("dl_type", _IP_TYPES)),
    FieldSpec("nw_dst", FieldKind.IPV4, 32, requires=("dl_type", _IP_TYPES)),
    FieldSpec("ipv6_src", FieldKind.IPV6, 128, requires=("dl_type", (ETH_IPV6,))),
    FieldSpec("ipv6_dst", FieldKind.IPV6, 128, requires=("dl_type", (ETH_IPV6,))),
    FieldSpec("arp_op", FieldKind.INT, 16, requires=("dl_type", (ETH_ARP,))),
    FieldSpec("arp_spa", FieldKind.IPV4, 32, requires=("dl_type", (ETH_ARP,))),
    FieldSpec("arp_tpa", FieldKind.IPV4, 32, requires=("dl_type", (ETH_ARP,))),
    FieldSpec("arp_sha", FieldKind.MAC, 48, requires=("dl_type", (ETH_ARP,))),
    FieldSpec("tp_src", FieldKind.INT, 16, requires=("nw_proto", _L4_PROTOS)),
    FieldSpec("tp_dst", FieldKind.INT, 16, requires=("nw_proto", _L4_PROTOS)),
    FieldSpec("tcp_flags", FieldKind.FLAGS, 12, requires=("nw_proto", (IPPROTO_TCP,))),
    FieldSpec("icmp_type", FieldKind.INT, 8, requires=("nw_proto", (IPPROTO_ICMP,))),
    FieldSpec("icmp_code", FieldKind.INT, 8, requires=("nw_proto", (IPPROTO_ICMP,))),
    FieldSpec("icmpv6_type", FieldKind.INT, 8, requires=("nw_proto", (IPPROTO_ICMPV6,))),
    FieldSpec("icmpv6_code", FieldKind.INT, 8, requires=("nw_proto", (IPPROTO_ICMPV6,))),
    FieldSpec("nd_target", FieldKind.IPV6, 128, requires=("icmpv6_type", (135, 136))),
)
_FIELD_RANK = {name: rank for rank, name in enumerate(FIELDS)}


def parse_flags(name: str, text: str) -> tuple[int, int]:
    """(value, mask) of a FLAGS match text: `+new+trk-est` → (0x21, 0x23)."""
    bits = FLAG_BITS[name]
    value = mask = 0
    for sign, flag in re.findall(r"([+-])([a-z]+)", text):
        bit = bits[flag]
        mask |= bit
        if sign == "+":
            value |= bit
    return value, mask


def _int_value(text: str) -> int:
    """The value part of an INT match text (`0x1/0x1` → 1, `100` → 100)."""
    return int(text.split("/", 1)[0], 0)


# ---------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Output:
    """Send a copy of the packet out of an OpenFlow port."""

    port: int

    def render(self) -> str:
        return f"output:{self.port}"


@dataclass(frozen=True, slots=True)
class OutputToField:
    """Send a copy out of the port whose number a register holds."""

    field: str

    def render(self) -> str:
        return f"output:{_nxm(self.field)}"


@dataclass(frozen=True, slots=True)
class SetField:
    """Write a value (ovs-ofctl text) into a writable field or register."""

    field: str
    value: str

    def render(self) -> str:
        return f"set_field:{self.value}->{self.field}"


@dataclass(frozen=True, slots=True)
class PushVlan:
    """Tag the packet with an 802.1Q header carrying `vid`."""

    vid: int

    def render(self) -> str:
        # vlan_vid in OpenFlow 1.2+ carries the CFI/"present" bit 0x1000.
        return f"push_vlan:0x8100,set_field:{0x1000 | self.vid}->vlan_vid"


@dataclass(frozen=True, slots=True)
class PopVlan:
    """Remove the outer 802.1Q header."""

    def render(self) -> str:
        return "pop_vlan"


@dataclass(frozen=True, slots=True)
class Normal:
    """Forward as an ordinary MAC-learning switch (provider bridges only)."""

    def render(self) -> str:
        return "NORMAL"


@dataclass(frozen=True, slots=True)
class Controller:
    """Send the packet to the controller connection (the agent's packet-in)."""

    def render(self) -> str:
        # A reason of "action" and no buffering: the agent needs the whole frame.
        return "controller(reason=action,max_len=65535)"


@dataclass(frozen=True, slots=True)
class Goto:
    """Continue the pipeline at a later table (the last action of a flow)."""

    table: Table

    def render(self) -> str:
        return f"goto_table:{self.table.number}"


@dataclass(frozen=True, slots=True)
class Resubmit:
    """Run a table on the packet as a subroutine, then carry on."""

    table: Table

    def render(self) -> str:
        return f"resubmit(,{self.table.number})"


@dataclass(frozen=True, slots=True)
class Clone:
    """Run actions on a copy of the packet; changes do not leak out."""

    actions: tuple[Action, ...]

    def render(self) -> str:
        return "clone(" + ",".join(action.render() for action in self.actions) + ")"


@dataclass(frozen=True, slots=True)
class Conntrack:
    """Send the packet through connection tracking in the zone a register holds.

    With `table`, the tracked packet continues there (a recirculation, with
    `ct_state` and `ct_mark` filled in); with `commit`, the connection is
    remembered, and `mark` (ovs-ofctl text, `0x1/0x1`) is written into its
    `ct_mark`, which later packets of the connection, both ways, then match.
    """

    zone_field: str
    commit: bool = False
    table: Table | None = None
    mark: str | None = None

    def __post_init__(self) -> None:
        if self.mark is not None and not self.commit:
            raise PipelineError("ct_mark can only be set by a committing ct")

    def render(self) -> str:
        parts = ["commit"] if self.commit else []
        if self.table is not None:
            parts.append(f"table={self.table.number}")
        parts.append(f"zone={_nxm(self.zone_field, '[0..15]')}")
        if self.mark is not None:
            parts.append(f"exec(set_field:{self.mark}->ct_mark)")
        return f"ct({','.join(parts)})"


@dataclass(frozen=True, slots=True)
class CtClear:
    """Forget the conntrack state an earlier `ct` gave the packet."""

    def render(self) -> str:
        return "ct_clear"


@dataclass(frozen=True, slots=True)
class Conjunction:
    """Dimension `clause` of `n_clauses` of the conjunctive match `id`."""

    id: int
    clause: int
    n_clauses: int

    def render(self) -> str:
        return f"conjunction({self.id},{self.clause}/{self.n_clauses})"


Action = (
    Output
    | OutputToField
    | SetField
    | PushVlan
    | PopVlan
    | Normal
    | Controller
    | Goto
    | Resubmit
    | Clone
    | Conntrack
    | CtClear
    | Conjunction
)


def _nxm(field_name: str, bits: str = "[]") -> str:
    if field_name.startswith("reg"):
        return f"NXM_NX_REG{field_name[3:]}{bits}"
    raise PipelineError(f"no NXM name known for {field_name}")


def _walk(actions: tuple[Action, ...]) -> list[Action]:
    if not any(isinstance(action, Clone) for action in actions):
        return list(actions)
    found: list[Action] = []
    for action in actions:
        found.append(action)
        if isinstance(action, Clone):
            found.extend(_walk(action.actions))
    return found


# ------------------------------------------------------------------- flows


@dataclass(frozen=True)
class Flow:
    """One OpenFlow flow of a declared table; checked when built.

    `match` is a tuple of (field, ovs-ofctl value text) in canonical field
    order; build flows with `Table.flow(...)`, which sorts and checks.
    An empty `actions` tuple means drop.
    """

    table: Table
    priority: int
    match: tuple[tuple[str, str], ...]
    actions: tuple[Action, ...] = field(default=())
    # Derived once at build time (every flow is rendered and diffed by cookie).
    body: str = field(init=False, compare=False, repr=False)
    cookie: int = field(init=False, compare=False, repr=False)
    # Table, priority and match as text: what OpenFlow considers the same entry
    # (a str caches its hash, so the compiler's conflict check stays cheap).
    entry: str = field(init=False, compare=False, repr=False)
    _head_length: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.table.check(self)
        head = f"table={self.table.number},priority={self.priority}"
        tail = ""
        if self.match:
            tail = "," + ",".join([f"{name}={value}" for name, value in self.match])
        actions = ",".join([action.render() for action in self.actions]) or "drop"
        entry = f"{head}{tail}"
        body = f"{entry} actions={actions}"
        digest = hashlib.blake2b(body.encode(), digest_size=8).digest()
        cookie = (COOKIE_MARKER << COOKIE_MARKER_SHIFT) | (
            int.from_bytes(digest, "big") & COOKIE_HASH_MASK
        )
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "cookie", cookie)
        object.__setattr__(self, "entry", entry)
        object.__setattr__(self, "_head_length", len(head))

    def render(self) -> str:
        """The `add-flows` line, cookie included."""
        cut = self._head_length
        return f"{self.body[:cut]},cookie={self.cookie:#x}{self.body[cut:]}"

    def key(self) -> tuple[int, int, tuple[tuple[str, str], ...]]:
        """What OpenFlow considers the same flow entry: table, priority, match."""
        return (self.table.number, self.priority, self.match)

    def all_actions(self) -> list[Action]:
        return _walk(self.actions)


def is_kumonet_cookie(cookie: int) -> bool:
    return (cookie >> COOKIE_MARKER_SHIFT) == COOKIE_MARKER


def canonical_match(match: dict[str, str | int]) -> tuple[tuple[str, str], ...]:
    """Sort a match into canonical field order; ints become decimal text."""
    try:
        names = sorted(match, key=_FIELD_RANK.__getitem__)
    except KeyError as exc:
        raise PipelineError(f"unknown match field {exc.args[0]!r}") from None
    return tuple([(name, str(match[name])) for name in names])


_REQUIRES = {name: spec.requires for name, spec in FIELDS.items() if spec.requires}


def check_prerequisites(match: tuple[tuple[str, str], ...]) -> None:
    """Raise if a field is matched without the field values it depends on."""
    values: dict[str, str] | None = None
    for name, _ in match:
        requires = _REQUIRES.get(name)
        if requires is None:
            continue
        if values is None:
            values = dict(match)
        needed, allowed = requires
        if needed not in values or _int_value(values[needed]) not in allowed:
            raise PipelineError(f"{name} needs {needed} in {allowed}; match is {values}")
