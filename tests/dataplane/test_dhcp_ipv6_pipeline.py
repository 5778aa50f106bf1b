"""Router solicitations and DHCPv6 in the pipeline, through the in-memory switch
model: they reach the host's responder (one flow per network, none per port),
and a VM still cannot act as a router or a DHCPv6 server."""

from __future__ import annotations

import dataclasses

from kumonet.dataplane.compiler import compile_host
from kumonet.dataplane.intent import Intent, network_key
from kumonet.dataplane.oftable import OpenFlowTables
from tests.dataplane.cloud import MAC, OFPORT, cloud_intent, h1_facts

IP6 = {"dl_type": 0x86DD}
LINK_LOCAL_A1 = "fe80::f816:3eff:fe00:1"


def with_modes(ra: str | None, address: str | None, *, dhcp: bool = True) -> Intent:
    """The test cloud with net-a's IPv6 subnet (sub-a6) in these modes."""
    intent = cloud_intent()
    subnets = dict(intent.subnets)
    subnets["sub-a6"] = dataclasses.replace(
        subnets["sub-a6"], ipv6_ra_mode=ra, ipv6_address_mode=address, enable_dhcp=dhcp
    )
    return dataclasses.replace(intent, subnets=subnets)


def switch(intent: Intent) -> OpenFlowTables:
    return OpenFlowTables(compile_host(intent, h1_facts()).bridge_flows("br-int").values())


def from_a1(**fields: object) -> dict[str, object]:
    a1 = {"in_port": OFPORT["port-a1"], "dl_src": MAC["a1"], **IP6}
    return a1 | {"ipv6_src": LINK_LOCAL_A1} | fields


def solicitation(**fields: object) -> dict[str, object]:
    rs = {"dl_dst": "33:33:00:00:00:02", "ipv6_dst": "ff02::2", "nw_proto": 58, "icmpv6_type": 133}
    return from_a1(**rs, **fields)


def dhcpv6(**fields: object) -> dict[str, object]:
    client = {"dl_dst": "33:33:00:01:00:02", "ipv6_dst": "ff02::1:2", "nw_proto": 17}
    return from_a1(**client, tp_src=546, tp_dst=547, **fields)


def test_router_solicitations_go_to_the_responder_only() -> None:
    model = switch(with_modes("slaac", "slaac"))
    for packet in (solicitation(), solicitation(ipv6_src="::")):
        result = model.send(**packet)
        assert result.outputs == []
        [packet_in] = result.to_controller
        assert packet_in["in_port"] == OFPORT["port-a1"]
        assert packet_in["metadata"] == network_key("net-a")
    # Port security off gets them answered too.
    unsecured = solicitation(in_port=OFPORT["port-u1"], dl_src=MAC["u1"])
    assert len(model.send(**unsecured).to_controller) == 1


def test_without_an_ra_mode_solicitations_reach_the_network() -> None:
    # An external router on the network advertises: its solicitations must reach it.
    result = switch(with_modes(None, "slaac")).send(**solicitation())
    assert result.to_controller == []
    assert OFPORT["port-a2"] in result.ports()


def test_dhcpv6_goes_to_the_responder_for_dhcpv6_subnets_only() -> None:
    for ra, address in (("dhcpv6-stateful", "dhcpv6-stateful"), (None, "dhcpv6-stateless")):
        result = switch(with_modes(ra, address)).send(**dhcpv6())
        assert len(result.to_controller) == 1 and result.outputs == [], (ra, address)
    for intent in (with_modes("slaac", "slaac"), with_modes(None, "dhcpv6-stateful", dhcp=False)):
        assert switch(intent).send(**dhcpv6()).to_controller == []


def test_a_vm_cannot_advertise_or_serve_dhcpv6() -> None:
    model = switch(with_modes("dhcpv6-stateful", "dhcpv6-stateful"))
    router_advert = from_a1(dl_dst="33:33:00:00:00:01", ipv6_dst="ff02::1", nw_proto=58)
    assert model.send(**router_advert, icmpv6_type=134).dropped
    server = from_a1(dl_dst=MAC["a2"], ipv6_dst="fe80::1", nw_proto=17, tp_src=547, tp_dst=546)
    assert model.send(**server).dropped


def test_one_flow_per_network_and_none_per_port() -> None:
    def flows(intent: Intent) -> int:
        return len(compile_host(intent, h1_facts()).bridge_flows("br-int"))

    plain = flows(with_modes(None, None))
    # RS + DHCPv6 for net-a (three local ports there), whatever the port count.
    assert flows(with_modes("dhcpv6-stateful", "dhcpv6-stateful")) == plain + 2
    assert flows(with_modes("slaac", "slaac")) == plain + 1
    assert flows(with_modes(None, "dhcpv6-stateless")) == plain + 1
