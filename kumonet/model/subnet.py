"""The Neutron subnet resource and its pure validation: CIDR, gateway and
allocation pools, as Neutron decides them."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from kumonet.model import converters as c
from kumonet.model.common import base_attributes
from kumonet.model.errors import BadRequest, Conflict
from kumonet.model.ipam import Pool, pool_overlap
from kumonet.model.resource import Attribute, Default, ResourceDefinition

IPV6_MODES = ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")
# Address modes where a port's address comes from its MAC (EUI-64).
AUTO_ADDRESS_MODES = frozenset({"slaac", "dhcpv6-stateless"})

allocation_pool = c.record({"start": c.ip_address, "end": c.ip_address}, {})
host_route = c.record({"destination": c.cidr, "nexthop": c.ip_address}, {})

SUBNET = ResourceDefinition("subnets", "subnet", (
    *base_attributes(),
    Attribute("network_id", c.uuid, default=Default.REQUIRED, on_update=False),
    Attribute("ip_version", c.ip_version, default=Default.REQUIRED, on_update=False),
    # Not required: Neutron's answer to a missing cidr names subnet pools.
    Attribute("cidr", c.subnet_cidr, on_update=False),
    Attribute("gateway_ip", c.nullable(c.ip_address)),
    Attribute("allocation_pools", c.list_of(allocation_pool), filterable=False,
              sortable=False),
    Attribute("dns_nameservers", c.list_of(c.ip_address, unique=True), default=[],
              sortable=False),
    Attribute("host_routes", c.list_of(host_route), default=[], filterable=False,
              sortable=False),
    Attribute("enable_dhcp", c.to_bool, default=True),
    Attribute("ipv6_ra_mode", c.nullable(c.one_of(*IPV6_MODES)), default=None,
              on_update=False),
    Attribute("ipv6_address_mode", c.nullable(c.one_of(*IPV6_MODES)), default=None,
              on_update=False),
    Attribute("subnetpool_id", c.one_of(None), default=None, on_update=False),
    Attribute("service_types", c.list_of(c.string(255)), default=[], on_update=False,
              filterable=False, sortable=False),
    # subnet-external-network: the network's flag, computed when read.
    Attribute("router:external", c.to_bool, on_create=False, on_update=False,
              sortable=False),
))


def is_auto_address(subnet: dict[str, Any]) -> bool:
    """An IPv6 subnet whose ports take EUI-64 addresses (Neutron looks at
    either mode)."""
    return subnet.get("ip_version") == 6 and (
        subnet.get("ipv6_address_mode") in AUTO_ADDRESS_MODES
        or subnet.get("ipv6_ra_mode") in AUTO_ADDRESS_MODES)


def _invalid(message: str) -> BadRequest:
    return BadRequest(f"Invalid input for operation: {message}.", type_name="InvalidInput")


def usable_range(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int]:
    """First and last address a host may have (IPv4 keeps network and
    broadcast addresses out, except on /31 and /32)."""
    first, last = int(network.network_address), int(network.broadcast_address)
    if network.version == 4 and network.prefixlen < 31:
        return first + 1, last - 1
    if network.version == 6 and network.prefixlen < 127:
        # The subnet-router anycast address is reserved too.
        return first + 1, last
    return first, last


def default_pools(network: ipaddress.IPv4Network | ipaddress.IPv6Network,
                  gateway: int | None) -> list[Pool]:
    first, last = usable_range(network)
    if gateway is None or not first <= gateway <= last:
        return [Pool(first, last)] if first <= last else []
    pools = []
    if first <= gateway - 1:
        pools.append(Pool(first, gateway - 1))
    if gateway + 1 <= last:
        pools.append(Pool(gateway + 1, last))
    return pools


def pools_to_json(pools: Iterable[Pool], version: int) -> list[dict[str, str]]:
    return [p.to_json(version) for p in pools]


def pools_from_json(raw: Iterable[dict[str, str]]) -> list[Pool]:
    return [Pool(int(ipaddress.ip_address(p["start"])), int(ipaddress.ip_address(p["end"])))
            for p in raw]


def check_gateway(network: ipaddress.IPv4Network | ipaddress.IPv6Network,
                  gateway: str | None) -> int | None:
    if gateway is None:
        return None
    address = ipaddress.ip_address(gateway)
    # Neutron accepts a gateway outside the subnet (reached by an on-link
    # route); only the subnet's own network and broadcast addresses are refused.
    if address.version != network.version:
        raise _invalid(f"Gateway is not valid on subnet {network}")
    value = int(address)
    if network.version == 4 and network.prefixlen < 31 and value in (
            int(network.network_address), int(network.broadcast_address)):
        raise _invalid(f"Gateway is not valid on subnet {network}")
    return value


def check_pools(network: ipaddress.IPv4Network | ipaddress.IPv6Network, pools: list[Pool],
                gateway: int | None) -> list[Pool]:
    first, last = usable_range(network)
    for pool in pools:
        if pool.start > pool.end or not first <= pool.start <= last or \
                not first <= pool.end <= last:
            raise BadRequest(f"The allocation pool {pool.to_text(network.version)} spans "
                             f"beyond the subnet cidr {network}.",
                             type_name="OutOfBoundsAllocationPool")
    overlap = pool_overlap(pools)
    if overlap is not None:
        a, b = overlap
        raise Conflict(f"Found overlapping allocation pools: {a.to_text(network.version)} and "
                       f"{b.to_text(network.version)} for subnet {network}.",
                       type_name="OverlappingAllocationPools")
    if gateway is not None:
        for pool in pools:
            if pool.start <= gateway <= pool.end:
                raise Conflict(f"Gateway ip {ipaddress.ip_address(gateway)} conflicts with "
                               f"allocation pool {pool.to_text(network.version)}.",
                               type_name="GatewayConflictWithAllocationPools")
    return sorted(pools)


def plan_subnet(attrs: dict[str, Any]) -> dict[str, Any]:
    """The subnet's address fields as Neutron fills them in: gateway (first
    address unless given or null), pools (default around the gateway or
    explicit, validated), IPv6 modes only on IPv6."""
    if "cidr" not in attrs:
        raise BadRequest("Bad subnets request: a subnetpool must be specified in the absence "
                         "of a cidr.", type_name="BadRequest")
    network = ipaddress.ip_network(attrs["cidr"])
    version = attrs["ip_version"]
    if network.version != version:
        raise _invalid(f"cidr '{network}' does not match the ip_version '{version}'")
    if version == 4 and (attrs.get("ipv6_ra_mode") or attrs.get("ipv6_address_mode")):
        raise _invalid("ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is "
                       "set to False or ip_version is 4")
    ra, mode = attrs.get("ipv6_ra_mode"), attrs.get("ipv6_address_mode")
    if ra and mode and ra != mode:
        raise _invalid(f"ipv6_ra_mode set to '{ra}' with ipv6_address_mode set to '{mode}' "
                       "is not valid. If both attributes are set, they must be the same value")
    if "gateway_ip" in attrs:
        gateway = check_gateway(network, attrs["gateway_ip"])
    elif version == 6:
        # Neutron's IPv6 default: the subnet-router anycast address (the
        # network address), so the pool starts right after it.
        gateway = int(network.network_address)
    else:
        first, last = usable_range(network)
        gateway = first if first <= last else None
    for server in attrs.get("dns_nameservers", []):
        if ipaddress.ip_address(server).version != version:
            raise _invalid(f"dns_nameserver {server} does not match the ip_version")
    for route in attrs.get("host_routes", []):
        if ipaddress.ip_network(route["destination"]).version != version or \
                ipaddress.ip_address(route["nexthop"]).version != version:
            raise _invalid(f"host_route {route} does not match the ip_version")
    if "allocation_pools" in attrs:
        pools = check_pools(network, pools_from_json(attrs["allocation_pools"]), gateway)
    else:
        pools = default_pools(network, gateway)
    return {
        "cidr": str(network),
        "gateway_ip": None if gateway is None else str(ipaddress.ip_address(gateway)),
        "allocation_pools": pools_to_json(pools, version),
    }


def cidr_overlaps(cidr: str, others: Iterable[str]) -> bool:
    network = ipaddress.ip_network(cidr)
    for other in others:
        candidate = ipaddress.ip_network(other)
        if candidate.version == network.version and network.overlaps(candidate):
            return True
    return False
