"""DHCPv6 replies, byte by byte: ISC dhclient's real Solicit and
Information-request (captured, see test_ipv6_frame) and the other client
messages built from them as RFC 8415 lays them out; replies decoded here with
struct, independently of the encoder."""

from __future__ import annotations

import ipaddress
import random
import struct
from typing import Any

from kumonet.dataplane.dhcpv6 import answer_dhcpv6, dhcpv6_mode
from kumonet.dataplane.intent import Intent, from_neutron
from kumonet.dataplane.ipv6_frame import NEXT_UDP, build_ipv6_frame, upper_checksum
from tests.dataplane.cloud import network, subnet
from tests.dataplane.test_ipv6_frame import DHCLIENT_SOLICIT

VM_MAC = "fa:16:3e:11:22:33"
VM_LL = ipaddress.IPv6Address("fe80::f816:3eff:fe11:2233")
FIXED = "2001:db8::1:5"
SERVER_DUID = bytes.fromhex("00030001026b6e000001")  # DUID-LL of 02:6b:6e:00:00:01
CLIENT_DUID = bytes.fromhex("0001000132942cd3fa163e112233")  # dhclient's DUID-LLT
IAID = bytes.fromhex("3e112233")
DHCLIENT_INFO_REQUEST = bytes.fromhex(
    "333300010002fa163e11223386dd600eea18002c1101fe80000000000000f8163efffe112233"
    "ff02000000000000000000000001000202220223002c551f0b7b23c60001000e0001000132942cd3"
    "fa163e1122330006000400170018000800020000"
)
SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY, RELEASE, DECLINE = range(1, 10)
INFORMATION_REQUEST = 11


def cloud(mode: str | None = "dhcpv6-stateful", *, dhcp: bool = True, mac: str = VM_MAC) -> Intent:
    net = network("net6", "vxlan", 600)
    sub = subnet(
        "sub6", "net6", "2001:db8::/64", gateway="2001:db8::1", dhcp=dhcp,
        ipv6_ra_mode=mode, ipv6_address_mode=mode, dns_nameservers=["2001:db8::53", "10.0.0.53"],
    )  # fmt: skip
    fixed = [{"subnet_id": "sub6", "ip_address": FIXED}]
    vm = {"id": "port-vm", "network_id": "net6", "mac_address": mac, "fixed_ips": fixed}
    return from_neutron([net], [sub], [vm], {}, [])


def option(code: int, value: bytes) -> bytes:
    return struct.pack("!HH", code, len(value)) + value


def ia_na(*addresses: str) -> bytes:
    inner = b"".join(
        option(5, ipaddress.IPv6Address(a).packed + struct.pack("!II", 0, 0)) for a in addresses
    )
    return option(3, IAID + bytes(8) + inner)


def client_frame(kind: int, *options: bytes, xid: bytes = b"\x12\x34\x56") -> bytes:
    message = bytes((kind,)) + xid + option(1, CLIENT_DUID) + b"".join(options)
    udp = struct.pack("!HHHH", 546, 547, 8 + len(message), 0) + message
    return build_ipv6_frame(
        src_mac=VM_MAC, dst_mac="33:33:00:01:00:02", src=VM_LL,
        dst=ipaddress.IPv6Address("ff02::1:2"), next_header=NEXT_UDP, payload=udp, hop_limit=1,
    )  # fmt: skip


def options_of(data: bytes) -> dict[int, list[bytes]]:
    found: dict[int, list[bytes]] = {}
    at = 0
    while at < len(data):
        code, length = struct.unpack_from("!HH", data, at)
        found.setdefault(code, []).append(data[at + 4 : at + 4 + length])
        at += 4 + length
    assert at == len(data)
    return found


def decode(frame: bytes) -> dict[str, Any]:
    assert frame[0:6].hex(":") == VM_MAC and frame[6:12].hex(":") == "02:6b:6e:00:00:01"
    assert frame[12:14] == b"\x86\xdd"
    src = ipaddress.IPv6Address(frame[22:38])
    dst = ipaddress.IPv6Address(frame[38:54])
    assert (str(src), dst, frame[20]) == ("fe80::6b:6eff:fe00:1", VM_LL, 17)
    udp = frame[54:]
    assert struct.unpack_from("!HH", udp) == (547, 546)
    assert struct.unpack_from("!H", udp, 4)[0] == len(udp) == struct.unpack_from("!H", frame, 18)[0]
    assert upper_checksum(src, dst, 17, udp) == 0, "bad UDP checksum"
    message = udp[8:]
    options = options_of(message[4:])
    assert options[2] == [SERVER_DUID]
    return {"type": message[0], "xid": message[1:4], "options": options}


def addresses_in(ia: bytes) -> tuple[bytes, int, int, list[tuple[str, int, int]]]:
    t1, t2 = struct.unpack_from("!II", ia, 4)
    found = []
    for body in options_of(ia[12:]).get(5, []):
        preferred, valid = struct.unpack_from("!II", body, 16)
        found.append((str(ipaddress.IPv6Address(body[:16])), preferred, valid))
    return ia[:4], t1, t2, found


def test_modes() -> None:
    assert dhcpv6_mode(cloud().subnets["sub6"]) == "dhcpv6-stateful"
    assert dhcpv6_mode(cloud("dhcpv6-stateless").subnets["sub6"]) == "dhcpv6-stateless"
    assert dhcpv6_mode(cloud("slaac").subnets["sub6"]) is None
    assert dhcpv6_mode(cloud(dhcp=False).subnets["sub6"]) is None


