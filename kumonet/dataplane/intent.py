"""What a host must realise (intent) and what it has (facts), as frozen values.

`Intent` is the cloud-wide part the agent watches: networks, subnets, ports and
hosts (host name → tunnel IP, so a port's `binding:host_id` says where it
lives).  `HostFacts` is what the agent reads from its own OVS: which ofport
each local port and tunnel/patch port got, bridge names and mappings.
`from_neutron` turns Neutron v2.0 API JSON dicts (as `GET /v2.0/ports` returns
them) into an `Intent`, so the agent's code stays a thin shell.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NETWORK_TYPES = ("flat", "vlan", "vxlan", "gre")
TUNNEL_TYPES = ("vxlan", "gre")


@dataclass(frozen=True, slots=True)
class Network:
    id: str
    network_type: str
    segmentation_id: int | None = None
    physical_network: str | None = None
    mtu: int = 1500
    admin_state_up: bool = True

    @property
    def is_tunneled(self) -> bool:
        return self.network_type in TUNNEL_TYPES

    @property
    def is_provider(self) -> bool:
        return self.network_type in ("flat", "vlan")


@dataclass(frozen=True, slots=True)
class HostRoute:
    destination: str
    nexthop: str


@dataclass(frozen=True, slots=True)
class Subnet:
    id: str
    network_id: str
    cidr: str
    ip_version: int = 4
    gateway_ip: str | None = None
    enable_dhcp: bool = True
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[HostRoute, ...] = ()
    # Neutron's values ("slaac", "dhcpv6-stateful", "dhcpv6-stateless") or None.
    ipv6_ra_mode: str | None = None
    ipv6_address_mode: str | None = None


@dataclass(frozen=True, slots=True)
class FixedIp:
    subnet_id: str
    ip_address: str


@dataclass(frozen=True, slots=True)
class AddressPair:
    """An allowed address pair: an address or CIDR the port may also send from, with a MAC."""

    ip_address: str
    mac_address: str


@dataclass(frozen=True, slots=True)
class Port:
    id: str
    network_id: str
    mac_address: str
    fixed_ips: tuple[FixedIp, ...] = ()
    allowed_address_pairs: tuple[AddressPair, ...] = ()
    port_security_enabled: bool = True
    admin_state_up: bool = True
    device_owner: str = ""
    host: str = ""
    security_groups: tuple[str, ...] = ()

    @property
    def is_trusted(self) -> bool:
        """Neutron's trusted ports (device_owner `network:*`, e.g. router interfaces)
        forward other hosts' traffic, so no port security applies to them."""
        return self.device_owner.startswith("network:")

    @property
    def enforces_port_security(self) -> bool:
        return self.port_security_enabled and not self.is_trusted

    def member_addresses(self) -> tuple[str, ...]:
        """What a remote-group rule naming one of this port's groups matches: its
        fixed IPs and its allowed address pairs (addresses or CIDRs), deduplicated."""
        # Called for every port of the cloud on each compile: plain addresses are
        # taken as they are (OVS parses them); only CIDRs go through ipaddress.
        found = [fixed.ip_address for fixed in self.fixed_ips]
        for pair in self.allowed_address_pairs:
            text = pair.ip_address
            found.append(_normalise_address(text) if "/" in text else text)
        return tuple(dict.fromkeys(found))

    def macs(self) -> tuple[str, ...]:
        """The MACs this port may send from: its own first, then the pairs', deduplicated."""
        seen = [self.mac_address]
        for pair in self.allowed_address_pairs:
            if pair.mac_address not in seen:
                seen.append(pair.mac_address)
        return tuple(seen)

    def addresses_by_mac(self) -> dict[str, list[str]]:
        """Source addresses (IP or CIDR) allowed with each MAC: fixed IPs with the port's MAC."""
        allowed: dict[str, list[str]] = {mac: [] for mac in self.macs()}
        for fixed in self.fixed_ips:
            _append_new(allowed[self.mac_address], fixed.ip_address)
        for pair in self.allowed_address_pairs:
            _append_new(allowed[pair.mac_address], _normalise_address(pair.ip_address))
        return allowed


def _append_new(values: list[str], value: str) -> None:
    if value not in values:
        values.append(value)


def _normalise_address(text: str) -> str:
    """`10.0.0.5/32` → `10.0.0.5`; `10.0.0.0/24` stays a CIDR (host bits cleared)."""
    net = ipaddress.ip_network(text, strict=False)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


