"""DHCPv6 replies, pure: a client's frame + the port's intent → the reply frame.

Like DHCPv4 (`dhcp`), each host's agent answers its own ports (packet-in from
UDP 546→547) with `answer_dhcpv6`; the lease is the port's fixed IPv6 address,
so there is no lease state and no single server.

What a subnet gets (RFC 8415; Neutron's dnsmasq for the same modes), with the
DHCPv6 mode being ``ipv6_address_mode``, else ``ipv6_ra_mode``:

- ``dhcpv6-stateful``: Solicit → Advertise (Reply at once with Rapid Commit
  when the client asks for it), Request/Renew/Rebind → Reply, each with IA_NA
  carrying the port's fixed addresses on such subnets; Confirm → Success or
  NotOnLink; Release/Decline → Success; Information-request → Reply.
- ``dhcpv6-stateless``: Information-request → Reply; nothing else.
- ``slaac``, unset, or ``enable_dhcp`` false: nothing.

Every reply carries the server id (DUID-LL of `DhcpSettings.server_mac`: the
same on every host, so a client renewing through another host's agent after a
migration still matches), the client's id, DNS servers (option 23) and the
domain search list (24).  A message naming another server is ignored, a
malformed one too; nothing here raises on bad input.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from kumonet.dataplane.dhcp import DhcpSettings
from kumonet.dataplane.intent import Intent, Port, Subnet
from kumonet.dataplane.ipv6_frame import NEXT_UDP, build_ipv6_frame, link_local, parse_ipv6

CLIENT_PORT, SERVER_PORT = 546, 547
(
    SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY, RELEASE, DECLINE,
    RECONFIGURE, INFORMATION_REQUEST,
) = range(1, 12)  # fmt: skip
OPT_CLIENTID, OPT_SERVERID, OPT_IA_NA, OPT_IA_TA, OPT_IAADDR, OPT_ORO = 1, 2, 3, 4, 5, 6
OPT_PREFERENCE, OPT_ELAPSED_TIME, OPT_STATUS_CODE, OPT_RAPID_COMMIT = 7, 8, 13, 14
OPT_DNS_SERVERS, OPT_DOMAIN_LIST = 23, 24
STATUS_SUCCESS, STATUS_NOT_ON_LINK = 0, 4
DUID_LL, HW_ETHERNET = 3, 1
STATEFUL, STATELESS = "dhcpv6-stateful", "dhcpv6-stateless"
_OPTION = struct.Struct("!HH")
_IA_NA = struct.Struct("!III")  # IAID, T1, T2
_IAADDR = struct.Struct("!16sII")  # address, preferred lifetime, valid lifetime


@dataclass(frozen=True, slots=True)
class Dhcpv6Request:
    """The parts of a client message the responder looks at."""

    src_mac: str
    src: ipaddress.IPv6Address
    message_type: int
    transaction_id: bytes
    client_id: bytes
    server_id: bytes | None
    ia_na: tuple[tuple[int, tuple[ipaddress.IPv6Address, ...]], ...]  # (IAID, addresses)
    rapid_commit: bool


def iter_options(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(code, value) of each option; raises ValueError on a truncated one."""
    at = 0
    while at < len(data):
        if at + _OPTION.size > len(data):
            raise ValueError("truncated option header")
        code, length = _OPTION.unpack_from(data, at)
        at += _OPTION.size
        if at + length > len(data):
            raise ValueError("truncated option")
        yield code, data[at : at + length]
        at += length


def _ia_addresses(value: bytes) -> tuple[int, tuple[ipaddress.IPv6Address, ...]]:
    if len(value) < _IA_NA.size:
        raise ValueError("short IA_NA")
    iaid, _t1, _t2 = _IA_NA.unpack_from(value)
    addresses = []
    for code, inner in iter_options(value[_IA_NA.size :]):
        if code == OPT_IAADDR:
            if len(inner) < _IAADDR.size:
                raise ValueError("short IAADDR")
            addresses.append(ipaddress.IPv6Address(inner[:16]))
    return iaid, tuple(addresses)


