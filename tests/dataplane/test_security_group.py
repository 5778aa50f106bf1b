"""Security groups compiled into the ACL tables, tested as packets through the
in-memory switch (with its connection table), and as flow diffs."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from kumonet.dataplane.compiler import HostPlan, PlanCompiler, compile_host
from kumonet.dataplane.intent import Intent, SecurityGroupRule, from_neutron
from kumonet.dataplane.oftable import OpenFlowTables, Verdict, ct_states, make_packet
from kumonet.dataplane.pipeline import KUMONET_PIPELINE
from kumonet.dataplane.security_group import (
    group_flows,
    port_range_masks,
    rule_matches,
)
from tests.dataplane.cloud import (
    H1,
    H2,
    H3,
    MAC,
    OPEN_GROUP,
    TUN_H2,
    group,
    h1_facts,
    network,
    open_group,
    port,
    rule,
    subnet,
)

# Local ports on h1 (network net-a, 10.0.0.0/24 + 2001:db8::/64, and net-b,
# which reuses 10.0.0.0/24): web (1), db (2), cli (3), b1 (4, net-b),
# u1 (5, port security off), rtr (6, a router interface).  a3 is on h2.
OFPORT = {"port-a1": 1, "port-a2": 2, "port-v1": 3, "port-b1": 4, "port-u1": 5, "port-f1": 6}
WEB, DB, CLI, B1, U1, RTR = 1, 2, 3, 4, 5, 6
IP = {"web": "10.0.0.11", "db": "10.0.0.12", "cli": "10.0.0.13", "b1": "10.0.0.11",
      "a3": "10.0.0.33", "u1": "10.0.0.21", "rtr": "10.0.0.1"}  # fmt: skip
PORT_MAC = {WEB: MAC["a1"], DB: MAC["a2"], CLI: MAC["v1"], B1: MAC["b1"], U1: MAC["u1"],
            RTR: MAC["f1"]}  # fmt: skip

DEFAULT = "sg-default"
WEBG = "sg-web"
DBG = "sg-db"


def default_group() -> dict[str, Any]:
    """Neutron's default group: all egress, ingress from the group itself."""
    return group(DEFAULT, [
        rule("d-e4", "egress"), rule("d-e6", "egress", "IPv6"),
        rule("d-i4", "ingress", remote_group_id=DEFAULT),
        rule("d-i6", "ingress", "IPv6", remote_group_id=DEFAULT),
    ])  # fmt: skip


def web_group(*extra: dict[str, Any]) -> dict[str, Any]:
    """Seed 002's rules (ICMP and TCP 22 from anywhere) plus a port range and ICMP type."""
    return group(WEBG, [
        rule("w-e4", "egress"), rule("w-e6", "egress", "IPv6"),
        rule("w-icmp", "ingress", protocol="icmp", remote_ip_prefix="0.0.0.0/0"),
        rule("w-ssh", "ingress", protocol="tcp", port_range_min=22, port_range_max=22,
             remote_ip_prefix="0.0.0.0/0"),
        rule("w-range", "ingress", protocol="tcp", port_range_min=1000, port_range_max=1999),
        rule("w-udp6", "ingress", "IPv6", protocol="udp", port_range_min=53, port_range_max=53),
        *extra,
    ])  # fmt: skip


def db_group(*extra: dict[str, Any]) -> dict[str, Any]:
    return group(DBG, [
        rule("b-e4", "egress", protocol="tcp", port_range_min=80, port_range_max=80),
        rule("b-pg", "ingress", protocol="tcp", port_range_min=5432, port_range_max=5432,
             remote_group_id=WEBG),
        rule("b-ping", "ingress", protocol="icmp", port_range_min=8, port_range_max=0),
        rule("b-net", "ingress", protocol="udp", remote_ip_prefix="10.0.0.0/28"),
        *extra,
    ])  # fmt: skip


def ports(**groups: list[str]) -> list[dict[str, Any]]:
    def sg(name: str, default: list[str]) -> list[str]:
        return groups.get(name, default)

    return [
        port("a1", "net-a", "h1", [("sub-a", IP["web"]), ("sub-a6", "2001:db8::11")],
             security_groups=sg("web", [WEBG])),
        port("a2", "net-a", "h1", [("sub-a", IP["db"])], security_groups=sg("db", [DBG])),
        port("v1", "net-a", "h1", [("sub-a", IP["cli"])], security_groups=sg("cli", [DEFAULT])),
        # b1 and b2 reuse net-a's addresses on net-b; group membership is by
        # address (as in Neutron), so they stay out of default and sg-web.
        port("b1", "net-b", "h1", [("sub-b", IP["b1"])], security_groups=sg("b1", [DBG])),
        port("u1", "net-a", "h1", [("sub-a", IP["u1"])], port_security_enabled=False,
             security_groups=[]),
        port("f1", "net-a", "h1", [("sub-a", IP["rtr"])], device_owner="network:router_interface",
             security_groups=[]),
        port("a3", "net-a", "h2", [("sub-a", IP["a3"])], security_groups=sg("a3", [DEFAULT]),
             allowed_address_pairs=[{"ip_address": "10.0.0.64/30"}]),
        port("b2", "net-b", "h2", [("sub-b", "10.0.0.12")], security_groups=[DBG]),
    ]  # fmt: skip