DIRECTIONS = ("ingress", "egress")
ETHERTYPES = ("IPv4", "IPv6")
# IANA protocol names Neutron accepts in rules, with their numbers.
PROTOCOL_NUMBERS: Mapping[str, int] = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1,
    "igmp": 2, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58,
    "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89,
    "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class SecurityGroupRule:
    """One Neutron security group rule, normalised.

    `protocol` is the IP protocol number (None: any); for ICMP and ICMPv6,
    `port_range_min`/`port_range_max` are the ICMP type and code, as in the API.
    An IPv6 rule for ICMP (1) means ICMPv6 (58), as Neutron's drivers read it.
    """

    id: str
    direction: str  # "ingress" | "egress"
    ethertype: str = "IPv4"  # "IPv4" | "IPv6"
    protocol: int | None = None
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None

    @property
    def is_ipv6(self) -> bool:
        return self.ethertype == "IPv6"


@dataclass(frozen=True, slots=True)
class SecurityGroup:
    id: str
    rules: tuple[SecurityGroupRule, ...] = ()
    stateful: bool = True


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    tunnel_ip: str


@dataclass(frozen=True)
class Intent:
    """The cloud-wide intent the agent watches; treat the mappings as read-only."""

    networks: Mapping[str, Network] = field(default_factory=dict)
    subnets: Mapping[str, Subnet] = field(default_factory=dict)
    ports: Mapping[str, Port] = field(default_factory=dict)
    hosts: Mapping[str, Host] = field(default_factory=dict)
    security_groups: Mapping[str, SecurityGroup] = field(default_factory=dict)

    def subnets_of(self, network_id: str) -> list[Subnet]:
        return [s for s in self.subnets.values() if s.network_id == network_id]


@dataclass(frozen=True)
class HostFacts:
    """What this host has, read from its OVS by the agent.

    Tunnel ofports are keyed by tunnel port name (`tunnel_port_name`), not by
    remote IP alone: a host using both vxlan and gre has two ports per remote.
    """

    host: str
    tunnel_ip: str | None = None
    tunnel_types: tuple[str, ...] = ("vxlan",)
    local_ofports: Mapping[str, int] = field(default_factory=dict)  # port id → ofport
    tunnel_ofports: Mapping[str, int] = field(default_factory=dict)  # port name → ofport
    patch_ofports: Mapping[str, int] = field(default_factory=dict)  # physnet → br-int ofport
    integration_bridge: str = "br-int"
    bridge_mappings: Mapping[str, str] = field(default_factory=dict)  # physnet → bridge
    # A setting rather than a fact: broadcast ARP requests for a known port's
    # address go to that port alone instead of being flooded (compiler.py).
    direct_arp_requests: bool = False


def tunnel_port_name(tunnel_type: str, remote_ip: str) -> str:
    """`vxlan-192.0.2.12`: the name of this host's tunnel port to a remote host."""
    return f"{tunnel_type}-{remote_ip}"


def network_key(network_id: str) -> int:
    """A stable 64-bit key for a network, held in `metadata` through the pipeline.

    Derived from the id alone, so it never changes when other networks come
    and go (a per-host counter would shift keys, cookies and installed flows).
    """
    key = int.from_bytes(hashlib.blake2b(network_id.encode(), digest_size=8).digest(), "big")
    return key or 1


# ------------------------------------------------------------ from Neutron


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def network_from_neutron(body: Mapping[str, Any]) -> Network:
    return Network(
        id=body["id"],
        network_type=body.get("provider:network_type") or "vxlan",
        segmentation_id=_optional_int(body.get("provider:segmentation_id")),
        physical_network=body.get("provider:physical_network"),
        mtu=int(body.get("mtu") or 1500),
        admin_state_up=bool(body.get("admin_state_up", True)),
    )


def subnet_from_neutron(body: Mapping[str, Any]) -> Subnet:
    return Subnet(
        id=body["id"],
        network_id=body["network_id"],
        cidr=body["cidr"],
        ip_version=int(body.get("ip_version") or ipaddress.ip_network(body["cidr"]).version),
        gateway_ip=body.get("gateway_ip"),
        enable_dhcp=bool(body.get("enable_dhcp", True)),
        dns_nameservers=tuple(body.get("dns_nameservers") or ()),
        host_routes=tuple(
            HostRoute(route["destination"], route["nexthop"])
            for route in body.get("host_routes") or ()
        ),
        ipv6_ra_mode=body.get("ipv6_ra_mode") or None,
        ipv6_address_mode=body.get("ipv6_address_mode") or None,
    )


