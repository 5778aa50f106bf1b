"""A router as one L3 host sees it: frozen values, and a converter from Neutron JSON.

`RouterIntent` carries everything the host needs to build the router's namespace:
its internal interfaces (one per router port on a project network, with the
subnets' gateway addresses), the gateway interface on the external network, the
floating IPs, the extra routes and, for HA routers, this host's HA port and VRRP
id. `router_from_neutron` builds it from the dicts the Neutron v2.0 API returns
(`GET /v2.0/routers/{id}`, `GET /v2.0/ports?device_id=...`, floating IPs,
subnets), so the agent stays a thin shell.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ROUTER_INTERFACE_OWNERS = (
    "network:router_interface",
    "network:router_interface_distributed",
    "network:ha_router_replicated_interface",
)
ROUTER_GATEWAY_OWNER = "network:router_gateway"
ROUTER_HA_OWNER = "network:router_ha_interface"

#: Neutron's HA network range (the seed's "169.254.192.0/18").
HA_NETWORK_CIDR = "169.254.192.0/18"

DEFAULT_MTU = 1500


class RouterIntentError(ValueError):
    """The Neutron data does not describe a router this host can build."""


@dataclass(frozen=True, slots=True)
class InternalInterface:
    """A router port on a project network; ``cidrs`` are ``gateway_ip/prefix`` per subnet."""

    port_id: str
    mac: str
    cidrs: tuple[str, ...]
    mtu: int = DEFAULT_MTU


@dataclass(frozen=True, slots=True)
class GatewayInterface:
    """The router's port on the external network.

    ``cidrs`` are its addresses (``203.0.113.101/24``); ``gateway_ips`` the external
    subnets' gateways (the default route's next hop, the first one wins).
    """

    port_id: str
    mac: str
    cidrs: tuple[str, ...]
    gateway_ips: tuple[str, ...] = ()
    enable_snat: bool = True
    mtu: int = DEFAULT_MTU

    @property
    def snat_ip(self) -> str | None:
        """The address project subnets are masqueraded to: the first IPv4 one."""
        for cidr in self.cidrs:
            iface = ipaddress.ip_interface(cidr)
            if iface.version == 4:
                return str(iface.ip)
        return None


@dataclass(frozen=True, slots=True)
class FloatingIp:
    """A 1:1 mapping between an external address and a VM's fixed address."""

    floating_ip: str
    fixed_ip: str


@dataclass(frozen=True, slots=True)
class ExtraRoute:
    destination: str
    nexthop: str


@dataclass(frozen=True, slots=True)
class HaInterface:
    """This host's HA port: its address (``169.254.192.7/18``) is the VRRP source."""

    port_id: str
    mac: str
    cidr: str
    mtu: int = DEFAULT_MTU


@dataclass(frozen=True, slots=True)
class HaSettings:
    """VRRP for one router: the id on the project's HA network, this host's HA port,
    and the other hosts' HA addresses (for inspection; VRRP itself uses multicast)."""

    vrrp_id: int
    interface: HaInterface
    peer_ips: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.vrrp_id <= 255:
            raise RouterIntentError(f"VRRP id {self.vrrp_id} outside 1..255")


@dataclass(frozen=True, slots=True)
class RouterIntent:
    id: str
    project_id: str = ""
    internal: tuple[InternalInterface, ...] = ()
    gateway: GatewayInterface | None = None
    floating_ips: tuple[FloatingIp, ...] = ()
    routes: tuple[ExtraRoute, ...] = ()
    ha: HaSettings | None = None
    admin_state_up: bool = True

    @property
    def is_ha(self) -> bool:
        return self.ha is not None


# -- Neutron JSON → intent ----------------------------------------------------


def _subnet_prefix(subnets: Mapping[str, Mapping[str, Any]], subnet_id: str) -> int:
    subnet = subnets.get(subnet_id)
    if subnet is None:
        raise RouterIntentError(f"subnet {subnet_id} of a router port is unknown")
    return ipaddress.ip_network(subnet["cidr"], strict=False).prefixlen