def sg_intent(
    groups: list[dict[str, Any]] | None = None, port_list: list[dict[str, Any]] | None = None
) -> Intent:
    networks = [network("net-a", "vxlan", 100), network("net-b", "vxlan", 200)]
    subnets = [
        subnet("sub-a", "net-a", "10.0.0.0/24", gateway="10.0.0.1"),
        subnet("sub-a6", "net-a", "2001:db8::/64", gateway="2001:db8::1"),
        subnet("sub-b", "net-b", "10.0.0.0/24", gateway="10.0.0.1"),
    ]
    if groups is None:
        groups = [default_group(), web_group(), db_group()]
    return from_neutron(
        networks, subnets, port_list if port_list is not None else ports(),
        {"h1": H1, "h2": H2, "h3": H3}, groups,
    )  # fmt: skip


def facts() -> Any:
    return h1_facts(local_ofports=OFPORT)


def switch_for(intent: Intent) -> OpenFlowTables:
    return OpenFlowTables(compile_host(intent, facts()).bridge_flows("br-int").values())


@pytest.fixture
def switch() -> OpenFlowTables:
    return switch_for(sg_intent())


def ip(src: int, dst: int, src_ip: str | None = None, dst_ip: str | None = None,
       **extra: object) -> dict[str, object]:  # fmt: skip
    """An IPv4 packet between two local ports (by ofport)."""
    name = {v: k for k, v in {"web": WEB, "db": DB, "cli": CLI, "b1": B1, "u1": U1,
                              "rtr": RTR}.items()}  # fmt: skip
    return {
        "in_port": src, "dl_src": PORT_MAC[src], "dl_dst": PORT_MAC[dst], "dl_type": 0x0800,
        "nw_src": src_ip or IP[name[src]], "nw_dst": dst_ip or IP[name[dst]], **extra,
    }  # fmt: skip


def tcp(src: int, dst: int, dport: int, flags: str = "syn", sport: int = 40000,
        **extra: object) -> dict[str, object]:  # fmt: skip
    return ip(src, dst, nw_proto=6, tp_src=sport, tp_dst=dport, tcp_flags=flags, **extra)


def udp(src: int, dst: int, dport: int, sport: int = 40000, **extra: object) -> dict[str, object]:
    return ip(src, dst, nw_proto=17, tp_src=sport, tp_dst=dport, **extra)


def icmp(src: int, dst: int, kind: int = 8, code: int = 0, **extra: object) -> dict[str, object]:
    return ip(src, dst, nw_proto=1, icmp_type=kind, icmp_code=code, **extra)


def reply(packet: dict[str, object]) -> dict[str, object]:
    """The same connection's packet the other way."""
    swapped = dict(packet)
    swapped["in_port"] = OFPORT_OF_MAC[str(packet["dl_dst"])]
    for a, b in (("dl_src", "dl_dst"), ("nw_src", "nw_dst"), ("tp_src", "tp_dst")):
        if a in packet:
            swapped[a], swapped[b] = packet[b], packet[a]
    if packet.get("nw_proto") == 1:
        swapped["icmp_type"] = 0
    if packet.get("nw_proto") == 6:
        swapped["tcp_flags"] = "syn|ack"
    return swapped


OFPORT_OF_MAC = {mac: ofport for ofport, mac in PORT_MAC.items()}


def from_tunnel(dst: int, src_ip: str, vni: int = 100, **extra: object) -> dict[str, object]:
    return {
        "in_port": TUN_H2, "tun_id": vni, "dl_src": MAC["a3"], "dl_dst": PORT_MAC[dst],
        "dl_type": 0x0800, "nw_src": src_ip, "nw_dst": "10.0.0.99", **extra,
    }  # fmt: skip


def delivered(verdict: Verdict, ofport: int) -> bool:
    return verdict.ports() == {ofport}


# ------------------------------------------------------------ port ranges


@pytest.mark.parametrize(
    ("low", "high", "count"),
    [(22, 22, 1), (1000, 1999, 7), (1, 65535, 16), (0, 65535, 1), (8000, 8080, 3),
     (1024, 2047, 1), (1, 1024, 11)],
)  # fmt: skip
def test_port_ranges_become_few_masks_covering_exactly_the_range(
    low: int, high: int, count: int
) -> None:
    blocks = port_range_masks(low, high)
    assert len(blocks) == count
    covered = {port for port in range(65536) if any(port & m == v for v, m in blocks)}
    assert covered == set(range(low, high + 1))