def parse_dhcpv6_request(frame: bytes) -> Dhcpv6Request | None:
    """The client message in an Ethernet frame, or None if it is not a well-formed one."""
    try:
        return _parse(frame)
    except (struct.error, IndexError, ValueError):
        return None


def _parse(frame: bytes) -> Dhcpv6Request | None:
    packet = parse_ipv6(frame)
    if packet is None or packet.next_header != NEXT_UDP or len(packet.payload) < 12:
        return None
    src_port, dst_port, length = struct.unpack_from("!HHH", packet.payload)
    if dst_port != SERVER_PORT or src_port != CLIENT_PORT or length < 12:
        return None
    message = packet.payload[8:length]
    if len(message) != length - 8:
        return None
    client_id: bytes | None = None
    server_id: bytes | None = None
    ia_na: list[tuple[int, tuple[ipaddress.IPv6Address, ...]]] = []
    rapid_commit = False
    for code, value in iter_options(message[4:]):
        if code == OPT_CLIENTID:
            client_id = value
        elif code == OPT_SERVERID:
            server_id = value
        elif code == OPT_IA_NA:
            ia_na.append(_ia_addresses(value))
        elif code == OPT_RAPID_COMMIT:
            rapid_commit = True
    message_type = message[0]
    # RFC 8415 16: every client message but Information-request carries a client id.
    if client_id is None and message_type != INFORMATION_REQUEST:
        return None
    return Dhcpv6Request(
        src_mac=packet.src_mac,
        src=packet.src,
        message_type=message_type,
        transaction_id=message[1:4],
        client_id=client_id or b"",
        server_id=server_id,
        ia_na=tuple(ia_na),
        rapid_commit=rapid_commit,
    )


def server_duid(settings: DhcpSettings) -> bytes:
    """DUID-LL (RFC 8415 11.4) of the responder's MAC."""
    return struct.pack("!HH", DUID_LL, HW_ETHERNET) + bytes.fromhex(
        settings.server_mac.replace(":", "")
    )


def dhcpv6_mode(subnet: Subnet) -> str | None:
    """The DHCPv6 service a subnet gets: "dhcpv6-stateful", "dhcpv6-stateless" or None."""
    if subnet.ip_version != 6 or not subnet.enable_dhcp:
        return None
    mode = subnet.ipv6_address_mode or subnet.ipv6_ra_mode
    return mode if mode in (STATEFUL, STATELESS) else None


def dhcpv6_subnets(intent: Intent, network_id: str) -> list[Subnet]:
    """The network's subnets with a DHCPv6 service."""
    return [s for s in intent.subnets_of(network_id) if dhcpv6_mode(s) is not None]


def _option(code: int, value: bytes) -> bytes:
    return _OPTION.pack(code, len(value)) + value


def _status(code: int, text: str) -> bytes:
    return _option(OPT_STATUS_CODE, struct.pack("!H", code) + text.encode())


def _domain_list(domain: str) -> bytes:
    # RFC 1035 wire format, uncompressed (RFC 8415 10).
    labels = [label for label in domain.split(".") if label]
    return b"".join(bytes((len(label),)) + label.encode() for label in labels) + b"\x00"


def _stateful_addresses(port: Port, subnets: list[Subnet]) -> list[ipaddress.IPv6Address]:
    stateful = {s.id for s in subnets if dhcpv6_mode(s) == STATEFUL}
    return [
        ipaddress.IPv6Address(fixed.ip_address)
        for fixed in port.fixed_ips
        if fixed.subnet_id in stateful
    ]


