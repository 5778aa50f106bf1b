"""Security groups as flows: stateful conntrack ACLs in the egress/ingress ACL tables.

How a packet is judged (the tables are declared in `pipeline.py`):

- `egress_ct` / `ingress_ct`: the traffic every VM needs whatever its groups
  (DHCP client and replies, NDP, MLD, router solicitations/advertisements, as
  Neutron allows them) passes untouched; other IP of a filtered port goes
  through conntrack in that port's zone (its ofport) and on to `*_acl`.
- `*_acl`: `+inv` drops; a TCP `+new` without SYN drops (the userspace
  conntrack picks up a bare mid-stream ACK as `+new`); replies (`+est+rpl`)
  and related packets pass without a rule lookup unless their connection was
  cut (`ct_mark` bit `CT_MARK_CUT`), then they drop; every packet in the
  original direction, new or established, runs the rules of each of the
  port's groups: one flow per port sets reg2 to a group's key and resubmits to
  `*_rules`, once per group.  The rule flows match no `ct_state`, so one flow
  per rule (cover) serves new and established packets alike.
- `*_rules`: the rules of every group in use on the host, shared by all its
  ports; a matching rule sets the "allowed" bit in reg3.  A rule naming a
  remote group is a conjunctive match: dimension 1 is the rule's protocol and
  ports, dimension 2 one flow per member address of the remote group.  So a
  member joining or leaving touches one flow per (group, remote group) pair on
  the host, and a rule change touches only that rule's flows.
- `*_verdict`: allowed: a new connection → `ct(commit)` in the port's zone
  (stateful groups) and on; an established one → on (a cut one is uncut
  first); stateless → on.  Not allowed: an established connection is cut
  (`ct(commit)` writing the mark), so its replies drop too; anything else
  drops.

Why a cut connection can come back: a rule that allows it again (re-added, or
the peer rejoined a remote group) lifts the mark at its next original-direction
packet, which the rules see anyway; and a new connection reusing the 5-tuple
is either seen `+new` (a fresh entry, mark 0) or established, and then judged
by the rules like any other.  So no entry blocks a connection the groups allow
until it times out, and the cut costs a commit only on the packet that cuts
or uncuts.

Port ranges become a minimal set of value/mask matches (`port_range_masks`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kumonet.dataplane.flow import (
    ETH_IPV4,
    ETH_IPV6,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Action,
    Conjunction,
    Conntrack,
    CtClear,
    Flow,
    PipelineError,
    SetField,
)
from kumonet.dataplane.intent import Intent, Port, SecurityGroup, SecurityGroupRule
from kumonet.dataplane.pipeline import (
    ACL,
    CT_MARK_CUT,
    EGRESS_ALLOWED,
    EGRESS_STATEFUL,
    EGRESS_STATELESS,
    IN_PORT_KEY,
    INGRESS_ALLOWED,
    INGRESS_STATEFUL,
    INGRESS_STATELESS,
    OUT_PORT,
    SECURITY_GROUP,
    Pipeline,
)

Match = dict[str, str | int]

# Priorities in the *_rules tables.  A conjunction's conj_id flow sits above
# everything: OVS looks it up like any flow once the conjunction completes.
PRIORITY_CONJ_ID = 200
PRIORITY_RULE = 100
PRIORITY_CONJUNCTIVE = 90

# Protocols whose ports OpenFlow can match (DCCP and UDP-Lite ports it cannot).
PORT_PROTOCOLS = frozenset({IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP})

# ICMPv6 Neutron lets through whatever the groups say (MLD, RS/RA, NS/NA).
ICMPV6_EGRESS_ALWAYS = (130, 131, 132, 133, 135, 136, 143)
ICMPV6_INGRESS_ALWAYS = (130, 134, 135, 136)


@dataclass(frozen=True, slots=True)
class Direction:
    """What differs between egress and ingress filtering."""

    name: str
    ct_table: str
    acl_table: str
    rules_table: str
    verdict_table: str
    next_table: str
    port_field: str  # the port whose ACL runs; its low 16 bits are the zone
    stateful_flag: int
    stateless_flag: int
    allowed_flag: int
    remote_v4: str  # the field a remote prefix or group member is matched on
    remote_v6: str


EGRESS = Direction(
    "egress", "egress_ct", "egress_acl", "egress_rules", "egress_verdict", "l2_lookup",
    IN_PORT_KEY.field, EGRESS_STATEFUL, EGRESS_STATELESS, EGRESS_ALLOWED, "nw_dst", "ipv6_dst",
)  # fmt: skip
INGRESS = Direction(
    "ingress", "ingress_ct", "ingress_acl", "ingress_rules", "ingress_verdict", "output",
    OUT_PORT.field, INGRESS_STATEFUL, INGRESS_STATELESS, INGRESS_ALLOWED, "nw_src", "ipv6_src",
)  # fmt: skip
DIRECTIONS = {"egress": EGRESS, "ingress": INGRESS}

ACL_OFF = "off"
ACL_STATEFUL = "stateful"
ACL_STATELESS = "stateless"


def _hash32(*parts: str) -> int:
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") or 1


def group_key(group_id: str) -> int:
    """The 32-bit key of a group in reg2 (stable: derived from the id alone)."""
    return _hash32("group", group_id)


def conjunction_id(direction: str, group_id: str, remote_group_id: str) -> int:
    """The conjunction joining a group's rules naming a remote group to its members."""
    return _hash32("conj", direction, group_id, remote_group_id)


