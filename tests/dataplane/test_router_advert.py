"""Router advertisements: what each ipv6_ra_mode advertises, byte by byte.

Replies are decoded here with struct, independently of the encoder; the
solicitation is a real one the Linux kernel sent (see test_ipv6_frame).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import struct
from typing import Any

import pytest

from kumonet.dataplane.dhcp import DhcpSettings
from kumonet.dataplane.intent import Intent, from_neutron
from kumonet.dataplane.ipv6_frame import upper_checksum
from kumonet.dataplane.router_advert import (
    advert_inputs,
    answer_router_solicitation,
    unsolicited_router_advert,
)
from tests.dataplane.cloud import network, subnet
from tests.dataplane.test_ipv6_frame import KERNEL_RS

VM_MAC = "fa:16:3e:11:22:33"
VM_LL = ipaddress.IPv6Address("fe80::f816:3eff:fe11:2233")
RESPONDER_MAC = DhcpSettings().server_mac
RESPONDER_LL = ipaddress.IPv6Address("fe80::6b:6eff:fe00:1")
ROUTER_MAC = "fa:16:3e:aa:bb:cc"


def port(
    name: str, net: str, host: str, ips: list[tuple[str, str]], **extra: Any
) -> dict[str, Any]:
    fixed = [{"subnet_id": s, "ip_address": ip} for s, ip in ips]
    body = {"id": f"port-{name}", "network_id": net, "fixed_ips": fixed, "binding:host_id": host}
    return body | {"device_owner": "compute:nova"} | extra


def cloud(*subnets: dict[str, Any], router: bool = False, mtu: int = 1450) -> Intent:
    net = network("net6", "vxlan", 600) | {"mtu": mtu}
    ips = [(s["id"], "2001:db8::f816:3eff:fe11:2233") for s in subnets]
    ports = [port("vm", "net6", "h1", ips, mac_address=VM_MAC)]
    if router:
        gw = [(subnets[0]["id"], subnets[0]["gateway_ip"])]
        owner = "network:router_interface"
        ports.append(port("gw", "net6", "h2", gw, mac_address=ROUTER_MAC, device_owner=owner))
    return from_neutron([net], list(subnets), ports, {}, [])


def v6(mode: str | None, cidr: str = "2001:db8::/64", **extra: Any) -> dict[str, Any]:
    extra.setdefault("gateway", cidr.split("/", maxsplit=1)[0] + "1")
    return subnet(f"sub-{cidr}", "net6", cidr, ipv6_ra_mode=mode, ipv6_address_mode=mode, **extra)


def decode(frame: bytes) -> dict[str, Any]:
    """The RA's fields, decoded independently of the encoder."""
    dst_mac, src_mac, ethertype = frame[0:6], frame[6:12], frame[12:14]
    assert ethertype == b"\x86\xdd"
    first, length, next_header, hop_limit = struct.unpack_from("!IHBB", frame, 14)
    src = ipaddress.IPv6Address(frame[22:38])
    dst = ipaddress.IPv6Address(frame[38:54])
    icmp = frame[54:]
    assert first >> 28 == 6 and length == len(icmp) and next_header == 58 and hop_limit == 255
    assert upper_checksum(src, dst, 58, icmp) == 0, "bad ICMPv6 checksum"
    kind, code, _sum, cur_hop, flags, lifetime, reachable, retrans = struct.unpack_from(
        "!BBHBBHII", icmp
    )
    assert (kind, code) == (134, 0)
    options: dict[int, list[bytes]] = {}
    at = 16
    while at < len(icmp):
        otype, olen = icmp[at], icmp[at + 1]
        assert olen > 0
        options.setdefault(otype, []).append(icmp[at + 2 : at + olen * 8])
        at += olen * 8
    assert at == len(icmp)
    return {
        "dst_mac": dst_mac.hex(":"), "src_mac": src_mac.hex(":"), "src": src, "dst": dst,
        "hop": cur_hop, "M": bool(flags & 0x80), "O": bool(flags & 0x40),
        "lifetime": lifetime, "reachable": reachable, "retrans": retrans, "options": options,
    }  # fmt: skip


