"""The OpenFlow pipeline of br-int, declared once, as data.

`KUMONET_PIPELINE` is the ordered declaration: every table's name, purpose,
the fields it may match, the fields it may write, the tables it may go to and
what it does on a miss.  Table numbers are derived from the order (ten apart,
so later issues can slot tables in without renumbering their neighbours by
hand); nothing else writes a table number.  Flows are built through
`Table.flow`, which refuses a match on an undeclared field, a write to an
undeclared field, a jump to an undeclared next table, or a match missing its
OpenFlow prerequisites.  `describe_pipeline` renders the declaration for the
docs and the `kumonet pipeline` command.

Packet walk (br-int):

    classify ─┬─ local port, port security on ─▶ port_security ─▶ dhcp
              ├─ local port, port security off ──────────────────▶ dhcp
              ├─ tunnel port ─▶ tunnel_classify ─────────────────────────────▶ l2_lookup
              └─ provider patch port (+VLAN) ─────────────────────────────────▶ l2_lookup
    dhcp ─▶ (DHCP/DHCPv6 client, router solicitation → controller) ─▶ egress_ct ─▶ l2_lookup
    egress_ct ─ filtered sender's IP ─▶ ct(zone=sender) ─▶ egress_acl
        ├─ +inv, TCP +new without SYN ─▶ drop
        ├─ replies (+est+rpl) and related (+rel) of a connection not cut ─▶ l2_lookup
        ├─ replies and related of a cut connection (ct_mark bit 0x1) ─▶ drop
        └─ original direction, new or established: per group of the port: reg2=group,
           resubmit egress_rules (sets "allowed") ─▶ egress_verdict:
             allowed: new ─▶ ct(commit) ─▶ l2_lookup; established ─▶ l2_lookup
                      (a cut one is uncut: ct(commit, ct_mark 0) first)
             not allowed: established ─▶ ct(commit, ct_mark 1): cut, drop; new ─▶ drop
    l2_lookup ─┬─ local destination ─▶ ingress_ct ─▶ (ingress_acl ... ingress_verdict) ─▶ output
               ├─ remote destination ─▶ tunnel port with tun_id / provider patch with VLAN
               └─ broadcast/multicast/unknown ─▶ each local port via ingress_ct, tunnels, patch

Conntrack zones are per port: the low 16 bits of the port's ofport (reg5 for
the sender, reg7 for the receiver), so no two ports of a host, whatever their
networks and addresses, share connection state.  A port's ingress and egress
share its zone, so a connection cut on one side has its replies dropped on the
other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kumonet.dataplane.flow import (
    FIELDS,
    Action,
    Clone,
    Conjunction,
    Conntrack,
    Controller,
    CtClear,
    Flow,
    Goto,
    Normal,
    Output,
    OutputToField,
    PipelineError,
    PopVlan,
    PushVlan,
    Resubmit,
    SetField,
    canonical_match,
    check_prerequisites,
)

TABLE_STRIDE = 10
DROP = "drop"


@dataclass(frozen=True, slots=True)
class Register:
    """A pipeline-wide meaning given to a field (a register or metadata)."""

    name: str
    field: str
    purpose: str


@dataclass(frozen=True, slots=True)
class TableSpec:
    """The declaration of one table; numbers are not part of it."""

    name: str
    purpose: str
    matches: frozenset[str]
    next_tables: tuple[str, ...] = ()
    writes: frozenset[str] = frozenset()
    may_output: bool = False
    may_send_to_controller: bool = False
    may_change_vlan: bool = False
    # The register whose low 16 bits are the conntrack zone of this table's ct
    # actions; None: the table may not use conntrack.
    ct_zone: str | None = None
    # Whether flows may be dimensions of conjunctive matches (`conjunction`).
    conjunctive: bool = False
    # DROP, or the name of a next table to go to when no flow matches.
    on_miss: str = DROP


@dataclass(frozen=True, eq=False)
class Table:
    """A declared table with its derived number; builds and checks flows."""

    spec: TableSpec
    number: int
    pipeline: Pipeline = field(repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    def flow(
        self,
        priority: int,
        match: Mapping[str, str | int] | None = None,
        actions: Sequence[Action] = (),
    ) -> Flow:
        """Build a flow of this table (raises `PipelineError` if it breaks the declaration)."""
        return Flow(self, priority, canonical_match(dict(match or {})), tuple(actions))

    def miss_flow(self) -> Flow:
        """The priority-0 flow carrying the declared miss action."""
        if self.spec.on_miss == DROP:
            return self.flow(0)
        return self.flow(0, actions=[Goto(self.pipeline.table(self.spec.on_miss))])

    def goto(self, name: str) -> Goto:
        return Goto(self.pipeline.table(name))

    def resubmit(self, name: str) -> Resubmit:
        return Resubmit(self.pipeline.table(name))

    def check(self, flow: Flow) -> None:
        spec = self.spec
        matches = spec.matches
        for name, _ in flow.match:
            if name not in matches:
                raise PipelineError(f"table {spec.name} may not match {name}: {flow.match}")
        check_prerequisites(flow.match)
        if not 0 <= flow.priority <= 0xFFFF:
            raise PipelineError(f"priority out of range: {flow.priority}")
        actions = flow.actions
        if any(type(action) is Conjunction for action in actions):
            if not spec.conjunctive:
                raise PipelineError(f"table {spec.name} has no conjunctive matches")
            if not all(type(action) is Conjunction for action in actions):
                raise PipelineError(f"conjunction flows take no other actions: {actions}")
        last = len(actions) - 1
        for position, action in enumerate(actions):
            if type(action) is Goto and position != last:
                raise PipelineError(f"goto_table must be the last action: {flow.actions}")
            self._check_action(action, flow)

    def _check_action(self, action: Action, flow: Flow) -> None:
        # Dispatch on the exact type: flows are built by the thousand per compile.
        spec = self.spec
        kind = type(action)
        if kind is SetField:
            assert isinstance(action, SetField)
            if action.field not in spec.writes:
                raise PipelineError(f"table {spec.name} may not write {action.field}")
            if not FIELDS[action.field].writable:
                raise PipelineError(f"{action.field} is not writable")
        elif kind is Goto or kind is Resubmit:
            assert isinstance(action, Goto | Resubmit)
            target = action.table
            if target.pipeline is not self.pipeline or target.name not in spec.next_tables:
                raise PipelineError(f"table {spec.name} may not go to {target.name}")
            if kind is Goto and target.number <= self.number:
                raise PipelineError(f"goto_table must go forward: {spec.name} → {target.name}")
        elif kind is Output or kind is OutputToField or kind is Normal:
            if not spec.may_output:
                raise PipelineError(f"table {spec.name} may not output: {flow.match}")
        elif kind is Controller:
            if not spec.may_send_to_controller:
                raise PipelineError(f"table {spec.name} may not send to the controller")
        elif kind is PushVlan or kind is PopVlan:
            if not spec.may_change_vlan:
                raise PipelineError(f"table {spec.name} may not push or pop VLAN tags")
        elif kind is Clone:
            assert isinstance(action, Clone)
            for inner in action.actions:
                self._check_action(inner, flow)
        elif kind is CtClear:
            if spec.ct_zone is None:
                raise PipelineError(f"table {spec.name} may not use conntrack")
        elif kind is Conntrack:
            assert isinstance(action, Conntrack)
            if spec.ct_zone is None or action.zone_field != spec.ct_zone:
                raise PipelineError(f"table {spec.name} may not use ct zone {action.zone_field}")
            dl_type = dict(flow.match).get("dl_type")
            if dl_type not in ("0x800", "0x86dd"):
                raise PipelineError(f"ct needs an IPv4 or IPv6 match: {flow.match}")
            after = action.table
            if after is not None and (
                after.name not in spec.next_tables or after.number <= self.number
            ):
                raise PipelineError(f"table {spec.name} may not ct(table={after.name})")


@dataclass(frozen=True, eq=False)
class Pipeline:
    """An ordered, immutable pipeline: tables numbered by their position."""

    specs: tuple[TableSpec, ...]
    registers: tuple[Register, ...]
    tables: tuple[Table, ...] = field(init=False)
    _by_name: Mapping[str, Table] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        tables = tuple(
            Table(spec, index * TABLE_STRIDE, self) for index, spec in enumerate(self.specs)
        )
        by_name = {table.name: table for table in tables}
        if len(by_name) != len(tables):
            raise PipelineError("table names must be unique")
        for table in tables:
            for name in (*table.spec.next_tables, table.spec.on_miss):
                if name != DROP and name not in by_name:
                    raise PipelineError(f"{table.name} refers to undeclared table {name}")
            unknown = (table.spec.matches | table.spec.writes) - FIELDS.keys()
            if unknown:
                raise PipelineError(f"{table.name} declares unknown fields {sorted(unknown)}")
        object.__setattr__(self, "tables", tables)
        object.__setattr__(self, "_by_name", by_name)

    def table(self, name: str) -> Table:
        try:
            return self._by_name[name]
        except KeyError:
            raise PipelineError(f"no table named {name!r}") from None

    def register(self, name: str) -> str:
        """The field that holds the register of that name (e.g. "network" → metadata)."""
        for register in self.registers:
            if register.name == name:
                return register.field
        raise PipelineError(f"no register named {name!r}")

    def miss_flows(self) -> list[Flow]:
        return [table.miss_flow() for table in self.tables]


_PORT_SECURITY_FIELDS = frozenset(
    {
        "in_port", "dl_src", "dl_type", "nw_proto", "nw_src", "nw_dst", "tp_src", "tp_dst",
        "arp_op", "arp_sha", "arp_spa", "ipv6_src", "icmpv6_type", "icmpv6_code", "nd_target",
    }
)  # fmt: skip

NETWORK = Register("network", "metadata", "network key (stable hash of the network id)")
SECURITY_GROUP = Register(
    "security_group", "reg2", "key of the security group whose rules run (hash of its id)"
)
ACL = Register(
    "acl", "reg3", "ACL flags: 0x1/0x2 sender/receiver filtered statefully, 0x10/0x20 "
    "statelessly; 0x4/0x8 a rule allowed it out of the sender / into the receiver"
)  # fmt: skip
ORIGIN = Register("origin", "reg4", "0 = a local port sent it; 1 = vxlan, 2 = gre, 3 = provider")
IN_PORT_KEY = Register(
    "in_port_key", "reg5",
    "ofport of the sending local port (0 if remote); bits 0-15: its conntrack zone",
)  # fmt: skip
OUT_PORT = Register(
    "out_port", "reg7", "ofport of the local destination port; bits 0-15: its conntrack zone"
)
KUMONET_REGISTERS = (NETWORK, SECURITY_GROUP, ACL, ORIGIN, IN_PORT_KEY, OUT_PORT)

# ACL flag bits in reg3 (ACL register).
EGRESS_STATEFUL = 0x1
INGRESS_STATEFUL = 0x2
EGRESS_ALLOWED = 0x4
INGRESS_ALLOWED = 0x8
EGRESS_STATELESS = 0x10
INGRESS_STATELESS = 0x20

# ct_mark bit of a connection the security groups no longer allow ("cut"):
# set when an original-direction packet of an established connection matches
# no rule; every packet of the connection is then dropped, both ways, until a
# rule allows its original direction again.  Other bits are left to others.
CT_MARK_CUT = 0x1

_ACL_FIELDS = frozenset({"dl_type", "nw_proto", "ct_state", "ct_mark", "tcp_flags"})
_RULE_FIELDS = frozenset(
    {
        "reg2", "conj_id", "dl_type", "nw_proto", "nw_src", "nw_dst", "ipv6_src", "ipv6_dst",
        "tp_src", "tp_dst", "icmp_type", "icmp_code", "icmpv6_type", "icmpv6_code",
    }
)  # fmt: skip
_ALWAYS_ALLOWED_FIELDS = frozenset({"dl_type", "nw_proto", "tp_src", "tp_dst", "icmpv6_type"})

KUMONET_TABLES = (
    TableSpec(
        "classify",
        "which port sent it, and on which network: local port (+ source MAC), "
        "tunnel port, provider patch port (+ VLAN)",
        matches=frozenset({"in_port", "dl_src", "vlan_tci"}),
        next_tables=("tunnel_classify", "port_security", "dhcp", "l2_lookup"),
        writes=frozenset({NETWORK.field, ORIGIN.field, IN_PORT_KEY.field, ACL.field}),
        may_change_vlan=True,
    ),
    TableSpec(
        "tunnel_classify",
        "tunnel type + tunnel key → network",
        matches=frozenset({ORIGIN.field, "tun_id"}),
        next_tables=("l2_lookup",),
        writes=frozenset({NETWORK.field}),
    ),
    TableSpec(
        "port_security",
        "a port sends only with its MAC and its fixed IPs or allowed address pairs "
        "(IPv4, ARP, IPv6, NDP); DHCP server replies and router advertisements dropped",
        matches=_PORT_SECURITY_FIELDS,
        next_tables=("dhcp",),
    ),
    TableSpec(
        "dhcp",
        "DHCPv4 and DHCPv6 client packets and router solicitations of networks whose "
        "subnets want them answered → the host's responder",
        matches=frozenset(
            {NETWORK.field, "dl_type", "nw_proto", "tp_src", "tp_dst", "icmpv6_type"}
        ),
        next_tables=("egress_ct",),
        may_send_to_controller=True,
        on_miss="egress_ct",
    ),
    TableSpec(
        "egress_ct",
        "traffic every VM needs (DHCP client, NDP, MLD) passes; IP from a filtered port "
        "goes through conntrack in the sender's zone",
        matches=_ALWAYS_ALLOWED_FIELDS | {ACL.field},
        next_tables=("egress_acl", "l2_lookup"),
        ct_zone=IN_PORT_KEY.field,
        on_miss="l2_lookup",
    ),
    TableSpec(
        "egress_acl",
        "security groups, from the sending port: invalid and TCP pickups dropped, "
        "replies/related pass unless the connection was cut (ct_mark), the original "
        "direction (new or established) runs the port's groups' rules",
        matches=_ACL_FIELDS | {IN_PORT_KEY.field},
        next_tables=("egress_rules", "egress_verdict", "l2_lookup"),
        writes=frozenset({SECURITY_GROUP.field}),
    ),
    TableSpec(
        "egress_rules",
        "the egress rules of the group in reg2 (called once per group): a match sets "
        "the allowed flag; remote groups are conjunctive matches over members' addresses",
        matches=_RULE_FIELDS,
        writes=frozenset({ACL.field}),
        conjunctive=True,
    ),
    TableSpec(
        "egress_verdict",
        "allowed by a rule: commit a new connection (uncut a cut one) in the sender's "
        "zone and go on; else drop, cutting an established connection (ct_mark)",
        matches=frozenset({ACL.field, "ct_state", "ct_mark", "dl_type"}),
        next_tables=("l2_lookup",),
        ct_zone=IN_PORT_KEY.field,
    ),
    TableSpec(
        "l2_lookup",
        "destination MAC → local port (reg7), remote port's tunnel (tun_id), "
        "provider patch (VLAN); broadcast ARP requests for a known port's address "
        "straight to that port; flooding of broadcast, multicast and unknown unicast",
        matches=frozenset({NETWORK.field, ORIGIN.field, "dl_dst", "dl_type", "arp_op", "arp_tpa"}),
        next_tables=("ingress_ct",),
        writes=frozenset({OUT_PORT.field, ACL.field, "tun_id"}),
        may_output=True,
        may_change_vlan=True,
    ),
    TableSpec(
        "ingress_ct",
        "traffic every VM needs (DHCP replies, NDP, MLD, router advertisements) passes; "
        "IP to a filtered port goes through conntrack in the receiver's zone",
        matches=_ALWAYS_ALLOWED_FIELDS | {ACL.field},
        next_tables=("ingress_acl", "output"),
        ct_zone=OUT_PORT.field,
        on_miss="output",
    ),
    TableSpec(
        "ingress_acl",
        "security groups, towards the receiving port: invalid and TCP pickups dropped, "
        "replies/related pass unless the connection was cut (ct_mark), the original "
        "direction (new or established) runs the port's groups' rules",
        matches=_ACL_FIELDS | {OUT_PORT.field},
        next_tables=("ingress_rules", "ingress_verdict", "output"),
        writes=frozenset({SECURITY_GROUP.field}),
    ),
    TableSpec(
        "ingress_rules",
        "the ingress rules of the group in reg2 (called once per group): a match sets "
        "the allowed flag; remote groups are conjunctive matches over members' addresses",
        matches=_RULE_FIELDS,
        writes=frozenset({ACL.field}),
        conjunctive=True,
    ),
    TableSpec(
        "ingress_verdict",
        "allowed by a rule: commit a new connection (uncut a cut one) in the receiver's "
        "zone and deliver; else drop, cutting an established connection (ct_mark)",
        matches=frozenset({ACL.field, "ct_state", "ct_mark", "dl_type"}),
        next_tables=("output",),
        ct_zone=OUT_PORT.field,
    ),
    TableSpec(
        "output",
        "deliver to the local port in reg7 (never back out of the in_port)",
        matches=frozenset({OUT_PORT.field}),
        may_output=True,
    ),
)

KUMONET_PIPELINE = Pipeline(KUMONET_TABLES, KUMONET_REGISTERS)

# A provider bridge (bridge_mappings) joins br-int's patch port to the physical
# network: br-int already pushed the network's VLAN, so it only switches.
PROVIDER_PIPELINE = Pipeline(
    (
        TableSpec(
            "provider_forward",
            "ordinary switching between the physical interface and br-int's patch",
            matches=frozenset(),
            may_output=True,
        ),
    ),
    (),
)


def describe_pipeline(pipeline: Pipeline = KUMONET_PIPELINE) -> str:
    """The pipeline as Markdown: one row per table, then the registers."""
    lines = [
        "| table | name | purpose | matches | goes to | on miss |",
        "|---:|---|---|---|---|---|",
    ]
    for table in pipeline.tables:
        spec = table.spec
        goes_to = ", ".join(f"{pipeline.table(n).number} {n}" for n in spec.next_tables)
        extras = [
            word
            for word, flag in (
                ("output", spec.may_output),
                ("controller", spec.may_send_to_controller),
            )
            if flag
        ]
        on_miss = spec.on_miss if spec.on_miss == DROP else f"goto {spec.on_miss}"
        lines.append(
            f"| {table.number} | {spec.name} | {spec.purpose} | "
            f"{', '.join(sorted(spec.matches)) or '—'} | "
            f"{', '.join([goes_to, *extras] if goes_to else extras) or '—'} | {on_miss} |"
        )
    lines += ["", "| register | field | meaning |", "|---|---|---|"]
    lines += [f"| {r.name} | {r.field} | {r.purpose} |" for r in pipeline.registers]
    return "\n".join(lines) + "\n"


def table_names(pipeline: Pipeline = KUMONET_PIPELINE) -> Iterable[str]:
    return (table.name for table in pipeline.tables)
