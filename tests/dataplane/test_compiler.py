"""The compiler, tested with packets through the in-memory switch model."""

from __future__ import annotations

import dataclasses

import pytest

from kumonet.dataplane.compiler import (
    HostPlan,
    PlanCompiler,
    TunnelPort,
    compile_host,
    diff_flows,
)
from kumonet.dataplane.flow import is_kumonet_cookie
from kumonet.dataplane.intent import Intent, network_from_neutron, network_key, port_from_neutron
from kumonet.dataplane.oftable import OpenFlowTables, Verdict
from tests.dataplane.cloud import (
    H1,
    H2,
    H3,
    MAC,
    OFPORT,
    PAIR_MAC,
    PATCH,
    TUN_H2,
    TUN_H3,
    cloud_intent,
    h1_facts,
    network,
    port,
)

BROADCAST = "ff:ff:ff:ff:ff:ff"
IP4 = {"dl_type": 0x0800}
ARP = {"dl_type": 0x0806}
IP6 = {"dl_type": 0x86DD}


@pytest.fixture
def plan() -> HostPlan:
    return compile_host(cloud_intent(), h1_facts())


@pytest.fixture
def switch(plan: HostPlan) -> OpenFlowTables:
    return OpenFlowTables(plan.bridge_flows("br-int").values())


def ip_from(name: str, ip: str, dst_mac: str, dst_ip: str, **extra: object) -> dict[str, object]:
    return {
        "in_port": OFPORT[f"port-{name}"],
        "dl_src": MAC[name],
        "dl_dst": dst_mac,
        **IP4,
        "nw_src": ip,
        "nw_dst": dst_ip,
        "nw_proto": 1,
        **extra,
    }


def arp_from(name: str, sha: str, spa: str, tpa: str, **extra: object) -> dict[str, object]:
    return {
        "in_port": OFPORT[f"port-{name}"],
        "dl_src": MAC[name],
        "dl_dst": BROADCAST,
        **ARP,
        "arp_op": 1,
        "arp_sha": sha,
        "arp_spa": spa,
        "arp_tpa": tpa,
        **extra,
    }


def from_tunnel(ofport: int, vni: int, dst_mac: str, src_mac: str = MAC["a3"]) -> dict[str, object]:
    return {
        "in_port": ofport,
        "tun_id": vni,
        "dl_src": src_mac,
        "dl_dst": dst_mac,
        **IP4,
        "nw_src": "10.0.0.13",
        "nw_dst": "10.0.0.11",
    }


# ------------------------------------------------------------------ unicast


def test_vm_to_vm_on_the_same_host(switch: OpenFlowTables) -> None:
    verdict = switch.send(**ip_from("a1", "10.0.0.11", MAC["a2"], "10.0.0.12"))
    assert verdict.ports() == {OFPORT["port-a2"]}
    assert verdict.is_output(OFPORT["port-a2"], dl_dst=MAC["a2"], nw_src="10.0.0.11")


def test_vm_to_vm_across_hosts_goes_into_the_right_tunnel_with_the_vni(
    switch: OpenFlowTables,
) -> None:
    to_h2 = switch.send(**ip_from("a1", "10.0.0.11", MAC["a3"], "10.0.0.13"))
    assert to_h2.ports() == {TUN_H2}
    assert to_h2.is_output(TUN_H2, tun_id=100)
    to_h3 = switch.send(**ip_from("a2", "10.0.0.12", MAC["a4"], "10.0.0.14"))
    assert to_h3.ports() == {TUN_H3}
    assert to_h3.is_output(TUN_H3, tun_id=100)
    net_b = switch.send(**ip_from("b1", "10.0.0.11", MAC["b2"], "10.0.0.12"))
    assert net_b.is_output(TUN_H2, tun_id=200)


def test_packet_from_a_tunnel_reaches_the_local_port(switch: OpenFlowTables) -> None:
    verdict = switch.send(**from_tunnel(TUN_H2, 100, MAC["a1"]))
    assert verdict.ports() == {OFPORT["port-a1"]}