def test_random_ranges_are_covered_exactly_by_disjoint_blocks() -> None:
    rng = random.Random(5)
    for _ in range(50):
        low = rng.randrange(65536)
        high = rng.randrange(low, 65536)
        blocks = port_range_masks(low, high)
        sizes = sum(0x10000 - m for _, m in blocks)  # disjoint blocks: sizes add up
        assert sizes == high - low + 1
        assert all(low <= v and (v | (0xFFFF ^ m)) <= high for v, m in blocks)
        assert len(blocks) <= 30  # at most 2·16 - 2 blocks for any 16-bit range


@pytest.mark.parametrize("dport", [999, 1000, 1999, 2000])
def test_port_range_boundaries(switch: OpenFlowTables, dport: int) -> None:
    # w-range: TCP 1000-1999 from anywhere into web.
    verdict = switch.send(**tcp(CLI, WEB, dport))
    assert delivered(verdict, WEB) == (1000 <= dport <= 1999)


@pytest.mark.parametrize("dport", [21, 22, 23])
def test_seed_002_ssh_only(switch: OpenFlowTables, dport: int) -> None:
    assert delivered(switch.send(**tcp(CLI, WEB, dport)), WEB) == (dport == 22)


def test_ipv6_rule_with_a_single_port(switch: OpenFlowTables) -> None:
    def udp6(dport: int) -> Verdict:
        return switch.send(
            in_port=CLI, dl_src=PORT_MAC[CLI], dl_dst=PORT_MAC[WEB], dl_type=0x86DD,
            ipv6_src="fe80::f816:3eff:fe00:7", ipv6_dst="2001:db8::11", nw_proto=17,
            tp_src=5000, tp_dst=dport,
        )  # fmt: skip

    assert delivered(udp6(53), WEB)
    assert udp6(52).dropped and udp6(54).dropped
    # The IPv4 twin of that rule does not exist.
    assert switch.send(**udp(CLI, WEB, 53)).dropped


# ---------------------------------------------------------------- ICMP


def test_icmp_type_and_code(switch: OpenFlowTables) -> None:
    # db: ICMP type 8 code 0 only, from anywhere.
    assert delivered(switch.send(**icmp(CLI, DB, 8, 0)), DB)
    assert switch.send(**icmp(CLI, DB, 8, 1)).dropped
    assert switch.send(**icmp(CLI, DB, 13, 0)).dropped
    # web: any ICMP.
    for kind, code in ((8, 0), (13, 0), (3, 3)):
        assert delivered(switch.send(**icmp(CLI, WEB, kind, code)), WEB)


def test_icmp_type_without_code_matches_every_code() -> None:
    [match] = rule_matches(SecurityGroupRule("r", "ingress", protocol=1, port_range_min=3))
    assert match["icmp_type"] == 3 and "icmp_code" not in match
    [match6] = rule_matches(
        SecurityGroupRule("r", "ingress", "IPv6", protocol=58, port_range_min=128,
                          port_range_max=0)
    )  # fmt: skip
    assert (match6["icmpv6_type"], match6["icmpv6_code"]) == (128, 0)


def test_protocol_by_number_and_any() -> None:
    vrrp = rule_matches(SecurityGroupRule("r", "ingress", protocol=112))
    assert vrrp == [{"dl_type": "0x800", "nw_proto": 112}]
    assert rule_matches(SecurityGroupRule("r", "egress", "IPv6")) == [{"dl_type": "0x86dd"}]
    # DCCP ports cannot be matched by OpenFlow: the rule is not applied (fail closed).
    assert rule_matches(SecurityGroupRule("r", "ingress", protocol=33, port_range_min=5,
                                          port_range_max=6)) is None  # fmt: skip
    flows, notes = group_flows(
        KUMONET_PIPELINE,
        dataclasses.replace(
            from_neutron([], [], [], {}, [db_group()]).security_groups[DBG],
            rules=(SecurityGroupRule("dccp", "ingress", protocol=33, port_range_min=5,
                                     port_range_max=6),),
        ),
    )  # fmt: skip
    assert not flows and notes and "dccp" in notes[0]


# ------------------------------------------------------- remote prefix / groups


def test_remote_ip_prefix(switch: OpenFlowTables) -> None:
    # db: UDP from 10.0.0.0/28 (cli is 10.0.0.13; web at .11 has no UDP rule issue).
    assert delivered(switch.send(**udp(CLI, DB, 7000)), DB)
    verdict = switch.send(**from_tunnel(DB, "10.0.0.33", nw_proto=17, tp_src=1, tp_dst=7000))
    assert verdict.dropped  # 10.0.0.33 is outside the /28


def test_remote_group_allows_members_only(switch: OpenFlowTables) -> None:
    # db: TCP 5432 from members of sg-web (web), not from cli.
    assert delivered(switch.send(**tcp(WEB, DB, 5432)), DB)
    assert switch.send(**tcp(CLI, DB, 5432)).dropped
    assert switch.send(**tcp(WEB, DB, 5433)).dropped


