"""IPv6 framing, checked against packets the Linux kernel and ISC dhclient sent
(captured with tcpdump on a veth, 2026-11-21)."""

from __future__ import annotations

import ipaddress

from kumonet.dataplane.ipv6_frame import (
    NEXT_ICMPV6,
    NEXT_UDP,
    build_ipv6_frame,
    link_local,
    multicast_mac,
    parse_ipv6,
    upper_checksum,
)

# The kernel's router solicitation from a VM with MAC fa:16:3e:11:22:33.
KERNEL_RS = bytes.fromhex(
    "333300000002fa163e11223386dd6000000000103afffe80000000000000f8163efffe112233"
    "ff0200000000000000000000000000028500ca77000000000101fa163e112233"
)
# dhclient -6's Solicit from the same VM.
DHCLIENT_SOLICIT = bytes.fromhex(
    "333300010002fa163e11223386dd600eea18003c1101fe80000000000000f8163efffe112233"
    "ff02000000000000000000000001000202220223003c552f015bccb30001000e0001000132942cd3"
    "fa163e11223300060004001700180008000200000003000c3e11223300000e1000001518"
)


def test_link_local_is_the_kernels() -> None:
    assert link_local("fa:16:3e:11:22:33") == ipaddress.IPv6Address("fe80::f816:3eff:fe11:2233")
    assert link_local("02:6b:6e:00:00:01") == ipaddress.IPv6Address("fe80::6b:6eff:fe00:1")


def test_multicast_mac() -> None:
    assert multicast_mac(ipaddress.IPv6Address("ff02::1:2")) == "33:33:00:01:00:02"
    assert multicast_mac(ipaddress.IPv6Address("ff02::1")) == "33:33:00:00:00:01"


def test_parse_and_checksum_of_real_packets() -> None:
    rs = parse_ipv6(KERNEL_RS)
    assert rs is not None
    assert (rs.src_mac, rs.dst_mac) == ("fa:16:3e:11:22:33", "33:33:00:00:00:02")
    assert rs.src == ipaddress.IPv6Address("fe80::f816:3eff:fe11:2233")
    assert (rs.next_header, rs.hop_limit, len(rs.payload)) == (NEXT_ICMPV6, 255, 16)
    # A packet with a correct checksum sums to zero with it included.
    assert upper_checksum(rs.src, rs.dst, NEXT_ICMPV6, rs.payload) == 0
    solicit = parse_ipv6(DHCLIENT_SOLICIT)
    assert solicit is not None and solicit.next_header == NEXT_UDP
    # (Its UDP checksum is not checked: the veth offloads it, so tcpdump saw a
    # partial sum. The kernel computes ICMPv6 checksums itself, so the RS's holds.)
    assert (solicit.src, solicit.dst) == (rs.src, ipaddress.IPv6Address("ff02::1:2"))


def test_build_reproduces_the_kernels_frame() -> None:
    rs = parse_ipv6(KERNEL_RS)
    assert rs is not None
    blank = rs.payload[:2] + b"\x00\x00" + rs.payload[4:]
    rebuilt = build_ipv6_frame(
        src_mac=rs.src_mac, dst_mac=rs.dst_mac, src=rs.src, dst=rs.dst,
        next_header=NEXT_ICMPV6, payload=blank, hop_limit=255,
    )  # fmt: skip
    assert rebuilt == KERNEL_RS


def test_not_ipv6_or_truncated_is_none() -> None:
    assert parse_ipv6(b"") is None
    assert parse_ipv6(KERNEL_RS[:40]) is None  # header cut
    assert parse_ipv6(KERNEL_RS[:-1]) is None  # payload shorter than its length
    ipv4 = KERNEL_RS[:12] + b"\x08\x00" + KERNEL_RS[14:]
    assert parse_ipv6(ipv4) is None
    wrong_version = KERNEL_RS[:14] + b"\x40" + KERNEL_RS[15:]
    assert parse_ipv6(wrong_version) is None
    padded = parse_ipv6(KERNEL_RS + b"\x00" * 8)  # Ethernet padding is cut
    assert padded is not None and len(padded.payload) == 16
