"""IPv6 frames for the agent's responders, pure: parse a VM's frame, build a reply.

Shared by the router advertisement and DHCPv6 responders (`router_advert`,
`dhcpv6`).  Only what they need: Ethernet (optionally one VLAN tag), the fixed
IPv6 header with the upper-layer header directly after it (RS and DHCPv6
client messages carry no extension headers), upper-layer checksums.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from kumonet.dataplane.inet_checksum import checksum

ETH_IPV6 = 0x86DD
NEXT_UDP = 17
NEXT_ICMPV6 = 58
ALL_NODES = ipaddress.IPv6Address("ff02::1")
_IPV6 = struct.Struct("!IHBB16s16s")  # version/class/flow, payload length, next, hop limit
_CHECKSUM_AT = {NEXT_UDP: 6, NEXT_ICMPV6: 2}


@dataclass(frozen=True, slots=True)
class Ipv6Packet:
    """The parts of a received IPv6 frame the responders look at."""

    src_mac: str
    dst_mac: str
    src: ipaddress.IPv6Address
    dst: ipaddress.IPv6Address
    next_header: int
    hop_limit: int
    payload: bytes  # exactly the IPv6 payload length, trailing Ethernet padding cut


def mac_text(raw: bytes) -> str:
    return ":".join(f"{octet:02x}" for octet in raw)


def mac_bytes(text: str) -> bytes:
    raw = bytes(int(part, 16) for part in text.split(":"))
    if len(raw) != 6:
        raise ValueError(f"not a MAC: {text}")
    return raw


def link_local(mac: str) -> ipaddress.IPv6Address:
    """The modified EUI-64 link-local address of a MAC (RFC 4291 appendix A)."""
    raw = bytearray(mac_bytes(mac))
    raw[0] ^= 0x02
    return ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + raw[:3] + b"\xff\xfe" + raw[3:])


def multicast_mac(address: ipaddress.IPv6Address) -> str:
    """The Ethernet address of an IPv6 multicast group (RFC 2464 section 7)."""
    return mac_text(b"\x33\x33" + address.packed[12:])


def parse_ipv6(frame: bytes) -> Ipv6Packet | None:
    """The IPv6 packet in an Ethernet frame, or None if it is not a whole one."""
    if len(frame) < 14:
        return None
    ethertype, offset = int.from_bytes(frame[12:14], "big"), 14
    if ethertype == 0x8100:
        ethertype, offset = int.from_bytes(frame[16:18], "big"), 18
    if ethertype != ETH_IPV6 or len(frame) < offset + _IPV6.size:
        return None
    first, length, next_header, hop_limit, src, dst = _IPV6.unpack_from(frame, offset)
    if first >> 28 != 6:
        return None
    start = offset + _IPV6.size
    if len(frame) < start + length:
        return None
    return Ipv6Packet(
        src_mac=mac_text(frame[6:12]),
        dst_mac=mac_text(frame[0:6]),
        src=ipaddress.IPv6Address(src),
        dst=ipaddress.IPv6Address(dst),
        next_header=next_header,
        hop_limit=hop_limit,
        payload=frame[start : start + length],
    )


def upper_checksum(
    src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address, next_header: int, payload: bytes
) -> int:
    """The UDP/ICMPv6 checksum over the IPv6 pseudo-header (RFC 8200 section 8.1)."""
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(payload), next_header)
    return checksum(pseudo + payload)


def build_ipv6_frame(
    *,
    src_mac: str,
    dst_mac: str,
    src: ipaddress.IPv6Address,
    dst: ipaddress.IPv6Address,
    next_header: int,
    payload: bytes,
    hop_limit: int = 255,
) -> bytes:
    """An Ethernet + IPv6 frame around ``payload`` (UDP or ICMPv6, its checksum
    field zero), the checksum filled in."""
    at = _CHECKSUM_AT[next_header]
    value = upper_checksum(src, dst, next_header, payload)
    if next_header == NEXT_UDP and value == 0:
        value = 0xFFFF  # zero means "no checksum", which IPv6 forbids for UDP
    body = payload[:at] + struct.pack("!H", value) + payload[at + 2 :]
    header = _IPV6.pack(6 << 28, len(body), next_header, hop_limit, src.packed, dst.packed)
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack("!H", ETH_IPV6) + header + body