def test_default_group_lets_members_talk_and_blocks_others(switch: OpenFlowTables) -> None:
    # cli (default) ← a3 (default, on h2) allowed; ← web (not in default) blocked.
    assert delivered(switch.send(**from_tunnel(CLI, "10.0.0.33", nw_proto=6, tp_src=9,
                                               tp_dst=80, tcp_flags="syn")), CLI)  # fmt: skip
    assert switch.send(**tcp(WEB, CLI, 80)).dropped
    # a3's allowed address pair (a /30) is a member too: .64-.67, not .68.
    for last, ok in ((64, True), (67, True), (68, False)):
        verdict = switch.send(**from_tunnel(CLI, f"10.0.0.{last}", nw_proto=1, icmp_type=8))
        assert delivered(verdict, CLI) == ok
    # Egress from cli is open (default group): it reaches web's port 22.
    assert delivered(switch.send(**tcp(CLI, WEB, 22)), WEB)


def test_membership_change_opens_and_closes_access() -> None:
    closed = switch_for(sg_intent())
    assert closed.send(**tcp(CLI, DB, 5432)).dropped
    opened = switch_for(sg_intent(port_list=ports(cli=[DEFAULT, WEBG])))
    assert delivered(opened.send(**tcp(CLI, DB, 5432)), DB)
    # Several groups per port: cli still gets what the default group gives it.
    assert delivered(opened.send(**from_tunnel(CLI, "10.0.0.33", nw_proto=1, icmp_type=8)), CLI)


# ---------------------------------------------------------------- state


def test_replies_return_and_unsolicited_traffic_does_not(switch: OpenFlowTables) -> None:
    # cli (default group: all egress) opens web's port 22 (seed 002's rule).
    syn = tcp(CLI, WEB, 22)
    assert delivered(switch.send(**syn), WEB)
    assert delivered(switch.send(**reply(syn)), CLI)  # SYN+ACK back, established
    ack = {**syn, "tcp_flags": "ack"}
    assert delivered(switch.send(**ack), WEB)
    # web opening a connection towards cli's port 40000 is new: cli's default group
    # accepts new connections from members only (web is not one).
    assert switch.send(**tcp(WEB, CLI, 40000, sport=2222, flags="syn")).dropped
    # ... while the same ports as the connection cli opened are its replies.
    assert delivered(switch.send(**tcp(WEB, CLI, 40000, sport=22, flags="ack")), CLI)
    # UDP and ICMP: db accepts UDP from 10.0.0.0/28 (web is 10.0.0.11) and pings;
    # the replies come back although db's egress allows TCP 80 only.
    request = udp(WEB, DB, 53)
    assert delivered(switch.send(**request), DB)
    assert delivered(switch.send(**reply(request)), WEB)
    ping = icmp(CLI, DB, 8, 0)
    assert delivered(switch.send(**ping), DB)
    assert delivered(switch.send(**reply(ping)), CLI)
    # Unsolicited: db sending UDP to web's port 53 (db's egress allows TCP 80 only).
    assert switch.send(**udp(DB, WEB, 53)).dropped
    # An echo reply nobody asked for is new, and db's egress allows TCP 80 only.
    assert switch_for(sg_intent()).send(**icmp(DB, CLI, 0, 0)).dropped


def test_invalid_and_tcp_pickups_are_dropped(switch: OpenFlowTables) -> None:
    # A SYN+ACK no connection asked for is invalid; a bare ACK would be picked up
    # as new by the userspace conntrack: both dropped although port 22 is open.
    assert switch.send(**tcp(CLI, WEB, 22, flags="syn|ack")).dropped
    assert switch.send(**tcp(CLI, WEB, 22, flags="ack")).dropped
    assert switch.send(**tcp(CLI, WEB, 22, flags="rst")).dropped
    # Dictated states, as ofproto/trace --ct-next: invalid drops, related passes.
    assert switch.send(ct_states("trk,inv"), **tcp(CLI, WEB, 22)).dropped
    related = icmp(DB, CLI, 3, 3)  # port unreachable for something cli sent
    assert switch.send(**related).dropped
    assert delivered(switch.send(ct_states("trk,rel", "trk,rel"), **related), CLI)


# ---------------------------------------- cutting connections no longer allowed


def recompiled(before: OpenFlowTables, intent: Intent) -> OpenFlowTables:
    """The switch after a change: new flows, the same conntrack entries."""
    flows = compile_host(intent, facts()).bridge_flows("br-int").values()
    return OpenFlowTables(flows, before.conntrack)


def open_tcp(
    switch: OpenFlowTables, src: int, dst: int, dport: int, sport: int
) -> dict[str, object]:
    """A TCP connection through the handshake; its data packet (original direction)."""
    syn = tcp(src, dst, dport, sport=sport)
    assert delivered(switch.send(**syn), dst)
    assert delivered(switch.send(**reply(syn)), src)
    data = {**syn, "tcp_flags": "ack"}
    assert delivered(switch.send(**data), dst)
    return data


def without(group: dict[str, Any], *rule_ids: str) -> dict[str, Any]:
    rules = [r for r in group["security_group_rules"] if r["id"] not in rule_ids]
    return {**group, "security_group_rules": rules}


def back(packet: dict[str, object]) -> dict[str, object]:
    return {**reply(packet), "tcp_flags": packet.get("tcp_flags", "ack")}