def port_range_masks(low: int, high: int, bits: int = 16) -> list[tuple[int, int]]:
    """The fewest (value, mask) pairs whose matches together are exactly [low, high].

    Greedy: at each step take the largest aligned power-of-two block starting
    at `low` that stays within `high` (a minimal prefix cover of the range).
    """
    full = (1 << bits) - 1
    if not 0 <= low <= high <= full:
        raise ValueError(f"bad range {low}-{high}")
    blocks: list[tuple[int, int]] = []
    while low <= high:
        size = low & -low if low else 1 << bits
        while size > high - low + 1:
            size >>= 1
        blocks.append((low, full ^ (size - 1)))
        low += size
    return blocks


def _port_text(value: int, mask: int) -> str:
    return str(value) if mask == 0xFFFF else f"{value:#x}/{mask:#x}"


def acl_mode(port: Port, groups: Mapping[str, SecurityGroup]) -> str:
    """How a port is filtered: off (no port security or a trusted `network:*`
    port), stateless (all its known groups are stateless) or stateful."""
    if not port.enforces_port_security:
        return ACL_OFF
    known = [groups[g] for g in port.security_groups if g in groups]
    if known and not any(group.stateful for group in known):
        return ACL_STATELESS
    return ACL_STATEFUL


def egress_flag(mode: str) -> int:
    return {ACL_STATEFUL: EGRESS_STATEFUL, ACL_STATELESS: EGRESS_STATELESS}.get(mode, 0)


def ingress_flag(mode: str) -> int:
    return {ACL_STATEFUL: INGRESS_STATEFUL, ACL_STATELESS: INGRESS_STATELESS}.get(mode, 0)


def set_flag(flag: int) -> SetField:
    return SetField(ACL.field, f"{flag:#x}/{flag:#x}")


def _flag_match(flag: int) -> str:
    return f"{flag:#x}/{flag:#x}"


# ----------------------------------------------------------- host-wide flows