def _cidrs(port: Mapping[str, Any], subnets: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    return tuple(
        f"{fixed['ip_address']}/{_subnet_prefix(subnets, fixed['subnet_id'])}"
        for fixed in port.get("fixed_ips") or ()
    )


def _mtu(port: Mapping[str, Any], networks: Mapping[str, Mapping[str, Any]]) -> int:
    network = networks.get(port.get("network_id", ""))
    if network is None:
        return DEFAULT_MTU
    return int(network.get("mtu") or DEFAULT_MTU)


def router_from_neutron(
    router: Mapping[str, Any],
    ports: Iterable[Mapping[str, Any]],
    subnets: Iterable[Mapping[str, Any]],
    *,
    host: str,
    floatingips: Iterable[Mapping[str, Any]] = (),
    networks: Iterable[Mapping[str, Any]] = (),
    vrrp_id: int | None = None,
) -> RouterIntent:
    """Build the intent of ``router`` for ``host`` from Neutron API bodies.

    ``ports`` are the router's ports (``device_id`` = router id; others are
    ignored); ``subnets`` at least those the ports are on (for prefixes and the
    external gateway); ``networks`` give MTUs. For an HA router, this host's HA
    port is the ``network:router_ha_interface`` port bound to ``host``; the
    VRRP id is ``vrrp_id``, else the router's ``ha_vr_id``. Floating IPs count
    when associated with this router (``router_id``) and a fixed address.
    """
    router_id = router["id"]
    by_subnet = {s["id"]: s for s in subnets}
    by_network = {n["id"]: n for n in networks}
    internal: list[InternalInterface] = []
    gateway_port: Mapping[str, Any] | None = None
    ha_ports: list[Mapping[str, Any]] = []
    for port in sorted(ports, key=lambda p: str(p["id"])):
        if port.get("device_id") != router_id:
            continue
        owner = port.get("device_owner", "")
        if owner in ROUTER_INTERFACE_OWNERS:
            internal.append(
                InternalInterface(
                    port_id=port["id"],
                    mac=port["mac_address"],
                    cidrs=_cidrs(port, by_subnet),
                    mtu=_mtu(port, by_network),
                )
            )
        elif owner == ROUTER_GATEWAY_OWNER:
            gateway_port = port
        elif owner == ROUTER_HA_OWNER:
            ha_ports.append(port)

    gateway: GatewayInterface | None = None
    gateway_info = router.get("external_gateway_info") or None
    if gateway_info and gateway_port is not None:
        gateway_ips = tuple(
            str(by_subnet[f["subnet_id"]]["gateway_ip"])
            for f in gateway_port.get("fixed_ips") or ()
            if f["subnet_id"] in by_subnet and by_subnet[f["subnet_id"]].get("gateway_ip")
        )
        gateway = GatewayInterface(
            port_id=gateway_port["id"],
            mac=gateway_port["mac_address"],
            cidrs=_cidrs(gateway_port, by_subnet),
            gateway_ips=gateway_ips,
            enable_snat=bool(gateway_info.get("enable_snat", True)),
            mtu=_mtu(gateway_port, by_network),
        )

    ha: HaSettings | None = None
    if router.get("ha"):
        own = [p for p in ha_ports if p.get("binding:host_id") == host]
        if not own:
            raise RouterIntentError(f"HA router {router_id} has no HA port bound to {host}")
        mine = own[0]
        vr_id = vrrp_id if vrrp_id is not None else router.get("ha_vr_id")
        if vr_id is None:
            raise RouterIntentError(f"HA router {router_id} has no VRRP id")
        ha_cidrs = _ha_cidrs(mine, by_subnet)
        peers = tuple(
            str(fixed["ip_address"])
            for p in ha_ports
            if p is not mine
            for fixed in p.get("fixed_ips") or ()
        )
        ha = HaSettings(
            vrrp_id=int(vr_id),
            interface=HaInterface(
                port_id=mine["id"],
                mac=mine["mac_address"],
                cidr=ha_cidrs[0],
                mtu=_mtu(mine, by_network),
            ),
            peer_ips=peers,
        )

    return RouterIntent(
        id=router_id,
        project_id=router.get("project_id") or router.get("tenant_id") or "",
        internal=tuple(internal),
        gateway=gateway,
        floating_ips=_floating_ips(router_id, floatingips),
        routes=tuple(
            ExtraRoute(destination=r["destination"], nexthop=r["nexthop"])
            for r in router.get("routes") or ()
        ),
        ha=ha,
        admin_state_up=bool(router.get("admin_state_up", True)),
    )


def _ha_cidrs(port: Mapping[str, Any], subnets: Mapping[str, Mapping[str, Any]]) -> list[str]:
    fixed_ips = list(port.get("fixed_ips") or ())
    if not fixed_ips:
        raise RouterIntentError(f"HA port {port['id']} has no address")
    cidrs = []
    for fixed in fixed_ips:
        # The HA subnet may be hidden from the caller (it belongs to no project
        # in Neutron); its range is fixed, so fall back to it.
        if fixed["subnet_id"] in subnets:
            cidrs.append(f"{fixed['ip_address']}/{_subnet_prefix(subnets, fixed['subnet_id'])}")
        else:
            prefix = ipaddress.ip_network(HA_NETWORK_CIDR).prefixlen
            cidrs.append(f"{fixed['ip_address']}/{prefix}")
    return cidrs


def _floating_ips(
    router_id: str, floatingips: Iterable[Mapping[str, Any]]
) -> tuple[FloatingIp, ...]:
    found = {
        str(fip["floating_ip_address"]): str(fip["fixed_ip_address"])
        for fip in floatingips
        if fip.get("router_id") == router_id and fip.get("fixed_ip_address")
    }
    return tuple(FloatingIp(floating_ip=f, fixed_ip=x) for f, x in sorted(found.items()))