NO_SSH = sg_intent([default_group(), without(web_group(), "w-ssh"), db_group()])


def test_removing_a_rule_cuts_its_established_connections_both_ways() -> None:
    switch = switch_for(sg_intent())
    ssh = open_tcp(switch, CLI, WEB, 22, sport=40001)  # web's rule w-ssh
    ranged = open_tcp(switch, CLI, WEB, 1500, sport=40002)  # web's rule w-range
    cut = recompiled(switch, NO_SSH)
    # The next packet the client sends matches no rule of web's: dropped, and its
    # connection is marked in web's zone ...
    assert cut.send(**ssh).dropped
    assert cut.conntrack.mark_of(WEB, make_packet(**ssh)) == 1
    # ... so the server's packets are dropped too (web's egress allows everything).
    assert cut.send(**back(ssh)).dropped
    assert cut.send(**ssh).dropped
    # The connection another rule allows keeps flowing both ways, unmarked.
    assert delivered(cut.send(**ranged), WEB)
    assert delivered(cut.send(**back(ranged)), CLI)
    assert cut.conntrack.mark_of(WEB, make_packet(**ranged)) == 0
    # cli's own zone never marked anything: its egress still allows the connection.
    assert cut.conntrack.mark_of(CLI, make_packet(**ssh)) == 0
    # New connections are refused, and no packet of the cut one gets through.
    assert cut.send(**tcp(CLI, WEB, 22, sport=40003)).dropped
    assert cut.send(**{**ssh, "tcp_flags": "fin|ack"}).dropped


def test_a_cut_connection_flows_again_once_a_rule_allows_it() -> None:
    switch = switch_for(sg_intent())
    ssh = open_tcp(switch, CLI, WEB, 22, sport=40001)
    cut = recompiled(switch, NO_SSH)
    assert cut.send(**ssh).dropped
    assert cut.send(**back(ssh)).dropped
    # The rule comes back: the client's next packet (a retransmission) is allowed
    # and lifts the mark, so the server's answers pass again.
    again = recompiled(cut, sg_intent())
    assert cut.conntrack.mark_of(WEB, make_packet(**ssh)) == 1
    assert again.send(**back(ssh)).dropped  # still cut until then
    assert delivered(again.send(**ssh), WEB)
    assert again.conntrack.mark_of(WEB, make_packet(**ssh)) == 0
    assert delivered(again.send(**back(ssh)), CLI)
    # The 5-tuple reused by a new SYN is judged by the rules like any packet.
    assert delivered(again.send(**tcp(CLI, WEB, 22, sport=40001)), WEB)


def test_a_reused_five_tuple_is_not_blocked_by_a_cut_entry_once_allowed() -> None:
    switch = switch_for(sg_intent())
    ssh = open_tcp(switch, CLI, WEB, 22, sport=40009)
    cut = recompiled(switch, NO_SSH)
    assert cut.send(**ssh).dropped
    # The client gives up and reconnects from the same port after the rule is back:
    # its SYN finds the cut entry, is allowed, and the entry is uncut.
    again = recompiled(cut, sg_intent())
    syn = tcp(CLI, WEB, 22, sport=40009)
    assert delivered(again.send(**syn), WEB)
    assert delivered(again.send(**reply(syn)), CLI)


def test_leaving_a_remote_group_cuts_the_members_established_connections() -> None:
    # db takes TCP 5432 from members of sg-web (web) and UDP from 10.0.0.0/28.
    switch = switch_for(sg_intent())
    pg = open_tcp(switch, WEB, DB, 5432, sport=40004)
    query = udp(WEB, DB, 53, sport=40005)
    assert delivered(switch.send(**query), DB)
    assert delivered(switch.send(**reply(query)), WEB)
    left = recompiled(switch, sg_intent(port_list=ports(web=[DEFAULT])))
    assert left.send(**pg).dropped
    assert left.send(**back(pg)).dropped
    # UDP allowed by the prefix rule is untouched, both ways.
    assert delivered(left.send(**query), DB)
    assert delivered(left.send(**reply(query)), WEB)
    # Rejoining lifts the cut at the next packet web sends.
    rejoined = recompiled(left, sg_intent())
    assert delivered(rejoined.send(**pg), DB)
    assert delivered(rejoined.send(**back(pg)), WEB)


def test_removing_an_egress_rule_cuts_outbound_connections_at_the_sender() -> None:
    # cli's default group allows all egress; db allows ICMP echo in.
    switch = switch_for(sg_intent())
    ping = icmp(CLI, DB, 8, 0)
    assert delivered(switch.send(**ping), DB)
    assert delivered(switch.send(**reply(ping)), CLI)
    default_ingress_only = without(default_group(), "d-e4", "d-e6")
    cut = recompiled(switch, sg_intent([default_ingress_only, web_group(), db_group()]))
    assert cut.send(**ping).dropped
    assert cut.conntrack.mark_of(CLI, make_packet(**ping)) == 1
    # db's answer leaves db (its zone is not cut) but not into cli.
    assert cut.send(**reply(ping)).dropped