def test_tunnel_traffic_is_never_sent_back_into_a_tunnel(switch: OpenFlowTables) -> None:
    # A packet from h2 for a port on h3 must not be relayed by h1; like any
    # unicast not for a local port, only the port without port security sees it.
    verdict = switch.send(**from_tunnel(TUN_H2, 100, MAC["a4"]))
    assert verdict.ports() == {OFPORT["port-u1"]}


# ---------------------------------------------------------------- flooding


def test_broadcast_from_a_local_port_reaches_local_ports_and_remote_hosts(
    switch: OpenFlowTables,
) -> None:
    verdict = switch.send(**arp_from("a1", MAC["a1"], "10.0.0.11", "10.0.0.13"))
    assert verdict.ports() == {OFPORT["port-a2"], OFPORT["port-u1"], TUN_H2, TUN_H3}
    assert verdict.is_output(TUN_H2, tun_id=100)
    assert verdict.is_output(TUN_H3, tun_id=100)
    # Never back out of the in_port, never to another network's port.
    assert OFPORT["port-a1"] not in verdict.ports()
    assert OFPORT["port-b1"] not in verdict.ports()


def test_broadcast_from_a_tunnel_reaches_local_ports_only(switch: OpenFlowTables) -> None:
    verdict = switch.send(**from_tunnel(TUN_H2, 100, BROADCAST))
    assert verdict.ports() == {OFPORT["port-a1"], OFPORT["port-a2"], OFPORT["port-u1"]}


def test_multicast_floods_like_broadcast(switch: OpenFlowTables) -> None:
    packet = ip_from("a2", "10.0.0.12", "01:00:5e:00:00:fb", "224.0.0.251", nw_proto=17)
    verdict = switch.send(**packet)
    assert verdict.ports() == {OFPORT["port-a1"], OFPORT["port-u1"], TUN_H2, TUN_H3}


def test_unknown_unicast_reaches_only_ports_without_port_security(
    switch: OpenFlowTables,
) -> None:
    verdict = switch.send(**ip_from("a1", "10.0.0.11", "fa:16:3e:99:99:99", "10.0.0.99"))
    assert verdict.ports() == {OFPORT["port-u1"]}


# --------------------------------------------------------------- isolation


def test_networks_are_isolated_even_with_the_same_addresses(switch: OpenFlowTables) -> None:
    # b1 has a1's IP on another network; it addresses a1's and a2's MACs by hand.
    for mac in (MAC["a1"], MAC["a2"], MAC["a3"]):
        assert switch.send(**ip_from("b1", "10.0.0.11", mac, "10.0.0.12")).dropped
    broadcast = switch.send(**arp_from("b1", MAC["b1"], "10.0.0.11", "10.0.0.12"))
    assert broadcast.ports() == {TUN_H2}
    assert broadcast.is_output(TUN_H2, tun_id=200)


def test_tunnel_key_selects_the_network(switch: OpenFlowTables) -> None:
    assert switch.send(**from_tunnel(TUN_H2, 200, MAC["a1"])).dropped
    assert switch.send(**from_tunnel(TUN_H2, 999, BROADCAST)).dropped
    assert switch.send(**from_tunnel(TUN_H2, 200, BROADCAST)).ports() == {OFPORT["port-b1"]}


# ----------------------------------------------------------- port security


def test_mac_spoofing_is_dropped(switch: OpenFlowTables) -> None:
    packet = ip_from("a1", "10.0.0.11", MAC["a2"], "10.0.0.12", dl_src=MAC["a2"])
    assert switch.send(**packet).dropped
    packet = ip_from("a1", "10.0.0.11", BROADCAST, "10.0.0.255", dl_src="fa:16:3e:de:ad:00")
    assert switch.send(**packet).dropped


def test_ip_spoofing_is_dropped(switch: OpenFlowTables) -> None:
    assert switch.send(**ip_from("a1", "10.0.0.12", MAC["a2"], "10.0.0.12")).dropped
    assert switch.send(**ip_from("a1", "10.0.0.0", MAC["a2"], "10.0.0.12")).dropped