def test_dhclients_solicit_gets_an_advertise_with_the_fixed_address() -> None:
    reply = answer_dhcpv6(DHCLIENT_SOLICIT, cloud(), "port-vm")
    assert reply is not None
    got = decode(reply)
    assert (got["type"], got["xid"]) == (ADVERTISE, bytes.fromhex("5bccb3"))
    assert got["options"][1] == [CLIENT_DUID]
    assert got["options"][7] == [b"\xff"]  # preference 255: no need to wait for others
    [ia] = got["options"][3]
    assert addresses_in(ia) == (IAID, 43200, 69120, [(FIXED, 86400, 86400)])
    assert got["options"][23] == [ipaddress.IPv6Address("2001:db8::53").packed]
    assert got["options"][24] == [b"\x0eopenstacklocal\x00"]


def test_rapid_commit_solicit_gets_a_reply() -> None:
    got = decode(answer_dhcpv6(client_frame(SOLICIT, ia_na(), option(14, b"")), cloud(), "port-vm")
                 or b"")  # fmt: skip
    assert got["type"] == REPLY and got["options"][14] == [b""]
    assert addresses_in(got["options"][3][0])[3][0][0] == FIXED


def test_request_renew_rebind_get_replies_with_the_address() -> None:
    server = option(2, SERVER_DUID)
    for kind, extra in ((REQUEST, server), (RENEW, server), (REBIND, b"")):
        reply = answer_dhcpv6(client_frame(kind, extra, ia_na(FIXED)), cloud(), "port-vm")
        assert reply is not None, kind
        got = decode(reply)
        assert (got["type"], got["xid"]) == (REPLY, b"\x12\x34\x56")
        assert addresses_in(got["options"][3][0])[3] == [(FIXED, 86400, 86400)]


def test_messages_for_another_server_or_without_one_are_ignored() -> None:
    other = option(2, bytes.fromhex("00030001020000000099"))
    assert answer_dhcpv6(client_frame(REQUEST, other, ia_na()), cloud(), "port-vm") is None
    assert answer_dhcpv6(client_frame(REQUEST, ia_na()), cloud(), "port-vm") is None
    assert answer_dhcpv6(client_frame(RENEW, ia_na(FIXED)), cloud(), "port-vm") is None
    ours = option(2, SERVER_DUID)
    assert answer_dhcpv6(client_frame(SOLICIT, ours, ia_na()), cloud(), "port-vm") is None


def test_confirm_release_decline() -> None:
    on = decode(answer_dhcpv6(client_frame(CONFIRM, ia_na(FIXED)), cloud(), "port-vm") or b"")
    assert on["type"] == REPLY and on["options"][13][0][:2] == b"\x00\x00"
    moved = client_frame(CONFIRM, ia_na("2001:db8:99::5"))
    off = decode(answer_dhcpv6(moved, cloud(), "port-vm") or b"")
    assert off["options"][13][0][:2] == b"\x00\x04"  # NotOnLink
    assert answer_dhcpv6(client_frame(CONFIRM), cloud(), "port-vm") is None
    server = option(2, SERVER_DUID)
    for kind in (RELEASE, DECLINE):
        got = decode(answer_dhcpv6(client_frame(kind, server, ia_na(FIXED)), cloud(), "port-vm")
                     or b"")  # fmt: skip
        assert got["type"] == REPLY and got["options"][13][0][:2] == b"\x00\x00"
        assert 3 not in got["options"]


def test_stateless_answers_information_requests_only() -> None:
    intent = cloud("dhcpv6-stateless")
    reply = answer_dhcpv6(DHCLIENT_INFO_REQUEST, intent, "port-vm")
    assert reply is not None
    got = decode(reply)
    assert (got["type"], got["xid"]) == (REPLY, bytes.fromhex("7b23c6"))
    assert got["options"][23] == [ipaddress.IPv6Address("2001:db8::53").packed]
    assert 3 not in got["options"]
    assert answer_dhcpv6(DHCLIENT_SOLICIT, intent, "port-vm") is None
    # A stateful subnet answers them too.
    assert answer_dhcpv6(DHCLIENT_INFO_REQUEST, cloud(), "port-vm") is not None


def test_no_answer_without_service_or_for_another_mac() -> None:
    for intent in (cloud(dhcp=False), cloud("slaac"), cloud(None)):
        assert answer_dhcpv6(DHCLIENT_SOLICIT, intent, "port-vm") is None
        assert answer_dhcpv6(DHCLIENT_INFO_REQUEST, intent, "port-vm") is None
    assert answer_dhcpv6(DHCLIENT_SOLICIT, cloud(mac="fa:16:3e:00:00:99"), "port-vm") is None
    assert answer_dhcpv6(DHCLIENT_SOLICIT, cloud(), "no-such-port") is None
    # Server messages from a VM are not client messages.
    advertise = client_frame(ADVERTISE, option(2, SERVER_DUID))
    assert answer_dhcpv6(advertise, cloud(), "port-vm") is None


def test_fuzz_malformed_packets_never_raise() -> None:
    intent = cloud()
    rng = random.Random(546)
    seeds = [DHCLIENT_SOLICIT, DHCLIENT_INFO_REQUEST,
             client_frame(REQUEST, option(2, SERVER_DUID), ia_na(FIXED))]  # fmt: skip
    answered = 0
    for _ in range(5000):
        frame = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            # The UDP header, the DHCPv6 message and its option lengths.
            frame[rng.randrange(54, len(frame))] = rng.randrange(256)
        data = bytes(frame[: rng.randint(0, len(frame) + 8)])
        reply = answer_dhcpv6(data, intent, "port-vm")
        if reply is not None:
            answered += 1
            decode(reply)
        # Anywhere in the frame (addresses, lengths, ethertype): no exception.
        frame[rng.randrange(len(frame))] = rng.randrange(256)
        answer_dhcpv6(bytes(frame), intent, "port-vm")
    assert answered > 0  # the mutations leave some messages whole