def test_cut_replies_and_related_drop_others_pass_without_rule_lookup() -> None:
    # Dictated states and marks, as ofproto/trace --ct-next with ct_mark does.
    switch = switch_for(sg_intent())
    answer = tcp(WEB, CLI, 40000, sport=7777, flags="ack")  # no rule would allow it
    assert delivered(switch.send(ct_states("trk,est,rpl", "trk,est,rpl"), **answer), CLI)
    assert switch.send(ct_states("trk,est,rpl", "trk,est,rpl"), ct_mark=1, **answer).dropped
    related = icmp(DB, CLI, 3, 3)
    assert delivered(switch.send(ct_states("trk,rel", "trk,rel"), **related), CLI)
    assert switch.send(ct_states("trk,rel", "trk,rel"), ct_mark=1, **related).dropped
    # Original direction, established: judged by the rules, whatever the mark.
    ssh = tcp(CLI, WEB, 22, flags="ack")
    assert delivered(switch.send(ct_states("trk,est", "trk,est"), **ssh), WEB)
    assert delivered(switch.send(ct_states("trk,est", "trk,est"), ct_mark=1, **ssh), WEB)
    telnet = tcp(CLI, WEB, 23, flags="ack")
    assert switch.send(ct_states("trk,est", "trk,est"), **telnet).dropped


def test_conntrack_zones_are_per_port_so_overlapping_networks_never_share_state() -> None:
    switch = switch_for(sg_intent())
    # web (net-a, 10.0.0.11) opens TCP to 10.0.0.33:80 behind the tunnel: zone 1 only.
    syn = tcp(WEB, WEB, 80, dl_dst=MAC["a3"], nw_dst="10.0.0.33")
    assert switch.send(**syn).ports() == {TUN_H2}
    assert switch.conntrack.zones() == {WEB}
    answer = {"nw_proto": 6, "tp_src": 80, "tp_dst": 40000, "tcp_flags": "syn|ack"}
    # b1 has the same address on net-b: the lookalike answer there finds no
    # connection in b1's zone (a SYN+ACK out of nowhere: invalid) ...
    lookalike = from_tunnel(B1, "10.0.0.33", vni=200, nw_dst=IP["b1"], **answer)
    assert switch.send(**lookalike).dropped
    # ... while the real answer on net-a is established in web's zone.
    assert delivered(switch.send(**from_tunnel(WEB, "10.0.0.33", nw_dst=IP["web"], **answer)), WEB)
    assert switch.conntrack.zones() == {WEB}


def test_conntrack_zone_of_a_port_is_its_ofport() -> None:
    plan = compile_host(sg_intent(), facts())
    bodies = [flow.body for flow in plan.bridge_flows("br-int").values()]
    assert any("ct(table=50,zone=NXM_NX_REG5[0..15])" in b for b in bodies)
    assert any("ct(table=100,zone=NXM_NX_REG7[0..15])" in b for b in bodies)
    assert any("ct(commit,zone=NXM_NX_REG7[0..15],exec(" in b for b in bodies)


# ------------------------------------------------ traffic every VM needs


def test_dhcp_and_ndp_pass_whatever_the_groups_say() -> None:
    closed = group("sg-closed", [])  # no rules at all: nothing in, nothing out
    switch = switch_for(sg_intent([closed], ports(web=["sg-closed"], cli=["sg-closed"])))
    assert switch.send(**tcp(CLI, WEB, 22)).dropped
    assert switch.send(**icmp(CLI, WEB)).dropped

    def nd(src: int, dst_mac: str, kind: int, **extra: object) -> Verdict:
        fields: dict[str, object] = {
            "in_port": src, "dl_src": PORT_MAC[src], "dl_dst": dst_mac, "dl_type": 0x86DD,
            "nw_proto": 58, "ipv6_src": "fe80::f816:3eff:fe00:7", "icmpv6_type": kind,
            "icmpv6_code": 0,
        }  # fmt: skip
        return switch.send(**(fields | extra))

    # Neighbour solicitation (multicast) and advertisement (unicast) both ways.
    assert WEB in nd(CLI, "33:33:ff:00:00:11", 135, nd_target="2001:db8::11").ports()
    ll_web = "fe80::f816:3eff:fe00:1"
    assert delivered(nd(WEB, PORT_MAC[CLI], 136, ipv6_src=ll_web, nd_target=ll_web), CLI)
    # Router advertisement from the router port into a closed port; router solicitation out.
    ra = switch.send(in_port=RTR, dl_src=PORT_MAC[RTR], dl_dst="33:33:00:00:00:01",
                     dl_type=0x86DD, nw_proto=58, ipv6_src="fe80::1", icmpv6_type=134)  # fmt: skip
    assert {WEB, CLI} <= ra.ports()
    assert TUN_H2 in nd(WEB, "33:33:00:00:00:02", 133, ipv6_src=ll_web).ports()
    # DHCP replies into a closed port (from the router-ish port standing in for a
    # DHCP server); a DHCPv6 request out of it.
    offer = udp(RTR, WEB, 68, sport=67)
    assert delivered(switch.send(**offer), WEB)
    solicit = switch.send(in_port=WEB, dl_src=PORT_MAC[WEB], dl_dst="33:33:00:01:00:02",
                          dl_type=0x86DD, ipv6_src=ll_web, nw_proto=17, tp_src=546,
                          tp_dst=547)  # fmt: skip
    assert TUN_H2 in solicit.ports()


