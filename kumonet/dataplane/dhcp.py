"""DHCPv4 replies, pure: a client's frame + the port's intent → the reply frame.

The agent receives a DHCP client packet as a packet-in (the port is known from
the in_port), calls `answer_dhcp` (or `build_dhcp_reply`) and sends the bytes
it returns out of that port.  No I/O, no clock, no state: the lease is the
port's fixed IP, so every host can answer for its own ports (distributed DHCP).

Replies follow RFC 2131 and what Neutron's dnsmasq gives a VM: OFFER for a
DISCOVER, ACK for a REQUEST of the port's address, NAK for a REQUEST of any
other address, nothing for a subnet with DHCP disabled, a MAC that is not the
port's, or a REQUEST that chose another server.  Options: subnet mask (1),
router (3), DNS (6), host name (12), domain (15), broadcast (28), MTU (26),
lease (51), server id (54), renewal/rebinding (58/59), classless static routes
(121, with the default route as dnsmasq adds it when host routes exist).

The encoding is written out here: it is short, and os-ken's packet classes
(used by the tests to parse the replies back) would cost more than building
the few hundred bytes ourselves.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from kumonet.dataplane.inet_checksum import checksum
from kumonet.dataplane.intent import Intent, Port, Subnet

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
SERVER_PORT, CLIENT_PORT = 67, 68
MAGIC_COOKIE = b"\x63\x82\x53\x63"
BROADCAST_FLAG = 0x8000
_BOOTP = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
_MIN_BOOTP = 300  # RFC 1542: some clients drop shorter BOOTP messages

OPT_PAD, OPT_END = 0, 255
OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME, OPT_DOMAIN = 1, 3, 6, 12, 15
OPT_MTU, OPT_BROADCAST, OPT_REQUESTED_IP, OPT_LEASE_TIME = 26, 28, 50, 51
OPT_MESSAGE_TYPE, OPT_SERVER_ID, OPT_MESSAGE, OPT_RENEWAL, OPT_REBINDING = 53, 54, 56, 58, 59
OPT_CLASSLESS_ROUTES = 121


@dataclass(frozen=True, slots=True)
class DhcpSettings:
    """The responder's configuration (from the agent's config file)."""

    # Locally administered and outside base_mac (fa:16:3e): never a port's MAC.
    server_mac: str = "02:6b:6e:00:00:01"
    lease_time: int = 86400  # Neutron's dhcp_lease_duration default
    domain: str = "openstacklocal"  # Neutron's dns_domain default


@dataclass(frozen=True, slots=True)
class DhcpRequest:
    """The fields of a client message the responder looks at."""

    src_mac: str
    xid: int
    flags: int
    ciaddr: str
    giaddr: str
    chaddr: str
    message_type: int
    requested_ip: str | None
    server_id: str | None


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{octet:02x}" for octet in raw)


def _mac_bytes(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def _ip4(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


def parse_dhcp_request(frame: bytes) -> DhcpRequest | None:
    """The client message in an Ethernet frame, or None if it is not one."""
    try:
        return _parse(frame)
    except (struct.error, IndexError, ValueError):
        return None


def _parse(frame: bytes) -> DhcpRequest | None:
    ethertype = int.from_bytes(frame[12:14], "big")
    offset = 14
    if ethertype == 0x8100:
        ethertype, offset = int.from_bytes(frame[16:18], "big"), 18
    if ethertype != 0x0800:
        return None
    ihl = (frame[offset] & 0x0F) * 4
    if frame[offset] >> 4 != 4 or frame[offset + 9] != 17:
        return None
    udp = offset + ihl
    if int.from_bytes(frame[udp + 2 : udp + 4], "big") != SERVER_PORT:
        return None
    bootp = udp + 8
    (op, _htype, hlen, _hops, xid, _secs, flags, ciaddr, _yiaddr, _siaddr, giaddr, chaddr, *_) = (
        _BOOTP.unpack_from(frame, bootp)
    )
    options_at = bootp + _BOOTP.size
    if op != 1 or frame[options_at : options_at + 4] != MAGIC_COOKIE:
        return None
    options = _parse_options(frame[options_at + 4 :])
    message_type = options.get(OPT_MESSAGE_TYPE, b"")
    if len(message_type) != 1:
        return None
    requested = options.get(OPT_REQUESTED_IP)
    server_id = options.get(OPT_SERVER_ID)
    return DhcpRequest(
        src_mac=_mac_text(frame[6:12]),
        xid=xid,
        flags=flags,
        ciaddr=_ip4(ciaddr),
        giaddr=_ip4(giaddr),
        chaddr=_mac_text(chaddr[: min(hlen, 16)]),
        message_type=message_type[0],
        requested_ip=_ip4(requested) if requested and len(requested) == 4 else None,
        server_id=_ip4(server_id) if server_id and len(server_id) == 4 else None,
    )


def _parse_options(data: bytes) -> dict[int, bytes]:
    options: dict[int, bytes] = {}
    index = 0
    while index < len(data):
        tag = data[index]
        if tag == OPT_END:
            break
        if tag == OPT_PAD:
            index += 1
            continue
        length = data[index + 1]
        value = data[index + 2 : index + 2 + length]
        # RFC 3396: a repeated option continues the previous one.
        options[tag] = options.get(tag, b"") + value
        index += 2 + length
    return options


def server_address(subnet: Subnet) -> str:
    """The server identifier: the subnet's gateway, else its first host address."""
    if subnet.gateway_ip:
        return subnet.gateway_ip
    return str(next(ipaddress.IPv4Network(subnet.cidr).hosts()))