def _ia_na(iaid: int, addresses: list[ipaddress.IPv6Address], lease: int) -> bytes:
    inner = b"".join(
        _option(OPT_IAADDR, _IAADDR.pack(address.packed, lease, lease)) for address in addresses
    )
    if not addresses:
        inner = _status(2, "no addresses for this port")  # NoAddrsAvail
        return _option(OPT_IA_NA, _IA_NA.pack(iaid, 0, 0) + inner)
    return _option(OPT_IA_NA, _IA_NA.pack(iaid, lease // 2, lease * 4 // 5) + inner)


def build_dhcpv6_reply(
    frame: bytes, port: Port, subnets: list[Subnet], *, settings: DhcpSettings | None = None
) -> bytes | None:
    """The reply frame to a client's DHCPv6 frame from ``port``, whose network has the
    DHCPv6 ``subnets``; None if none is due."""
    settings = settings or DhcpSettings()
    request = parse_dhcpv6_request(frame)
    if request is None or request.src_mac != port.mac_address or not subnets:
        return None
    duid = server_duid(settings)
    kind = request.message_type
    if request.server_id is not None and request.server_id != duid:
        return None  # the client talks to another server (RFC 8415 18.4)
    stateful = any(dhcpv6_mode(s) == STATEFUL for s in subnets)
    if kind in (REQUEST, RENEW, RELEASE, DECLINE) and request.server_id is None:
        return None  # these must name their server (RFC 8415 16.4, 16.6, 16.9, 16.10)
    if kind == SOLICIT and request.server_id is not None:
        return None  # RFC 8415 16.2
    if kind != INFORMATION_REQUEST and not stateful:
        return None
    lease = settings.lease_time
    addresses = _stateful_addresses(port, subnets)
    reply_type = REPLY
    body: list[bytes] = []
    if kind in (SOLICIT, REQUEST, RENEW, REBIND):
        if kind == SOLICIT and not request.rapid_commit:
            reply_type = ADVERTISE
            body.append(_option(OPT_PREFERENCE, b"\xff"))  # take this one, don't wait
        elif kind == SOLICIT:
            body.append(_option(OPT_RAPID_COMMIT, b""))
        # Every IA the client asked for gets the port's addresses: they are one VM's.
        body += [_ia_na(iaid, addresses, lease) for iaid, _ in request.ia_na]
    elif kind == CONFIRM:
        networks = [ipaddress.IPv6Network(s.cidr) for s in subnets if dhcpv6_mode(s) == STATEFUL]
        asked = [address for _, ia in request.ia_na for address in ia]
        if not asked:
            return None  # RFC 8415 18.3.3: nothing to confirm, no reply
        on_link = all(any(address in net for net in networks) for address in asked)
        body.append(
            _status(STATUS_SUCCESS, "on link")
            if on_link
            else _status(STATUS_NOT_ON_LINK, "not on link")
        )
    elif kind in (RELEASE, DECLINE):
        # The address stays the port's (Neutron's IPAM owns it): acknowledge only.
        body.append(_status(STATUS_SUCCESS, "ok"))
    elif kind != INFORMATION_REQUEST:
        return None  # Advertise, Reply, Reconfigure, relay messages: not a client's
    if kind not in (RELEASE, DECLINE):
        dns: list[ipaddress.IPv6Address] = []
        for subnet in subnets:
            for server in subnet.dns_nameservers:
                address = ipaddress.ip_address(server)
                if isinstance(address, ipaddress.IPv6Address) and address not in dns:
                    dns.append(address)
        if dns:
            body.append(_option(OPT_DNS_SERVERS, b"".join(a.packed for a in dns)))
        if settings.domain:
            body.append(_option(OPT_DOMAIN_LIST, _domain_list(settings.domain)))
    options = _option(OPT_SERVERID, duid)
    if request.client_id:
        options += _option(OPT_CLIENTID, request.client_id)
    message = bytes((reply_type,)) + request.transaction_id + options + b"".join(body)
    udp = struct.pack("!HHHH", SERVER_PORT, CLIENT_PORT, 8 + len(message), 0) + message
    return build_ipv6_frame(
        src_mac=settings.server_mac,
        dst_mac=request.src_mac,
        src=link_local(settings.server_mac),
        dst=request.src,
        next_header=NEXT_UDP,
        payload=udp,
        hop_limit=64,
    )


def answer_dhcpv6(
    frame: bytes, intent: Intent, port_id: str, settings: DhcpSettings | None = None
) -> bytes | None:
    """The reply for a DHCPv6 frame a local port sent (the agent knows the port from in_port)."""
    port = intent.ports.get(port_id)
    if port is None:
        return None
    subnets = dhcpv6_subnets(intent, port.network_id)
    if not subnets:
        return None
    return build_dhcpv6_reply(frame, port, subnets, settings=settings)