def test_ports_without_port_security_and_router_ports_are_not_filtered() -> None:
    switch = switch_for(sg_intent())
    # u1 (port security off) and the router port take and send anything.
    for target in (U1, RTR):
        assert delivered(switch.send(**tcp(CLI, target, 4242)), target)
        assert delivered(switch.send(**tcp(target, WEB, 22, flags="ack")), WEB) is False
    assert delivered(switch.send(**udp(U1, RTR, 9)), RTR)
    # ... but a filtered receiver still filters what they send.
    assert switch.send(**tcp(U1, WEB, 23)).dropped
    assert delivered(switch.send(**tcp(U1, WEB, 22)), WEB)


def test_a_port_with_no_groups_drops_everything_but_the_basics() -> None:
    switch = switch_for(sg_intent(port_list=ports(web=[])))
    assert switch.send(**tcp(CLI, WEB, 22)).dropped
    assert switch.send(**tcp(WEB, CLI, 22)).dropped
    assert delivered(switch.send(**udp(RTR, WEB, 68, sport=67)), WEB)


def test_stateless_group_needs_rules_both_ways() -> None:
    stateless = group("sg-sl", [
        rule("s-in", "ingress", protocol="tcp", port_range_min=80, port_range_max=80),
        rule("s-out", "egress", protocol="tcp", port_range_min=80, port_range_max=80),
    ], stateful=False)  # fmt: skip
    switch = switch_for(sg_intent([default_group(), stateless], ports(web=["sg-sl"])))
    assert delivered(switch.send(**tcp(CLI, WEB, 80)), WEB)
    # The reply from port 80 is not allowed out: no conntrack, no rule for it.
    assert switch.send(**tcp(WEB, CLI, 40000, sport=80, flags="syn|ack")).dropped
    assert not any(zone == WEB for zone in switch.conntrack.zones())


# ------------------------------------------------------------ incremental


def change(before: HostPlan, after: HostPlan) -> tuple[set[int], set[int]]:
    old, new = before.cookies("br-int"), after.cookies("br-int")
    return set(old - new), set(new - old)


def test_adding_and_removing_a_rule_touches_only_its_flows() -> None:
    compiler = PlanCompiler()
    base = compiler.compile(sg_intent(), facts())
    extra = rule("w-new", "ingress", protocol="tcp", port_range_min=8000, port_range_max=8080)
    added = compiler.compile(sg_intent([default_group(), web_group(extra), db_group()]), facts())
    removed, new = change(base, added)
    assert not removed and len(new) == 3  # 8000-8080 is three masks
    back = compiler.compile(sg_intent(), facts())
    assert back.cookies("br-int") == base.cookies("br-int")
    # A rule naming a remote group already named: one dimension flow.
    extra2 = rule("b-new", "ingress", protocol="udp", port_range_min=9, port_range_max=9,
                  remote_group_id=WEBG)  # fmt: skip
    added2 = compiler.compile(sg_intent([default_group(), web_group(), db_group(extra2)]),
                              facts())  # fmt: skip
    removed2, new2 = change(base, added2)
    assert not removed2 and len(new2) == 1
    # A rule naming a new remote group: its dimension flow, the conj_id flow, and one
    # flow per member address of that group (web: 10.0.0.11 and 2001:db8::11 → IPv4 only).
    extra3 = rule("b-new3", "ingress", protocol="udp", port_range_min=9, port_range_max=9,
                  remote_group_id=DEFAULT)  # fmt: skip
    added3 = compiler.compile(sg_intent([default_group(), web_group(), db_group(extra3)]),
                              facts())  # fmt: skip
    removed3, new3 = change(base, added3)
    members = {"10.0.0.13", "10.0.0.33", "10.0.0.64/30"}
    assert not removed3 and len(new3) == 2 + len(members)


def test_adding_a_member_touches_one_flow_per_referencing_group() -> None:
    compiler = PlanCompiler()
    base = compiler.compile(sg_intent(), facts())
    newcomer = port("a4", "net-a", "h3", [("sub-a", "10.0.0.44")], security_groups=[DEFAULT])
    joined = compiler.compile(sg_intent(port_list=[*ports(), newcomer]), facts())
    removed, added = change(base, joined)
    # The L2 tables learn the new remote port; the ACL tables gain exactly one flow:
    # its address in the default group's conjunction (default names itself, on ingress).
    assert not removed & acl_cookies(base)
    [member] = [joined.bridge_flows("br-int")[c] for c in added & acl_cookies(joined)]
    assert member.table.name == "ingress_rules" and "nw_src=10.0.0.44" in member.body
    switch = OpenFlowTables(joined.bridge_flows("br-int").values())
    assert delivered(switch.send(**from_tunnel(CLI, "10.0.0.44", nw_proto=1, icmp_type=8)), CLI)
    # Leaving takes exactly that flow away again.
    left = compiler.compile(sg_intent(), facts())
    assert left.cookies("br-int") == base.cookies("br-int")


