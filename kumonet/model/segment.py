"""Network types and segmentation ids: ML2's type drivers as configuration
and pure allocation decisions (the API commits them in a store transaction).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from kumonet.model.errors import BadRequest, ServiceUnavailable

NETWORK_TYPES = ("local", "flat", "vlan", "vxlan", "gre", "geneve")
TUNNEL_TYPES = frozenset({"vxlan", "gre", "geneve"})
# Encapsulation overhead Neutron subtracts from the physical MTU (IPv4 underlay).
TUNNEL_OVERHEAD = {"vxlan": 50, "gre": 42, "geneve": 50}
VLAN_RANGE = (1, 4094)
TUNNEL_ID_RANGE = {"vxlan": (1, 2**24 - 1), "gre": (1, 2**32 - 1), "geneve": (1, 2**24 - 1)}


@dataclass(frozen=True, slots=True)
class IdRange:
    low: int
    high: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.low <= value <= self.high


@dataclass(frozen=True, slots=True)
class TypeDriverConfig:
    """The ``[ml2]``/``[ml2_type_*]`` options that decide segments and MTU."""

    type_drivers: tuple[str, ...] = ("flat", "vlan", "vxlan", "gre")
    tenant_network_types: tuple[str, ...] = ("vxlan",)
    flat_networks: tuple[str, ...] = ("*",)
    # physnet -> ranges; a physnet with no ranges allows only explicit (admin) ids
    vlan_ranges: dict[str, tuple[IdRange, ...]] = field(default_factory=dict)
    tunnel_ranges: dict[str, tuple[IdRange, ...]] = field(
        default_factory=lambda: {"vxlan": (IdRange(1, 1000),), "gre": (IdRange(1, 1000),)})
    global_physnet_mtu: int = 1500
    path_mtu: int = 0

    def underlay_mtu(self) -> int:
        values = [m for m in (self.global_physnet_mtu, self.path_mtu) if m > 0]
        return min(values) if values else 1500

    def mtu_for(self, network_type: str) -> int:
        if network_type in TUNNEL_TYPES:
            return self.underlay_mtu() - TUNNEL_OVERHEAD[network_type]
        return self.global_physnet_mtu if self.global_physnet_mtu > 0 else 1500


@dataclass(frozen=True, slots=True)
class Segment:
    network_type: str
    physical_network: str | None
    segmentation_id: int | None

    def allocation_key_parts(self) -> tuple[str, str, str] | None:
        """The store key parts that make this segment exclusive, or None."""
        if self.network_type in ("local",):
            return None
        if self.network_type == "flat":
            return ("flat", self.physical_network or "-", "0")
        return (self.network_type, self.physical_network or "-", str(self.segmentation_id))


def validate_requested(config: TypeDriverConfig, segment: Segment) -> None:
    """Refuse an explicit provider segment the configuration does not allow."""
    kind = segment.network_type
    if kind not in config.type_drivers:
        raise BadRequest(f"Invalid input for operation: network_type value '{kind}' "
                         "not supported.", type_name="InvalidInput")
    if kind == "flat":
        if not segment.physical_network:
            raise _invalid("physical_network required for flat provider network")
        if segment.segmentation_id is not None:
            raise _invalid("segmentation_id prohibited for flat provider network")
        if "*" not in config.flat_networks and segment.physical_network not in \
                config.flat_networks:
            raise _invalid(f"physical_network '{segment.physical_network}' unknown for "
                           "flat provider network")
    elif kind == "vlan":
        if not segment.physical_network:
            raise _invalid("physical_network required for VLAN provider network")
        if segment.physical_network not in config.vlan_ranges:
            raise _invalid(f"physical_network '{segment.physical_network}' unknown for "
                           "VLAN provider network")
        if segment.segmentation_id is not None and not \
                VLAN_RANGE[0] <= segment.segmentation_id <= VLAN_RANGE[1]:
            raise _invalid(f"segmentation_id out of range ({VLAN_RANGE[0]} through "
                           f"{VLAN_RANGE[1]})")
    elif kind in TUNNEL_TYPES:
        if segment.physical_network:
            raise _invalid(f"provider:physical_network specified for {kind} network")
        low, high = TUNNEL_ID_RANGE[kind]
        if segment.segmentation_id is not None and not low <= segment.segmentation_id <= high:
            raise _invalid(f"segmentation_id out of range ({low} through {high})")
    elif segment.physical_network or segment.segmentation_id is not None:
        raise _invalid(f"physical_network and segmentation_id prohibited for {kind} network")


def _invalid(message: str) -> BadRequest:
    return BadRequest(f"Invalid input for operation: {message}.", type_name="InvalidInput")


def pool_of(config: TypeDriverConfig, network_type: str) -> list[tuple[str | None, IdRange]]:
    """The (physnet, range) pairs a tenant segment of this type is drawn from."""
    if network_type == "vlan":
        return [(phys, r) for phys, ranges in config.vlan_ranges.items() for r in ranges]
    if network_type in TUNNEL_TYPES:
        return [(None, r) for r in config.tunnel_ranges.get(network_type, ())]
    return []


def lowest_free_id(ranges: Iterable[IdRange], taken: Collection[int]) -> int | None:
    for id_range in ranges:
        for value in range(id_range.low, id_range.high + 1):
            if value not in taken:
                return value
    return None


def no_network_available() -> ServiceUnavailable:
    return ServiceUnavailable("Unable to create the network. No tenant network is available "
                              "for allocation.", type_name="NoNetworkAvailable")