def acl_host_flows(pipeline: Pipeline) -> list[Flow]:
    """The ACL flows every host has, whatever its ports and groups."""
    flows: list[Flow] = []
    ip4: Match = {"dl_type": hex(ETH_IPV4)}
    ip6: Match = {"dl_type": hex(ETH_IPV6)}
    udp4: Match = {**ip4, "nw_proto": IPPROTO_UDP}
    udp6: Match = {**ip6, "nw_proto": IPPROTO_UDP}
    icmp6: Match = {**ip6, "nw_proto": IPPROTO_ICMPV6}
    always: dict[str, list[Match]] = {
        "egress": [
            {**udp4, "tp_src": 68, "tp_dst": 67},
            {**udp6, "tp_src": 546, "tp_dst": 547},
            *({**icmp6, "icmpv6_type": t} for t in ICMPV6_EGRESS_ALWAYS),
        ],
        "ingress": [
            {**udp4, "tp_src": 67, "tp_dst": 68},
            {**udp6, "tp_src": 547, "tp_dst": 546},
            *({**icmp6, "icmpv6_type": t} for t in ICMPV6_INGRESS_ALWAYS),
        ],
    }
    marked = _flag_match(CT_MARK_CUT)
    unmarked = f"0/{CT_MARK_CUT:#x}"
    for direction in (EGRESS, INGRESS):
        ct_table = pipeline.table(direction.ct_table)
        acl = pipeline.table(direction.acl_table)
        verdict = pipeline.table(direction.verdict_table)
        onward = [ct_table.goto(direction.next_table)]
        flows += [ct_table.flow(300, match, onward) for match in always[direction.name]]
        stateful = {ACL.field: _flag_match(direction.stateful_flag)}
        stateless = {ACL.field: _flag_match(direction.stateless_flag)}
        allowed = {ACL.field: _flag_match(direction.allowed_flag)}
        for family in (ip4, ip6):
            track = Conntrack(direction.port_field, table=acl)
            flows.append(ct_table.flow(100, {**stateful, **family}, [track]))
            # A stateless receiver judges by its rules alone, not by the state
            # the sender's conntrack pass left on the packet.
            untracked: list[Action] = [ct_table.goto(acl.name)]
            if direction is INGRESS:
                untracked.insert(0, CtClear())
            flows.append(ct_table.flow(100, {**stateless, **family}, untracked))
            # A new TCP connection starts with a SYN: a mid-stream segment
            # conntrack has never seen is picked up as +new, and must not pass.
            pickup: Match = {"ct_state": "+new+trk", **family, "nw_proto": IPPROTO_TCP}
            flows.append(acl.flow(290, {**pickup, "tcp_flags": "-syn"}))
            # Commits clear the cut bit: a new connection starts uncut even if
            # conntrack let it inherit its parent's mark (a related one).
            commit = Conntrack(direction.port_field, commit=True, mark=unmarked)
            cut = Conntrack(direction.port_field, commit=True, mark=marked)
            flows += [
                verdict.flow(
                    100,
                    {**allowed, "ct_state": "+new+trk", **family},
                    [commit, verdict.goto(direction.next_table)],
                ),
                # A rule allows the connection again (re-added, or the peer
                # rejoined a remote group): lift the cut so its replies pass.
                verdict.flow(
                    100,
                    {**allowed, "ct_state": "-new+trk", "ct_mark": marked, **family},
                    [commit, verdict.goto(direction.next_table)],
                ),
                # No rule allows an established connection any more: cut it.
                # Committing the mark makes its replies drop in *_acl too.
                verdict.flow(
                    50, {"ct_state": "-new+est+trk", "ct_mark": unmarked, **family}, [cut]
                ),
            ]
        flows.append(acl.flow(300, {"ct_state": "+inv+trk"}))
        onward = [acl.goto(direction.next_table)]
        # Replies and related packets of connections not cut pass without a rule
        # lookup; the original direction, new or established, falls through to
        # the port's flow that runs its groups' rules (so a removed rule or
        # member stops an established connection too, as Neutron's OVS firewall
        # does).
        flows.append(acl.flow(210, {"ct_state": "-new+rel+trk", "ct_mark": unmarked}, onward))
        flows.append(acl.flow(200, {"ct_state": "+est+rpl+trk", "ct_mark": unmarked}, onward))
        flows.append(acl.flow(190, {"ct_state": "+rpl+trk"}))
        flows.append(acl.flow(190, {"ct_state": "-new+rel+trk"}))
        flows.append(
            verdict.flow(100, {**allowed, "ct_state": "-trk"}, [verdict.goto(direction.next_table)])
        )
        # Allowed and established, not cut: nothing to commit.
        flows.append(
            verdict.flow(90, {**allowed, "ct_state": "+trk"}, [verdict.goto(direction.next_table)])
        )
    return flows