def acl_cookies(plan: HostPlan) -> set[int]:
    return {f.cookie for f in plan.bridge_flows("br-int").values()
            if f.table.name.endswith(("_rules", "_acl", "_ct", "_verdict"))}  # fmt: skip


def test_a_rule_change_never_touches_the_ports_flows() -> None:
    many = [port("a1", "net-a", "h1", [("sub-a", IP["web"])], security_groups=[WEBG])]
    intent = sg_intent(port_list=many)
    base = compile_host(intent, facts())
    extra = rule("w-new", "ingress", protocol="udp", port_range_min=500, port_range_max=500)
    changed = compile_host(
        sg_intent([default_group(), web_group(extra), db_group()], many), facts()
    )
    removed, added = change(base, changed)
    assert not removed and {
        f.table.name for c in added for f in [changed.bridge_flows("br-int")[c]]
    } == {"ingress_rules"}


def test_apply_twice_and_revert_are_identities() -> None:
    compiler = PlanCompiler()
    one = compiler.compile(sg_intent(), facts())
    two = compiler.compile(sg_intent(), facts())
    assert one.cookies("br-int") == two.cookies("br-int")
    other = compiler.compile(sg_intent(port_list=ports(cli=[DEFAULT, WEBG, DBG])), facts())
    assert other.cookies("br-int") != one.cookies("br-int")
    assert compiler.compile(sg_intent(), facts()).cookies("br-int") == one.cookies("br-int")


def test_rules_openflow_cannot_express_are_noted_on_every_compile() -> None:
    dccp = rule("w-dccp", "ingress", protocol="dccp", port_range_min=5, port_range_max=6)
    intent = sg_intent([default_group(), web_group(dccp), db_group()])
    compiler = PlanCompiler()
    for _ in range(2):  # the second compile reuses the group's unit
        notes = compiler.compile(intent, facts()).notes
        assert any("w-dccp" in note for note in notes)


def random_intent(rng: random.Random) -> Intent:
    """Random rules, memberships and group assignments over the test cloud."""
    extra = [
        rule(f"x{n}", rng.choice(["ingress", "egress"]), protocol=rng.choice(["tcp", "udp"]),
             port_range_min=lo, port_range_max=lo + rng.randrange(0, 300),
             remote_group_id=rng.choice([None, DEFAULT, WEBG, DBG]))
        for n, lo in enumerate(rng.sample(range(1, 60000), rng.randrange(0, 4)))
    ]  # fmt: skip
    groups = [default_group(), web_group(*extra[:2]), db_group(*extra[2:])]
    choice = [[DEFAULT], [WEBG], [DBG], [DEFAULT, WEBG], [WEBG, DBG], []]
    port_list = ports(**{name: rng.choice(choice) for name in ("web", "db", "cli", "a3")})
    if rng.random() < 0.5:
        port_list.append(port("a4", "net-a", "h3", [("sub-a", f"10.0.0.{rng.randrange(40, 60)}")],
                              security_groups=rng.choice(choice)))  # fmt: skip
    return sg_intent(groups, port_list)


def test_reusing_units_gives_exactly_what_a_fresh_compile_gives() -> None:
    rng = random.Random(11)
    compiler = PlanCompiler()
    for _ in range(40):
        intent = random_intent(rng)
        warm = compiler.compile(intent, facts())
        cold = compile_host(intent, facts())
        assert warm.cookies("br-int") == cold.cookies("br-int")
        assert warm.notes == cold.notes


def test_egress_rules_match_the_destination_prefix_and_remote_group() -> None:
    out = group("sg-out", [
        rule("o-https", "egress", protocol="tcp", port_range_min=443, port_range_max=443,
             remote_ip_prefix="10.0.0.32/27"),
        rule("o-dns", "egress", protocol="udp", port_range_min=53, port_range_max=53,
             remote_group_id=DBG),
    ])  # fmt: skip
    # cli lets anything in: what stops web's packets is web's egress.
    switch = switch_for(sg_intent([default_group(), web_group(), db_group(), out, open_group()],
                                  ports(web=["sg-out"], cli=[OPEN_GROUP])))  # fmt: skip
    to_a3 = tcp(WEB, WEB, 443, dl_dst=MAC["a3"], nw_dst="10.0.0.33")
    assert switch.send(**to_a3).ports() == {TUN_H2}
    assert switch.send(**tcp(WEB, CLI, 443)).dropped  # 10.0.0.13 is outside the /27
    assert delivered(switch.send(**udp(WEB, DB, 53)), DB)  # db is in sg-db
    assert switch.send(**udp(WEB, CLI, 53)).dropped  # cli is not