def port_from_neutron(body: Mapping[str, Any]) -> Port:
    mac = str(body["mac_address"]).lower()
    security = body.get("port_security_enabled")
    return Port(
        id=body["id"],
        network_id=body["network_id"],
        mac_address=mac,
        fixed_ips=tuple(
            FixedIp(fixed["subnet_id"], fixed["ip_address"])
            for fixed in body.get("fixed_ips") or ()
        ),
        allowed_address_pairs=tuple(
            AddressPair(pair["ip_address"], str(pair.get("mac_address") or mac).lower())
            for pair in body.get("allowed_address_pairs") or ()
        ),
        # Absent when the port-security extension is off: Neutron then does not filter.
        port_security_enabled=True if security is None else bool(security),
        admin_state_up=bool(body.get("admin_state_up", True)),
        device_owner=body.get("device_owner") or "",
        host=body.get("binding:host_id") or "",
        security_groups=tuple(body.get("security_groups") or ()),
    )


def protocol_number(value: Any, ethertype: str = "IPv4") -> int | None:
    """A rule's protocol (name, number or number as text; None/"any" = any) as a number."""
    if value is None:
        return None
    text = str(value).lower()
    if text == "any":
        return None
    number = PROTOCOL_NUMBERS[text] if text in PROTOCOL_NUMBERS else int(text)
    if not 0 <= number <= 255:
        raise ValueError(f"protocol out of range: {value}")
    if number == 1 and ethertype == "IPv6":
        return 58
    return number


def security_group_rule_from_neutron(body: Mapping[str, Any]) -> SecurityGroupRule:
    direction = body["direction"]
    if direction not in DIRECTIONS:
        raise ValueError(f"direction {direction!r}")
    ethertype = body.get("ethertype") or "IPv4"
    if ethertype not in ETHERTYPES:
        raise ValueError(f"ethertype {ethertype!r}")
    prefix = body.get("remote_ip_prefix")
    if prefix is not None:
        network = ipaddress.ip_network(prefix, strict=False)
        if f"IPv{network.version}" != ethertype:
            raise ValueError(f"remote_ip_prefix {prefix} is not {ethertype}")
        prefix = str(network)
    return SecurityGroupRule(
        id=body["id"],
        direction=direction,
        ethertype=ethertype,
        protocol=protocol_number(body.get("protocol"), ethertype),
        port_range_min=_optional_int(body.get("port_range_min")),
        port_range_max=_optional_int(body.get("port_range_max")),
        remote_ip_prefix=prefix,
        remote_group_id=body.get("remote_group_id"),
    )


def security_group_from_neutron(body: Mapping[str, Any]) -> SecurityGroup:
    """A group from its stored Neutron JSON, which embeds its rules
    (`security_group_rules`); rules are sorted by id, so the value does not
    depend on the order they were added in."""
    rules = sorted(
        (security_group_rule_from_neutron(rule) for rule in body.get("security_group_rules") or ()),
        key=lambda rule: rule.id,
    )
    stateful = body.get("stateful")
    return SecurityGroup(
        id=body["id"], rules=tuple(rules), stateful=True if stateful is None else bool(stateful)
    )


def hosts_from_agents(agents: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """host → tunnel IP from Neutron agent dicts (`configurations.tunneling_ip`)."""
    hosts: dict[str, str] = {}
    for agent in agents:
        tunnel_ip = (agent.get("configurations") or {}).get("tunneling_ip")
        if tunnel_ip and agent.get("host"):
            hosts[agent["host"]] = tunnel_ip
    return hosts


def from_neutron(
    networks: Iterable[Mapping[str, Any]],
    subnets: Iterable[Mapping[str, Any]],
    ports: Iterable[Mapping[str, Any]],
    hosts: Mapping[str, str] | Iterable[Host] = (),
    security_groups: Iterable[Mapping[str, Any]] = (),
) -> Intent:
    """An `Intent` from Neutron API JSON (the `networks`/`subnets`/`ports` lists
    and `security_groups`, each with its `security_group_rules`).

    `hosts` maps host name → tunnel IP (or is a list of `Host`).
    """
    host_list = (
        [Host(name, ip) for name, ip in hosts.items()] if isinstance(hosts, Mapping) else hosts
    )
    return Intent(
        networks={n.id: n for n in map(network_from_neutron, networks)},
        subnets={s.id: s for s in map(subnet_from_neutron, subnets)},
        ports={p.id: p for p in map(port_from_neutron, ports)},
        hosts={h.name: h for h in host_list},
        security_groups={g.id: g for g in map(security_group_from_neutron, security_groups)},
    )