def test_arp_spoofing_is_dropped(switch: OpenFlowTables) -> None:
    assert not switch.send(**arp_from("a1", MAC["a1"], "10.0.0.11", "10.0.0.12")).dropped
    assert switch.send(**arp_from("a1", MAC["a1"], "10.0.0.12", "10.0.0.12")).dropped
    assert switch.send(**arp_from("a1", MAC["a2"], "10.0.0.11", "10.0.0.12")).dropped
    # An ARP probe (no sender address yet) is allowed.
    probe = switch.send(**arp_from("a1", MAC["a1"], "0.0.0.0", "10.0.0.11"))
    assert OFPORT["port-a2"] in probe.ports()


def test_allowed_address_pairs_exactly(switch: OpenFlowTables) -> None:
    a2 = OFPORT["port-a2"]
    assert switch.send(**ip_from("a1", "10.0.0.100", MAC["a2"], "10.0.0.12")).ports() == {a2}
    pair = ip_from("a1", "10.0.0.200", MAC["a2"], "10.0.0.12", dl_src=PAIR_MAC)
    assert switch.send(**pair).ports() == {a2}
    # Addresses go with their pair's MAC only.
    assert switch.send(**ip_from("a1", "10.0.0.200", MAC["a2"], "10.0.0.12")).dropped
    crossed = ip_from("a1", "10.0.0.100", MAC["a2"], "10.0.0.12", dl_src=PAIR_MAC)
    assert switch.send(**crossed).dropped
    assert switch.send(**ip_from("a1", "10.0.0.101", MAC["a2"], "10.0.0.12")).dropped
    # Traffic addressed to the pair's MAC reaches the port.
    back = switch.send(**ip_from("a2", "10.0.0.12", PAIR_MAC, "10.0.0.200"))
    assert back.ports() == {OFPORT["port-a1"]}


def test_port_security_off_lets_anything_out(switch: OpenFlowTables) -> None:
    packet = ip_from("u1", "192.168.7.7", MAC["a2"], "10.0.0.12", dl_src="02:00:00:00:00:77")
    assert switch.send(**packet).ports() == {OFPORT["port-a2"]}
    server = ip_from("u1", "10.0.0.21", BROADCAST, "255.255.255.255", nw_proto=17)
    server |= {"tp_src": 67, "tp_dst": 68}
    assert OFPORT["port-a1"] in switch.send(**server).ports()


def test_ipv6_source_link_local_and_neighbour_discovery(switch: OpenFlowTables) -> None:
    a1 = {"in_port": OFPORT["port-a1"], "dl_src": MAC["a1"], "dl_dst": MAC["a2"], **IP6}
    ok = switch.send(
        **a1, ipv6_src="2001:db8::11", ipv6_dst="2001:db8::12", nw_proto=6, tcp_flags="syn"
    )
    assert ok.ports() == {OFPORT["port-a2"]}
    link_local = "fe80::f816:3eff:fe00:1"
    assert not switch.send(**a1, ipv6_src=link_local, nw_proto=6, tcp_flags="syn").dropped
    assert switch.send(**a1, ipv6_src="2001:db8::12", nw_proto=6).dropped
    na = {**a1, "ipv6_src": link_local, "nw_proto": 58, "icmpv6_type": 136, "icmpv6_code": 0}
    assert not switch.send(**na, nd_target="2001:db8::11").dropped
    assert not switch.send(**na, nd_target=link_local).dropped
    assert switch.send(**na, nd_target="2001:db8::12").dropped
    dad = {**a1, "ipv6_src": "::", "nw_proto": 58, "icmpv6_type": 135, "icmpv6_code": 0}
    assert not switch.send(**dad, nd_target="2001:db8::11").dropped
    router_advert = {**a1, "ipv6_src": link_local, "nw_proto": 58, "icmpv6_type": 134}
    assert switch.send(**router_advert).dropped


# -------------------------------------------------------------------- DHCP


def dhcp_request(name: str, src: str, dst: str, dst_mac: str = BROADCAST) -> dict[str, object]:
    return ip_from(name, src, dst_mac, dst, nw_proto=17, tp_src=68, tp_dst=67)


