"""IPv6 router advertisements, pure: a network's IPv6 subnets → the RA frame.

Each host's agent advertises for its own ports (distributed, like DHCPv4): it
answers a Router Solicitation from a local port (packet-in → `answer_router_solicitation`)
and sends unsolicited advertisements to its ports now and then and when a port
comes up (`unsolicited_router_advert`).  Neutron gets the same from radvd in the
router namespace, OVN from ovn-controller's ``put_nd_ra_opts``.

What is advertised follows Neutron's ``ipv6_ra_mode`` (the A/M/O flags of its
API reference; radvd's defaults for the lifetimes):

=================  ===  ===  ===
ipv6_ra_mode        A    M    O
=================  ===  ===  ===
slaac               1    0    0
dhcpv6-stateless    1    0    1
dhcpv6-stateful     0    1    1
unset               no advertisement: an external router sends them
=================  ===  ===  ===

One advertisement per network carries every subnet with an ``ipv6_ra_mode``:
a prefix information option each (L always, A as above), the network's MTU,
RDNSS (RFC 8106) for the subnets' IPv6 DNS servers, the source link-layer
address.  The router lifetime is non-zero only when a subnet has a gateway.

The source: the Neutron router port holding a subnet's gateway IP when there is
one (the VM's default route then points at that router's own link-local
address, which its namespace answers neighbour solicitations for), else the
responder's locally administered MAC (`DhcpSettings.server_mac`), the same on
every host so that every host's advertisements name the same router.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence

from kumonet.dataplane.dhcp import DhcpSettings
from kumonet.dataplane.intent import Intent, Network, Subnet
from kumonet.dataplane.ipv6_frame import (
    ALL_NODES,
    NEXT_ICMPV6,
    build_ipv6_frame,
    link_local,
    multicast_mac,
    parse_ipv6,
)

ROUTER_SOLICITATION, ROUTER_ADVERTISEMENT = 133, 134
SLAAC, STATEFUL, STATELESS = "slaac", "dhcpv6-stateful", "dhcpv6-stateless"
RA_MODES = (SLAAC, STATEFUL, STATELESS)

FLAG_MANAGED, FLAG_OTHER = 0x80, 0x40
PREFIX_ON_LINK, PREFIX_AUTONOMOUS = 0x80, 0x40
OPT_SOURCE_LL, OPT_PREFIX, OPT_MTU, OPT_RDNSS = 1, 3, 5, 25

CUR_HOP_LIMIT = 64
ROUTER_LIFETIME = 1800  # radvd's AdvDefaultLifetime: 3 × MaxRtrAdvInterval
VALID_LIFETIME = 86400  # radvd's AdvValidLifetime
PREFERRED_LIFETIME = 14400  # radvd's AdvPreferredLifetime
RDNSS_LIFETIME = 1800
_RA = struct.Struct("!BBHBBHII")  # type, code, checksum, hop limit, flags, lifetime, reach, retrans


def ra_subnets(intent: Intent, network_id: str) -> list[Subnet]:
    """The network's IPv6 subnets this agent advertises (``ipv6_ra_mode`` set), by id."""
    return [
        subnet
        for subnet in intent.subnets_of(network_id)
        if subnet.ip_version == 6 and subnet.ipv6_ra_mode in RA_MODES
    ]


def router_mac(intent: Intent, subnet: Subnet, default: str) -> str:
    """The MAC of the port holding the subnet's gateway IP (a router port), else ``default``."""
    if subnet.gateway_ip:
        gateway = ipaddress.ip_address(subnet.gateway_ip)
        for port in intent.ports.values():
            if port.network_id != subnet.network_id:
                continue
            for fixed in port.fixed_ips:
                if fixed.subnet_id == subnet.id and ipaddress.ip_address(fixed.ip_address) == (
                    gateway
                ):
                    return port.mac_address
    return default