def classless_routes(subnet: Subnet) -> bytes:
    """Option 121's value: the host routes, then the default route via the gateway."""
    routes: list[tuple[ipaddress.IPv4Network, str]] = []
    for route in subnet.host_routes:
        destination = ipaddress.ip_network(route.destination, strict=False)
        if isinstance(destination, ipaddress.IPv4Network):
            routes.append((destination, route.nexthop))
    default = ipaddress.IPv4Network("0.0.0.0/0")
    # With option 121 the client ignores option 3 (RFC 3442), so the default
    # route must be in it; dnsmasq does the same for Neutron subnets.
    if subnet.gateway_ip and all(dest != default for dest, _ in routes):
        routes.append((default, subnet.gateway_ip))
    encoded = bytearray()
    for destination, nexthop in routes:
        significant = (destination.prefixlen + 7) // 8
        encoded.append(destination.prefixlen)
        encoded += destination.network_address.packed[:significant]
        encoded += ipaddress.IPv4Address(nexthop).packed
    return bytes(encoded)


def _option(tag: int, value: bytes) -> bytes:
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [b""]
    return b"".join(bytes((tag, len(chunk))) + chunk for chunk in chunks)


def _options(
    reply_type: int, port_ip: str | None, subnet: Subnet, *, server: str, mtu: int,
    settings: DhcpSettings,
) -> bytes:  # fmt: skip
    pack = ipaddress.IPv4Address
    parts = [
        _option(OPT_MESSAGE_TYPE, bytes((reply_type,))),
        _option(OPT_SERVER_ID, pack(server).packed),
    ]
    if reply_type == NAK:
        return b"".join([*parts, _option(OPT_MESSAGE, b"wrong address")])
    network = ipaddress.IPv4Network(subnet.cidr)
    if reply_type != ACK or port_ip is not None:
        lease = settings.lease_time
        parts += [
            _option(OPT_LEASE_TIME, struct.pack("!I", lease)),
            _option(OPT_RENEWAL, struct.pack("!I", lease // 2)),
            _option(OPT_REBINDING, struct.pack("!I", lease * 7 // 8)),
        ]
    parts += [
        _option(OPT_SUBNET_MASK, network.netmask.packed),
        _option(OPT_BROADCAST, network.broadcast_address.packed),
    ]
    if subnet.gateway_ip:
        parts.append(_option(OPT_ROUTER, pack(subnet.gateway_ip).packed))
    dns = [pack(s).packed for s in subnet.dns_nameservers if ipaddress.ip_address(s).version == 4]
    if dns:
        parts.append(_option(OPT_DNS, b"".join(dns)))
    if port_ip:
        parts.append(_option(OPT_HOSTNAME, f"host-{port_ip.replace('.', '-')}".encode()))
    if settings.domain:
        parts.append(_option(OPT_DOMAIN, settings.domain.encode()))
    parts.append(_option(OPT_MTU, struct.pack("!H", mtu)))
    if subnet.host_routes:
        parts.append(_option(OPT_CLASSLESS_ROUTES, classless_routes(subnet)))
    return b"".join(parts)


def _frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, payload: bytes) -> bytes:
    src, dst = ipaddress.IPv4Address(src_ip).packed, ipaddress.IPv4Address(dst_ip).packed
    udp_length = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_length)
    udp_header = struct.pack("!HHHH", SERVER_PORT, CLIENT_PORT, udp_length, 0)
    udp_checksum = checksum(pseudo + udp_header + payload) or 0xFFFF
    udp = struct.pack("!HHHH", SERVER_PORT, CLIENT_PORT, udp_length, udp_checksum) + payload
    ip_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
    ip_header = ip_header[:10] + struct.pack("!H", checksum(ip_header)) + ip_header[12:]
    return _mac_bytes(dst_mac) + _mac_bytes(src_mac) + b"\x08\x00" + ip_header + udp


def _port_ip(port: Port, subnet: Subnet) -> str | None:
    for fixed in port.fixed_ips:
        if fixed.subnet_id == subnet.id:
            return fixed.ip_address
    return None


def build_dhcp_reply(
    frame: bytes, port: Port, subnet: Subnet, *, mtu: int, settings: DhcpSettings | None = None
) -> bytes | None:
    """The reply frame to a client's DHCP frame from `port`, or None if none is due."""
    settings = settings or DhcpSettings()
    if not subnet.enable_dhcp or subnet.ip_version != 4:
        return None
    request = parse_dhcp_request(frame)
    # Only the port's own MAC gets an address, whatever MAC a spoofer puts in chaddr.
    if request is None or request.chaddr != port.mac_address:
        return None
    port_ip = _port_ip(port, subnet)
    if port_ip is None:
        return None
    server = server_address(subnet)
    yiaddr: str | None = port_ip
    if request.message_type == DISCOVER:
        reply_type = OFFER
    elif request.message_type == REQUEST:
        if request.server_id is not None and request.server_id != server:
            return None  # the client chose another server's offer
        wanted = request.requested_ip or request.ciaddr
        reply_type = ACK if wanted == port_ip else NAK
    elif request.message_type == INFORM:
        reply_type, yiaddr = ACK, None  # configuration only, no lease (RFC 2131 3.4)
    else:
        return None  # DECLINE, RELEASE: nothing to answer; the address is the port's
    if reply_type == NAK:
        yiaddr = None
    bootp = _BOOTP.pack(
        2, 1, 6, 0, request.xid, 0, request.flags,
        ipaddress.IPv4Address(request.ciaddr).packed,
        ipaddress.IPv4Address(yiaddr or "0.0.0.0").packed,
        ipaddress.IPv4Address(server if reply_type != NAK else "0.0.0.0").packed,
        ipaddress.IPv4Address(request.giaddr).packed,
        _mac_bytes(request.chaddr).ljust(16, b"\x00"),
        b"", b"",
    )  # fmt: skip
    options = _options(reply_type, yiaddr, subnet, server=server, mtu=mtu, settings=settings)
    payload = bootp + MAGIC_COOKIE + options + bytes((OPT_END,))
    payload = payload.ljust(_MIN_BOOTP, b"\x00")
    # RFC 2131 4.1: NAKs and replies to clients asking for broadcast are
    # broadcast; a renewing client (ciaddr set) gets unicast to ciaddr; else
    # unicast to the offered address and the client's MAC, which the VM accepts.
    if reply_type == NAK or request.flags & BROADCAST_FLAG:
        dst_mac, dst_ip = "ff:ff:ff:ff:ff:ff", "255.255.255.255"
    elif request.ciaddr != "0.0.0.0":
        dst_mac, dst_ip = request.chaddr, request.ciaddr
    else:
        dst_mac, dst_ip = request.chaddr, yiaddr or "255.255.255.255"
    return _frame(settings.server_mac, dst_mac, server, dst_ip, payload)


def dhcp_subnet(intent: Intent, port: Port) -> Subnet | None:
    """The DHCP-enabled IPv4 subnet the port has an address on (first fixed IP wins)."""
    for fixed in port.fixed_ips:
        subnet = intent.subnets.get(fixed.subnet_id)
        if subnet is not None and subnet.ip_version == 4 and subnet.enable_dhcp:
            return subnet
    return None


def answer_dhcp(
    frame: bytes, intent: Intent, port_id: str, settings: DhcpSettings | None = None
) -> bytes | None:
    """The reply for a frame a local port sent (the agent knows the port from in_port)."""
    port = intent.ports.get(port_id)
    if port is None:
        return None
    subnet = dhcp_subnet(intent, port)
    network = intent.networks.get(port.network_id)
    if subnet is None or network is None:
        return None
    return build_dhcp_reply(frame, port, subnet, mtu=network.mtu, settings=settings)


def port_for_ofport(local_ofports: Iterable[tuple[str, int]], in_port: int) -> str | None:
    """The port id behind a packet-in's in_port (from `HostFacts.local_ofports.items()`)."""
    for port_id, ofport in local_ofports:
        if ofport == in_port:
            return port_id
    return None