def test_dhcp_client_packets_go_to_the_controller_only(switch: OpenFlowTables) -> None:
    discover = switch.send(**dhcp_request("a1", "0.0.0.0", "255.255.255.255"))
    assert discover.outputs == []
    [packet_in] = discover.to_controller
    assert packet_in["in_port"] == OFPORT["port-a1"]
    assert packet_in["metadata"] == network_key("net-a")
    # A renewal is unicast from the leased address to the server.
    renewal = switch.send(**dhcp_request("a1", "10.0.0.11", "10.0.0.1", MAC["x"]))
    assert len(renewal.to_controller) == 1 and renewal.outputs == []
    # Port security off still gets DHCP.
    assert len(switch.send(**dhcp_request("u1", "0.0.0.0", "255.255.255.255")).to_controller) == 1


def test_no_dhcp_interception_without_a_dhcp_subnet(switch: OpenFlowTables) -> None:
    verdict = switch.send(**dhcp_request("d1", "0.0.0.0", "255.255.255.255"))
    assert verdict.to_controller == []


def test_dhcp_server_replies_from_a_vm_are_dropped(switch: OpenFlowTables) -> None:
    offer = ip_from("a1", "10.0.0.11", BROADCAST, "255.255.255.255", nw_proto=17)
    assert switch.send(**offer, tp_src=67, tp_dst=68).dropped


# ---------------------------------------------------------- provider nets


def test_vlan_provider_network_pushes_and_pops_the_tag(switch: OpenFlowTables) -> None:
    out = switch.send(**arp_from("v1", MAC["v1"], "10.1.0.11", "10.1.0.12"))
    assert out.ports() == {PATCH}
    assert out.is_output(PATCH, vlan_tci=0x1000 | 42)
    # Unicast to a remote port of a provider network leaves through the patch too.
    unicast = switch.send(**ip_from("v1", "10.1.0.11", MAC["v2"], "10.1.0.12"))
    assert unicast.is_output(PATCH, vlan_tci=0x1000 | 42)
    inbound = {"in_port": PATCH, "dl_src": MAC["v2"], "dl_dst": MAC["v1"], **IP4}
    verdict = switch.send(**inbound, vlan_tci=0x1000 | 42)
    assert verdict.is_output(OFPORT["port-v1"], vlan_tci=0)
    assert switch.send(**inbound, vlan_tci=0x1000 | 43).dropped
    # A broadcast from the physical network is not sent back to it.
    flood = switch.send(**{**inbound, "dl_dst": BROADCAST}, vlan_tci=0x1000 | 42)
    assert flood.ports() == {OFPORT["port-v1"]}


def test_flat_provider_network_is_untagged(switch: OpenFlowTables) -> None:
    out = switch.send(**arp_from("f1", MAC["f1"], "10.2.0.11", "10.2.0.12"))
    assert out.is_output(PATCH, vlan_tci=0)
    inbound = {"in_port": PATCH, "dl_src": "fa:16:3e:77:77:77", "dl_dst": MAC["f1"], **IP4}
    assert switch.send(**inbound).is_output(OFPORT["port-f1"])


# ---------------------------------------------------- plan and reconciling


def with_port(intent: Intent, body: dict[str, object]) -> Intent:
    new_port = port_from_neutron(body)
    return dataclasses.replace(intent, ports={**intent.ports, new_port.id: new_port})


def test_compiling_twice_gives_the_same_flows(plan: HostPlan) -> None:
    again = compile_host(cloud_intent(), h1_facts())
    assert again.lines("br-int") == plan.lines("br-int")
    assert again.tunnel_ports == plan.tunnel_ports
    assert diff_flows(again.bridge_flows("br-int"), plan.cookies("br-int")).empty