def _option(kind: int, body: bytes) -> bytes:
    # Options are counted in units of 8 octets, type and length included.
    data = bytes((kind, 0)) + body
    data += bytes(-len(data) % 8)
    return data[:1] + bytes((len(data) // 8,)) + data[2:]


def advert_payload(subnets: Sequence[Subnet], *, mtu: int, source_mac: str) -> bytes:
    """The ICMPv6 router advertisement (checksum zero) for ``subnets``."""
    flags = 0
    lifetime = 0
    options = [_option(OPT_SOURCE_LL, bytes.fromhex(source_mac.replace(":", "")))]
    options.append(_option(OPT_MTU, struct.pack("!2xI", mtu)))
    dns: list[ipaddress.IPv6Address] = []
    for subnet in subnets:
        mode = subnet.ipv6_ra_mode
        if mode == STATEFUL:
            flags |= FLAG_MANAGED | FLAG_OTHER
        elif mode == STATELESS:
            flags |= FLAG_OTHER
        if subnet.gateway_ip:
            lifetime = ROUTER_LIFETIME
        prefix = ipaddress.IPv6Network(subnet.cidr)
        prefix_flags = PREFIX_ON_LINK | (PREFIX_AUTONOMOUS if mode != STATEFUL else 0)
        options.append(
            _option(
                OPT_PREFIX,
                struct.pack(
                    "!BBII4x16s",
                    prefix.prefixlen,
                    prefix_flags,
                    VALID_LIFETIME,
                    PREFERRED_LIFETIME,
                    prefix.network_address.packed,
                ),
            )
        )
        for server in subnet.dns_nameservers:
            address = ipaddress.ip_address(server)
            if isinstance(address, ipaddress.IPv6Address) and address not in dns:
                dns.append(address)
    if dns:
        body = struct.pack("!2xI", RDNSS_LIFETIME) + b"".join(a.packed for a in dns)
        options.append(_option(OPT_RDNSS, body))
    header = _RA.pack(ROUTER_ADVERTISEMENT, 0, 0, CUR_HOP_LIMIT, flags, lifetime, 0, 0)
    return header + b"".join(options)


def build_router_advert(
    intent: Intent,
    network: Network,
    *,
    dst_mac: str,
    dst: ipaddress.IPv6Address,
    settings: DhcpSettings | None = None,
) -> bytes | None:
    """The RA frame for ``network`` towards ``dst``, or None if nothing is advertised there."""
    settings = settings or DhcpSettings()
    subnets = ra_subnets(intent, network.id)
    if not subnets:
        return None
    # The router is the one holding a gateway: the first subnet with one decides.
    with_gateway = [subnet for subnet in subnets if subnet.gateway_ip] or subnets
    source_mac = router_mac(intent, with_gateway[0], settings.server_mac)
    payload = advert_payload(subnets, mtu=network.mtu, source_mac=source_mac)
    return build_ipv6_frame(
        src_mac=source_mac,
        dst_mac=dst_mac,
        src=link_local(source_mac),
        dst=dst,
        next_header=NEXT_ICMPV6,
        payload=payload,
    )


def is_router_solicitation(frame: bytes) -> tuple[str, ipaddress.IPv6Address] | None:
    """(source MAC, source address) of a valid Router Solicitation (RFC 4861 6.1.1), else None."""
    packet = parse_ipv6(frame)
    if packet is None or packet.next_header != NEXT_ICMPV6 or packet.hop_limit != 255:
        return None
    icmp = packet.payload
    if len(icmp) < 8 or icmp[0] != ROUTER_SOLICITATION or icmp[1] != 0:
        return None
    return packet.src_mac, packet.src


def answer_router_solicitation(
    frame: bytes, intent: Intent, port_id: str, settings: DhcpSettings | None = None
) -> bytes | None:
    """The RA answering a local port's Router Solicitation, or None if none is due."""
    solicitation = is_router_solicitation(frame)
    port = intent.ports.get(port_id)
    if solicitation is None or port is None:
        return None
    network = intent.networks.get(port.network_id)
    if network is None:
        return None
    src_mac, src = solicitation
    if src.is_unspecified:
        # RFC 4861 6.2.6: a solicitation from "::" is answered to all nodes.
        return build_router_advert(
            intent, network, dst_mac=multicast_mac(ALL_NODES), dst=ALL_NODES, settings=settings
        )
    return build_router_advert(intent, network, dst_mac=src_mac, dst=src, settings=settings)


def network_router_advert(
    intent: Intent, network_id: str, settings: DhcpSettings | None = None
) -> bytes | None:
    """The unsolicited, all-nodes RA of a network, or None if nothing is advertised there."""
    network = intent.networks.get(network_id)
    if network is None:
        return None
    return build_router_advert(
        intent, network, dst_mac=multicast_mac(ALL_NODES), dst=ALL_NODES, settings=settings
    )


def wants_unsolicited(intent: Intent, port_id: str) -> str | None:
    """The network whose RAs a local port gets, None for router ports (``network:*``:
    the routers themselves) and unknown ports."""
    port = intent.ports.get(port_id)
    if port is None or port.is_trusted:
        return None
    return port.network_id


def unsolicited_router_advert(
    intent: Intent, port_id: str, settings: DhcpSettings | None = None
) -> bytes | None:
    """The periodic, all-nodes RA for a local port's network, or None if none is due."""
    network_id = wants_unsolicited(intent, port_id)
    return None if network_id is None else network_router_advert(intent, network_id, settings)


def advert_inputs(intent: Intent) -> dict[str, tuple[int, tuple[Subnet, ...]]]:
    """Per network with something to advertise: what its RA is made of (MTU, subnets)
    but the router's MAC; the agent re-advertises a network at once when they change."""
    found: dict[str, list[Subnet]] = {}
    for subnet in intent.subnets.values():
        if subnet.ip_version == 6 and subnet.ipv6_ra_mode in RA_MODES:
            found.setdefault(subnet.network_id, []).append(subnet)
    return {
        network_id: (intent.networks[network_id].mtu, tuple(sorted(subnets, key=_by_id)))
        for network_id, subnets in found.items()
        if network_id in intent.networks
    }


def _by_id(subnet: Subnet) -> str:
    return subnet.id