# ------------------------------------------------------------ per-port flows


def port_dispatch_flows(
    pipeline: Pipeline, ofport: int, group_keys: Iterable[int]
) -> tuple[Flow, ...]:
    """A filtered port's two flows: run each of its groups' rules, then the verdict."""
    keys = list(group_keys)
    flows = []
    for direction in (EGRESS, INGRESS):
        acl = pipeline.table(direction.acl_table)
        actions: list[Action] = []
        for key in keys:
            actions.append(SetField(SECURITY_GROUP.field, hex(key)))
            actions.append(acl.resubmit(direction.rules_table))
        actions.append(acl.goto(direction.verdict_table))
        flows.append(acl.flow(100, {direction.port_field: ofport}, actions))
    return tuple(flows)


# ----------------------------------------------------------- per-group flows


def _family(rule: SecurityGroupRule) -> Match:
    return {"dl_type": hex(ETH_IPV6 if rule.is_ipv6 else ETH_IPV4)}


def is_realisable(rule: SecurityGroupRule) -> bool:
    """False for rules OpenFlow cannot express: ports of protocols other than
    TCP, UDP and SCTP (DCCP, UDP-Lite), whose ports OVS cannot match."""
    if rule.port_range_min is None and rule.port_range_max is None:
        return True
    return rule.protocol in PORT_PROTOCOLS or rule.protocol in (IPPROTO_ICMP, IPPROTO_ICMPV6)


def rule_matches(rule: SecurityGroupRule) -> list[Match] | None:
    """The protocol/port/ICMP part of a rule as matches (their union is the rule);
    None when OpenFlow cannot express it (ports of DCCP or UDP-Lite)."""
    base: Match = _family(rule)
    protocol = rule.protocol
    if protocol is None:
        return [base]
    base["nw_proto"] = protocol
    low, high = rule.port_range_min, rule.port_range_max
    if protocol in PORT_PROTOCOLS:
        if low is None and high is None:
            return [base]
        low = high if low is None else low
        high = low if high is None else high
        assert low is not None and high is not None
        if low <= 1 and high == 0xFFFF:
            return [base]  # "all ports" (port 0 is no real traffic)
        return [{**base, "tp_dst": _port_text(v, m)} for v, m in port_range_masks(low, high)]
    if low is None and high is None:
        return [base]
    if protocol == IPPROTO_ICMP:
        return [_icmp(base, "icmp_type", "icmp_code", low, high)]
    if protocol == IPPROTO_ICMPV6:
        return [_icmp(base, "icmpv6_type", "icmpv6_code", low, high)]
    return None


def _icmp(
    base: Match, type_field: str, code_field: str, low: int | None, high: int | None
) -> Match:
    match = dict(base)
    if low is not None:
        match[type_field] = low
        if high is not None:
            match[code_field] = high
    return match


def _remote_prefix(rule: SecurityGroupRule, direction: Direction) -> Match:
    prefix = rule.remote_ip_prefix
    if prefix is None or prefix.endswith("/0"):
        return {}
    field = direction.remote_v6 if rule.is_ipv6 else direction.remote_v4
    if prefix.endswith("/32") or prefix.endswith("/128"):
        prefix = prefix.rsplit("/", 1)[0]
    return {field: prefix}