def test_diff_counts_duplicated_cookies_and_accepts_rendered_text(plan: HostPlan) -> None:
    flows = plan.bridge_flows("br-int")
    first, second, *_ = sorted(flows)
    installed = dict.fromkeys(flows, 1) | {first: 2, 0x6B6E_0000_0000_0001: 1}
    change = diff_flows(flows, installed)
    # The copied flow goes and its one desired flow comes back; the stray cookie goes.
    assert change.delete_cookies == tuple(sorted((first, 0x6B6E_0000_0000_0001)))
    assert change.add == (flows[first],)
    assert change.bundle_lines() == [
        *(f"delete cookie={cookie:#x}/-1" for cookie in change.delete_cookies),
        f"add {flows[first].render()}",
    ]
    # The same diff over the flows' text, as the agent's tools hold them.
    text = {cookie: flow.render() for cookie, flow in flows.items() if cookie != second}
    as_text = diff_flows(text, set(flows))
    assert as_text.delete_cookies == (second,) and as_text.add == ()
    assert diff_flows(text, {}).add_lines() == [text[c] for c in sorted(text)]


def test_adding_then_removing_a_port_restores_the_original_flows(plan: HostPlan) -> None:
    intent = cloud_intent()
    facts = h1_facts()
    added = with_port(intent, port("x", "net-a", "h1", [("sub-a", "10.0.0.50")]))
    added_facts = dataclasses.replace(facts, local_ofports={**facts.local_ofports, "port-x": 9})
    compiler = PlanCompiler()
    compiler.compile(intent, facts)
    bigger = compiler.compile(added, added_facts)
    change = diff_flows(bigger.bridge_flows("br-int"), plan.cookies("br-int"))
    assert change.add and change.delete_cookies  # the network's flood flows changed
    back = compiler.compile(intent, facts)
    assert back.lines("br-int") == plan.lines("br-int")
    assert diff_flows(back.bridge_flows("br-int"), plan.cookies("br-int")).empty


def test_incremental_compile_equals_a_fresh_compile() -> None:
    intent = cloud_intent()
    compiler = PlanCompiler()
    compiler.compile(intent, h1_facts())
    moved = with_port(intent, port("a4", "net-a", "h2", [("sub-a", "10.0.0.14")]))
    assert compiler.compile(moved, h1_facts()).lines("br-int") == compile_host(
        moved, h1_facts()
    ).lines("br-int")


def test_a_remote_port_moving_host_changes_only_its_own_flows(plan: HostPlan) -> None:
    moved = with_port(cloud_intent(), port("a4", "net-a", "h2", [("sub-a", "10.0.0.14")]))
    after = compile_host(moved, h1_facts())
    change = diff_flows(after.bridge_flows("br-int"), plan.cookies("br-int"))
    switch = OpenFlowTables(after.bridge_flows("br-int").values())
    assert switch.send(**ip_from("a1", "10.0.0.11", MAC["a4"], "10.0.0.14")).ports() == {TUN_H2}
    # The a4 lookup flow, and the flood flow no longer going to h3.
    assert len(change.delete_cookies) == 2 and len(change.add) == 2
    assert all(is_kumonet_cookie(cookie) for cookie in change.delete_cookies)


def test_tunnel_ports_are_those_of_remote_hosts_sharing_a_network(plan: HostPlan) -> None:
    assert plan.tunnel_ports == {
        TunnelPort(f"vxlan-{H2}", "vxlan", H1, H2),
        TunnelPort(f"vxlan-{H3}", "vxlan", H1, H3),
    }
    [patch] = plan.patch_ports
    assert (patch.integration_port, patch.provider_port) == ("int-br-ex", "phy-br-ex")
    assert "br-ex" in plan.flows


def test_no_tunnel_to_a_host_whose_networks_have_no_local_port() -> None:
    intent = cloud_intent()
    only_b = {"port-b1": 3}
    plan = compile_host(intent, h1_facts(local_ofports=only_b))
    assert {tunnel.remote_ip for tunnel in plan.tunnel_ports} == {H2}