def prefixes(ra: dict[str, Any]) -> list[tuple[str, bool, bool, int, int]]:
    found = []
    for body in ra["options"].get(3, []):
        length, flags, valid, preferred = struct.unpack_from("!BBII", body)
        prefix = ipaddress.IPv6Address(body[14:30])
        found.append((f"{prefix}/{length}", bool(flags & 0x80), bool(flags & 0x40), valid,
                      preferred))  # fmt: skip
    return found


@pytest.mark.parametrize(
    ("mode", "a", "m", "o"),
    [("slaac", True, False, False), ("dhcpv6-stateless", True, False, True),
     ("dhcpv6-stateful", False, True, True)],
)  # fmt: skip
def test_solicitation_is_answered_with_the_modes_flags(
    mode: str, a: bool, m: bool, o: bool
) -> None:
    intent = cloud(v6(mode, dns_nameservers=["2001:db8::53", "10.0.0.53"]))
    reply = answer_router_solicitation(KERNEL_RS, intent, "port-vm")
    assert reply is not None
    ra = decode(reply)
    # Unicast back to the soliciting VM, from the responder's link-local address.
    assert (ra["dst_mac"], ra["dst"]) == (VM_MAC, VM_LL)
    assert (ra["src_mac"], ra["src"]) == (RESPONDER_MAC, RESPONDER_LL)
    assert (ra["M"], ra["O"], ra["hop"], ra["lifetime"]) == (m, o, 64, 1800)
    assert prefixes(ra) == [("2001:db8::/64", True, a, 86400, 14400)]
    assert ra["options"][1] == [bytes.fromhex("026b6e000001")]  # source link-layer address
    assert ra["options"][5] == [struct.pack("!HI", 0, 1450)]  # MTU: the network's
    # RDNSS: IPv6 servers only, lifetime 1800.
    assert ra["options"][25] == [struct.pack("!HI", 0, 1800) +
                                 ipaddress.IPv6Address("2001:db8::53").packed]  # fmt: skip


def test_exact_bytes_of_a_slaac_advertisement() -> None:
    reply = answer_router_solicitation(KERNEL_RS, cloud(v6("slaac")), "port-vm")
    assert reply is not None
    icmp = reply[54:]
    expected = bytes.fromhex(
        "86 00 0000 40 00 0708 00000000 00000000"  # RA, checksum blank, hop 64, lifetime 1800
        "01 01 026b6e000001"  # source link-layer address
        "05 01 0000 000005aa"  # MTU 1450
        "03 04 40 c0 00015180 00003840 00000000 20010db8000000000000000000000000"  # prefix, L+A
    )
    assert icmp[:2] + b"\x00\x00" + icmp[4:] == expected


def test_gateway_decides_the_router_lifetime() -> None:
    reply = answer_router_solicitation(KERNEL_RS, cloud(v6("slaac", gateway=None)), "port-vm")
    assert reply is not None
    assert decode(reply)["lifetime"] == 0  # not a default router


def test_a_router_port_holding_the_gateway_is_the_source() -> None:
    reply = answer_router_solicitation(KERNEL_RS, cloud(v6("slaac"), router=True), "port-vm")
    assert reply is not None
    ra = decode(reply)
    assert ra["src_mac"] == ROUTER_MAC
    assert ra["src"] == ipaddress.IPv6Address("fe80::f816:3eff:feaa:bbcc")
    assert ra["options"][1] == [bytes.fromhex("fa163eaabbcc")]


def test_several_subnets_one_advertisement() -> None:
    intent = cloud(
        v6("slaac"), v6("dhcpv6-stateful", "2001:db8:1::/64"), v6(None, "2001:db8:2::/64")
    )
    reply = answer_router_solicitation(KERNEL_RS, intent, "port-vm")
    assert reply is not None
    ra = decode(reply)
    assert (ra["M"], ra["O"]) == (True, True)
    assert sorted(p[0] for p in prefixes(ra)) == ["2001:db8:1::/64", "2001:db8::/64"]


