"""Broadcast ARP requests for a known port's address go to that port alone
(``HostFacts.direct_arp_requests``), tested with packets through the model.

Without it every request of a bring-up is flooded to every VM of the network
(N² deliveries for N VMs ARPing at once: ``bench/bringup_bench.py`` went from
1.3 s to 9-15 s for 200 ports)."""

from __future__ import annotations

import pytest

from kumonet.dataplane.compiler import compile_host
from kumonet.dataplane.intent import Intent, port_from_neutron
from kumonet.dataplane.oftable import OpenFlowTables
from tests.dataplane.cloud import MAC, OFPORT, TUN_H2, TUN_H3, cloud_intent, h1_facts, port

BROADCAST = "ff:ff:ff:ff:ff:ff"


def arp_request(name: str, spa: str, tpa: str) -> dict[str, object]:
    return {
        "in_port": OFPORT[f"port-{name}"],
        "dl_src": MAC[name],
        "dl_dst": BROADCAST,
        "dl_type": 0x0806,
        "arp_op": 1,
        "arp_sha": MAC[name],
        "arp_spa": spa,
        "arp_tpa": tpa,
    }


def switch_for(intent: Intent, *, direct: bool = True) -> OpenFlowTables:
    plan = compile_host(intent, h1_facts(direct_arp_requests=direct))
    return OpenFlowTables(plan.bridge_flows("br-int").values())


@pytest.fixture
def switch() -> OpenFlowTables:
    return switch_for(cloud_intent())


def test_request_for_a_local_port_goes_to_it_alone(switch: OpenFlowTables) -> None:
    verdict = switch.send(**arp_request("a2", "10.0.0.12", "10.0.0.11"))
    assert verdict.ports() == {OFPORT["port-a1"]}
    assert verdict.is_output(OFPORT["port-a1"], dl_dst=BROADCAST, arp_tpa="10.0.0.11")


def test_request_for_a_remote_port_goes_into_its_hosts_tunnel_alone(
    switch: OpenFlowTables,
) -> None:
    to_h2 = switch.send(**arp_request("a1", "10.0.0.11", "10.0.0.13"))
    assert to_h2.ports() == {TUN_H2}
    assert to_h2.is_output(TUN_H2, tun_id=100)
    assert switch.send(**arp_request("a1", "10.0.0.11", "10.0.0.14")).ports() == {TUN_H3}


def test_requests_for_other_addresses_still_flood(switch: OpenFlowTables) -> None:
    everyone = {OFPORT["port-a2"], OFPORT["port-u1"], TUN_H2, TUN_H3}
    # no port has it
    assert switch.send(**arp_request("a1", "10.0.0.11", "10.0.0.99")).ports() == everyone
    # an allowed address pair of a1 (a VIP may move): whoever holds it answers
    assert switch.send(**arp_request("a2", "10.0.0.12", "10.0.0.100")).ports() == (
        everyone - {OFPORT["port-a2"]} | {OFPORT["port-a1"]}
    )
    # a port without port security (u1) may answer for anything: not directed
    assert switch.send(**arp_request("a1", "10.0.0.11", "10.0.0.21")).ports() == everyone


def test_a_fixed_address_another_port_lists_as_a_pair_is_flooded() -> None:
    intent = cloud_intent()
    vip_holder = port_from_neutron(
        port("a4", "net-a", "h3", [("sub-a", "10.0.0.14")],
             allowed_address_pairs=[{"ip_address": "10.0.0.0/28"}])
    )  # fmt: skip
    intent = Intent(
        networks=intent.networks,
        subnets=intent.subnets,
        ports={**intent.ports, vip_holder.id: vip_holder},
        hosts=intent.hosts,
        security_groups=intent.security_groups,
    )
    verdict = switch_for(intent).send(**arp_request("a2", "10.0.0.12", "10.0.0.11"))
    assert OFPORT["port-a1"] in verdict.ports() and TUN_H2 in verdict.ports()


def test_off_every_request_floods() -> None:
    switch = switch_for(cloud_intent(), direct=False)
    assert switch.send(**arp_request("a1", "10.0.0.11", "10.0.0.13")).ports() == {
        OFPORT["port-a2"], OFPORT["port-u1"], TUN_H2, TUN_H3,
    }  # fmt: skip


def test_requests_from_a_tunnel_are_not_sent_back_into_one(switch: OpenFlowTables) -> None:
    from_h2 = {**arp_request("a1", "10.0.0.13", "10.0.0.14"), "in_port": TUN_H2, "tun_id": 100}
    from_h2["dl_src"] = from_h2["arp_sha"] = MAC["a3"]
    assert TUN_H3 not in switch.send(**from_h2).ports()
    # and one for a local port reaches it alone
    from_h2["arp_tpa"] = "10.0.0.12"
    assert switch.send(**from_h2).ports() == {OFPORT["port-a2"]}