def test_a_tunnel_port_not_created_yet_gets_no_flows_but_is_wanted() -> None:
    plan = compile_host(cloud_intent(), h1_facts(tunnel_ofports={f"vxlan-{H2}": TUN_H2}))
    assert {tunnel.remote_ip for tunnel in plan.tunnel_ports} == {H2, H3}
    switch = OpenFlowTables(plan.bridge_flows("br-int").values())
    verdict = switch.send(**arp_from("a1", MAC["a1"], "10.0.0.11", "10.0.0.13"))
    assert verdict.ports() == {OFPORT["port-a2"], OFPORT["port-u1"], TUN_H2}


def test_admin_down_and_unplugged_ports_get_no_flows() -> None:
    intent = cloud_intent()
    down = with_port(intent, port("a2", "net-a", "h1", [("sub-a", "10.0.0.12")],
                                  admin_state_up=False))  # fmt: skip
    switch = OpenFlowTables(compile_host(down, h1_facts()).bridge_flows("br-int").values())
    assert switch.send(**ip_from("a2", "10.0.0.12", MAC["a1"], "10.0.0.11")).dropped
    to_down = switch.send(**ip_from("a1", "10.0.0.11", MAC["a2"], "10.0.0.12"))
    assert OFPORT["port-a2"] not in to_down.ports()
    unplugged = dict(OFPORT)
    del unplugged["port-a2"]
    plan = compile_host(intent, h1_facts(local_ofports=unplugged))
    assert any("port-a2" in note for note in plan.notes)


def test_network_types_not_enabled_on_the_host_are_skipped() -> None:
    plan = compile_host(cloud_intent(), h1_facts(tunnel_types=("gre",)))
    switch = OpenFlowTables(plan.bridge_flows("br-int").values())
    assert switch.send(**ip_from("a1", "10.0.0.11", MAC["a2"], "10.0.0.12")).dropped
    assert not plan.tunnel_ports
    assert any("net-a" in note for note in plan.notes)


# ------------------------------------------------------------ flow counts


def flows_per_port(plan: HostPlan, other: HostPlan) -> int:
    return len(plan.cookies("br-int") - other.cookies("br-int"))


def test_flow_count_per_local_and_remote_port() -> None:
    intent = cloud_intent()
    base = compile_host(intent, h1_facts())
    local = with_port(intent, port("x", "net-b", "h1", [("sub-b", "10.0.0.50")]))
    facts = h1_facts(local_ofports={**OFPORT, "port-x": 9})
    # 1 classify + 1 IPv4 + 1 ARP + 2 IPv6 link-local (source, NA) + 1 L2 lookup,
    # plus the network's 2 flood flows that now include the new port (replaced).
    with_local = compile_host(local, facts)
    # Its security groups: 1 egress + 1 ingress flow running its groups' rules.
    assert flows_per_port(with_local, base) == 6 + 2 + 2
    remote = with_port(intent, port("x", "net-b", "h3", [("sub-b", "10.0.0.50")]))
    with_remote = compile_host(remote, h1_facts())
    # 1 L2 lookup, plus the local-origin flood flow now reaching h3 (replaced).
    assert flows_per_port(with_remote, base) == 1 + 1


def test_every_flow_has_a_kumonet_cookie(plan: HostPlan) -> None:
    for bridge in plan.flows:
        assert all(is_kumonet_cookie(cookie) for cookie in plan.cookies(bridge))
        for cookie, flow in plan.bridge_flows(bridge).items():
            assert f",cookie={cookie:#x}" in flow.render()
            assert flow.render().replace(f",cookie={cookie:#x}", "") == flow.body


def test_cookie_changes_with_the_actions(plan: HostPlan) -> None:
    moved = compile_host(cloud_intent(), h1_facts(local_ofports={**OFPORT, "port-a2": 12}))
    old = {f.key(): f.cookie for f in plan.bridge_flows("br-int").values()}
    new = {f.key(): f.cookie for f in moved.bridge_flows("br-int").values()}
    changed = [key for key in old.keys() & new.keys() if old[key] != new[key]]
    assert changed  # e.g. the L2 lookup of a2's MAC now sets reg7=12