def group_flows(pipeline: Pipeline, group: SecurityGroup) -> tuple[tuple[Flow, ...], list[str]]:
    """The rule flows of one group (both directions) and notes on rules not realised.

    Member-address flows of remote groups are separate (`member_flow`), so a
    membership change never rebuilds these.
    """
    key = hex(group_key(group.id))
    flows: list[Flow] = []
    notes: list[str] = []
    for direction in (EGRESS, INGRESS):
        rules_table = pipeline.table(direction.rules_table)
        allow = [set_flag(direction.allowed_flag)]
        dimension: dict[tuple[tuple[str, str], ...], set[int]] = {}
        conjunctions: set[int] = set()
        for rule in group.rules:
            if rule.direction != direction.name:
                continue
            matches = rule_matches(rule)
            if matches is None:
                notes.append(f"security group rule {rule.id}: ports of protocol "
                             f"{rule.protocol} cannot be matched; rule not applied")  # fmt: skip
                continue
            if rule.remote_group_id is None:
                extra = _remote_prefix(rule, direction)
                for match in matches:
                    flows.append(
                        rules_table.flow(PRIORITY_RULE, {**match, **extra, "reg2": key}, allow)
                    )
                continue
            conj = conjunction_id(direction.name, group.id, rule.remote_group_id)
            conjunctions.add(conj)
            for match in matches:
                canonical = tuple(sorted((k, str(v)) for k, v in {**match, "reg2": key}.items()))
                dimension.setdefault(canonical, set()).add(conj)
        for canonical, conj_ids in dimension.items():
            flows.append(
                rules_table.flow(
                    PRIORITY_CONJUNCTIVE,
                    dict(canonical),
                    [Conjunction(conj, 1, 2) for conj in sorted(conj_ids)],
                )
            )
        flows += [
            rules_table.flow(PRIORITY_CONJ_ID, {"conj_id": conj}, allow)
            for conj in sorted(conjunctions)
        ]
    return tuple(flows), notes


def remote_references(group: SecurityGroup) -> dict[tuple[str, str], set[int]]:
    """(direction, remote group id) → the IP versions the group's rules use with it."""
    found: dict[tuple[str, str], set[int]] = {}
    for rule in group.rules:
        if rule.remote_group_id is not None:
            version = 6 if rule.is_ipv6 else 4
            found.setdefault((rule.direction, rule.remote_group_id), set()).add(version)
    return found


def member_flow(
    pipeline: Pipeline, direction: str, key: int, address: str, conj_ids: tuple[int, ...]
) -> Flow:
    """Dimension 2 of a group's conjunctions: one member address (or CIDR) of the
    remote groups `conj_ids` stand for."""
    side = DIRECTIONS[direction]
    ipv6 = ":" in address
    match: Match = {
        "reg2": hex(key),
        "dl_type": hex(ETH_IPV6 if ipv6 else ETH_IPV4),
        (side.remote_v6 if ipv6 else side.remote_v4): address,
    }
    return pipeline.table(side.rules_table).flow(
        PRIORITY_CONJUNCTIVE, match, [Conjunction(conj, 2, 2) for conj in conj_ids]
    )


def group_members(intent: Intent) -> dict[str, list[str]]:
    """Group id → its members' addresses (fixed IPs and allowed address pairs of
    every port in the group, wherever the port is), in port order, deduplicated."""
    members: dict[str, dict[str, None]] = {}
    for port in intent.ports.values():
        if not port.security_groups:
            continue
        addresses = port.member_addresses()
        for group_id in port.security_groups:
            found = members.setdefault(group_id, {})
            for address in addresses:
                found[address] = None
    return {group_id: list(found) for group_id, found in members.items()}


def check_unique(kind: str, keys: dict[int, str], key: int, owner: str) -> None:
    """Two groups (or conjunctions) hashing to one 32-bit key would merge their rules."""
    other = keys.setdefault(key, owner)
    if other != owner:
        raise PipelineError(f"{kind} key collision: {other} and {owner} both hash to {key:#x}")