def test_nothing_without_an_ra_mode() -> None:
    external = v6(None) | {"ipv6_address_mode": "slaac"}  # an external router advertises
    intent = cloud(external)
    assert answer_router_solicitation(KERNEL_RS, intent, "port-vm") is None
    assert unsolicited_router_advert(intent, "port-vm") is None
    v4_only = cloud(subnet("sub4", "net6", "10.0.0.0/24"))
    assert answer_router_solicitation(KERNEL_RS, v4_only, "port-vm") is None


def test_unsolicited_and_unspecified_source_go_to_all_nodes() -> None:
    intent = cloud(v6("slaac"), router=True)
    advert = unsolicited_router_advert(intent, "port-vm")
    assert advert is not None
    ra = decode(advert)
    assert (ra["dst_mac"], str(ra["dst"])) == ("33:33:00:00:00:01", "ff02::1")
    # The router's own port gets none.
    assert unsolicited_router_advert(intent, "port-gw") is None
    assert unsolicited_router_advert(intent, "no-such-port") is None
    # RFC 4861 6.2.6: a solicitation from "::" is answered to all nodes.
    unspecified = KERNEL_RS[:22] + bytes(16) + KERNEL_RS[38:54] + b"\x85\x00" + KERNEL_RS[56:]
    reply = answer_router_solicitation(unspecified, intent, "port-vm")
    assert reply is not None and decode(reply)["dst_mac"] == "33:33:00:00:00:01"


def test_invalid_solicitations_are_ignored() -> None:
    intent = cloud(v6("slaac"))
    hop_64 = KERNEL_RS[:21] + b"\x40" + KERNEL_RS[22:]  # not from the link (RFC 4861 6.1.1)
    assert answer_router_solicitation(hop_64, intent, "port-vm") is None
    code_1 = KERNEL_RS[:55] + b"\x01" + KERNEL_RS[56:]
    assert answer_router_solicitation(code_1, intent, "port-vm") is None
    neighbour_solicitation = KERNEL_RS[:54] + b"\x87" + KERNEL_RS[55:]
    assert answer_router_solicitation(neighbour_solicitation, intent, "port-vm") is None
    assert answer_router_solicitation(KERNEL_RS, intent, "no-such-port") is None


def test_fuzz_never_raises() -> None:
    intent = cloud(v6("slaac"), v6("dhcpv6-stateful", "2001:db8:1::/64"))
    rng = random.Random(6)
    for _ in range(3000):
        frame = bytearray(KERNEL_RS)
        for _ in range(rng.randint(1, 6)):
            frame[rng.randrange(len(frame))] = rng.randrange(256)
        cut = bytes(frame[: rng.randint(0, len(frame) + 4)])
        reply = answer_router_solicitation(cut, intent, "port-vm")
        assert reply is None or decode(reply)["dst_mac"]
    assert answer_router_solicitation(b"", intent, "port-vm") is None


def test_mtu_follows_the_network() -> None:
    intent = cloud(v6("slaac"), mtu=9000)
    reply = answer_router_solicitation(KERNEL_RS, dataclasses.replace(intent), "port-vm")
    assert reply is not None
    assert decode(reply)["options"][5] == [struct.pack("!HI", 0, 9000)]


def test_advert_inputs_change_with_what_is_advertised() -> None:
    before = advert_inputs(cloud(v6("slaac")))
    assert list(before) == ["net6"]
    assert advert_inputs(cloud(v6("slaac"))) == before
    assert advert_inputs(cloud(v6("slaac"), mtu=9000)) != before
    assert advert_inputs(cloud(v6("slaac", dns_nameservers=["2001:db8::53"]))) != before
    assert advert_inputs(cloud(v6(None))) == {}