def test_verdict_of_a_dropped_packet_explains_itself(switch: OpenFlowTables) -> None:
    verdict: Verdict = switch.send(in_port=99, dl_src=MAC["a1"], dl_dst=MAC["a2"], **IP4)
    assert verdict.dropped
    assert verdict.trace and "drop" in verdict.trace[-1]


def test_gre_and_vxlan_networks_with_the_same_key_stay_apart() -> None:
    intent = cloud_intent()
    gre = network("net-g", "gre", 100)  # same number as net-a's VNI
    intent = dataclasses.replace(
        intent, networks={**intent.networks, "net-g": network_from_neutron(gre)}
    )
    intent = with_port(intent, port("x", "net-g", "h1", [], port_security_enabled=False))
    intent = with_port(intent, port("a4", "net-g", "h3", []))  # a4 moves to the gre net
    facts = h1_facts(
        local_ofports={**OFPORT, "port-x": 9},
        tunnel_ofports={f"vxlan-{H2}": TUN_H2, f"vxlan-{H3}": TUN_H3, f"gre-{H3}": 22},
    )
    plan = compile_host(intent, facts)
    assert TunnelPort(f"gre-{H3}", "gre", H1, H3) in plan.tunnel_ports
    switch = OpenFlowTables(plan.bridge_flows("br-int").values())
    from_x = {"in_port": 9, "dl_src": MAC["x"], "dl_dst": MAC["a4"], **IP4}
    assert switch.send(**from_x).is_output(22, tun_id=100)
    assert switch.send(**from_tunnel(22, 100, MAC["x"])).ports() == {9}
    # The same key on a vxlan tunnel is net-a, not the gre network.
    assert switch.send(**from_tunnel(TUN_H3, 100, MAC["x"])).ports() == {OFPORT["port-u1"]}
    assert switch.send(**from_tunnel(TUN_H3, 100, MAC["a1"])).ports() == {OFPORT["port-a1"]}


def test_two_local_ports_claiming_one_mac_keep_the_first_and_say_so() -> None:
    intent = cloud_intent()
    pair = [{"ip_address": "10.0.0.77", "mac_address": MAC["a2"]}]
    intent = with_port(intent, port("a1", "net-a", "h1", [("sub-a", "10.0.0.11")],
                                    allowed_address_pairs=pair))  # fmt: skip
    plan = compile_host(intent, h1_facts())
    assert any(note.startswith("conflict") for note in plan.notes)
    switch = OpenFlowTables(plan.bridge_flows("br-int").values())
    # Deterministic: port-a1 sorts first, so a2's MAC is now delivered to a1.
    verdict = switch.send(**ip_from("u1", "10.0.0.21", MAC["a2"], "10.0.0.12"))
    assert verdict.ports() == {OFPORT["port-a1"]}


def test_router_ports_are_trusted_like_neutron_does() -> None:
    # A router interface forwards other subnets' traffic: no port security on it.
    router = port("x", "net-a", "h1", [("sub-a", "10.0.0.1")],
                  device_owner="network:router_interface")  # fmt: skip
    intent = with_port(cloud_intent(), router)
    switch = OpenFlowTables(
        compile_host(intent, h1_facts(local_ofports={**OFPORT, "port-x": 9}))
        .bridge_flows("br-int")
        .values()
    )
    routed = {"in_port": 9, "dl_src": MAC["x"], "dl_dst": MAC["a1"], **IP4,
              "nw_src": "192.168.50.7", "nw_dst": "10.0.0.11"}  # fmt: skip
    assert switch.send(**routed).ports() == {OFPORT["port-a1"]}


def test_vlan_tagged_frames_from_vms_are_dropped(switch: OpenFlowTables) -> None:
    # A VM on the flat network must not reach VLAN 42 of the same physnet by tagging.
    tagged = arp_from("f1", MAC["f1"], "10.2.0.11", "10.1.0.12", vlan_tci=0x1000 | 42)
    assert switch.send(**tagged).dropped
    unsecured = ip_from("u1", "10.0.0.21", BROADCAST, "10.0.0.255", vlan_tci=0x1000 | 42)
    assert switch.send(**unsecured).dropped
