"""The Neutron router resource (with the ext-gw-mode, extraroute, l3-ha and
dvr extensions folded in) and its pure checks.

The stored router also keeps, for agents and for the API's own checks, two
keys no client sees (they are not attributes, so views drop them):
``gw_port_id`` and ``interfaces`` (``[{"port_id", "network_id",
"fixed_ips": [{"subnet_id", "ip_address", "cidr"}]}]``). Interface changes
rewrite the router under its revision, so two requests adding interfaces to
one router serialise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from kumonet.model import converters as c
from kumonet.model.common import admin_only, base_attributes
from kumonet.model.errors import BadRequest, Conflict, NotFound
from kumonet.model.resource import Attribute, ResourceDefinition

DEVICE_OWNER_ROUTER_INTERFACE = "network:router_interface"
DEVICE_OWNER_ROUTER_GATEWAY = "network:router_gateway"
DEVICE_OWNER_HA_INTERFACE = "network:router_ha_interface"
DEVICE_OWNER_DVR_INTERFACE = "network:router_interface_distributed"
ROUTER_INTERFACE_OWNERS = frozenset({DEVICE_OWNER_ROUTER_INTERFACE, DEVICE_OWNER_DVR_INTERFACE,
                                     DEVICE_OWNER_HA_INTERFACE})
MAX_ROUTES = 30  # Neutron's max_routes default

route = c.record({"destination": c.cidr, "nexthop": c.ip_address}, {})
external_fixed_ip = c.record({}, {"subnet_id": c.uuid, "ip_address": c.ip_address})
gateway_info = c.record({}, {"network_id": c.uuid, "enable_snat": c.to_bool,
                             "external_fixed_ips": c.list_of(external_fixed_ip)})


def external_gateway_info(value: Any) -> dict[str, Any] | None:
    """``{}`` and null both clear the gateway."""
    if value is None:
        return None
    info = gateway_info(value)
    if not info:
        return None
    if "network_id" not in info:
        raise BadRequest("Invalid input for external_gateway_info. Reason: Validation of "
                         "dictionary's keys failed. Expected keys: {'network_id'}.",
                         type_name="HTTPBadRequest")
    return dict(info)


ROUTER = ResourceDefinition("routers", "router", (
    *base_attributes(),
    Attribute("admin_state_up", c.to_bool, default=True),
    Attribute("status", c.string(16), on_create=False, on_update=False),
    Attribute("external_gateway_info", external_gateway_info, default=None,
              filterable=False, sortable=False),
    Attribute("routes", c.list_of(route), default=[], on_create=False, filterable=False,
              sortable=False),
    admin_only(Attribute("ha", c.to_bool)),
    admin_only(Attribute("distributed", c.to_bool)),
    Attribute("flavor_id", c.one_of(None), default=None, on_update=False),
    Attribute("availability_zone_hints", c.list_of(c.string(255)), default=[],
              on_update=False, filterable=False, sortable=False),
    Attribute("availability_zones", c.list_of(c.string(255)), on_create=False,
              on_update=False, filterable=False, sortable=False),
))

# Members may name the external network; SNAT and fixed IPs are the
# admin's (Neutron's policy on external_gateway_info sub-attributes).
ADMIN_ONLY_GATEWAY_KEYS = ("enable_snat", "external_fixed_ips")


def bad_router_request(message: str) -> BadRequest:
    return BadRequest(f"Bad router request: {message}.", type_name="BadRequest")


def interface_cidrs(router: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(subnet_id, cidr) of every interface of the router."""
    return [(ip["subnet_id"], ip["cidr"]) for itf in router.get("interfaces", ())
            for ip in itf["fixed_ips"]]


def check_no_overlap(router: Mapping[str, Any], subnets: Iterable[Mapping[str, Any]]) -> None:
    """A router joins subnets that do not overlap, and each once."""
    current = interface_cidrs(router)
    for subnet in subnets:
        new = ipaddress.ip_network(subnet["cidr"])
        for sid, cidr in current:
            if sid == subnet["id"]:
                raise bad_router_request(f"Router already has a port on subnet {sid}")
            other = ipaddress.ip_network(cidr)
            if other.version == new.version and other.overlaps(new):
                raise bad_router_request(
                    f"Cidr {subnet['cidr']} of subnet {subnet['id']} overlaps with cidr "
                    f"{cidr} of subnet {sid}")


def check_routes(routes: Iterable[Mapping[str, str]], router: Mapping[str, Any],
                 gateway_cidrs: Iterable[str], own_addresses: Iterable[str]) -> None:
    """Each nexthop must be on a subnet the router is attached to (and not
    one of the router's own addresses)."""
    routes = list(routes)
    if len(routes) > MAX_ROUTES:
        raise BadRequest(f"Unable to complete operation for {router['id']}. The number of "
                         f"routes exceeds the maximum {MAX_ROUTES}.",
                         type_name="RoutesExhausted")
    cidrs = [ipaddress.ip_network(cidr) for _, cidr in interface_cidrs(router)]
    cidrs += [ipaddress.ip_network(cidr) for cidr in gateway_cidrs]
    own = set(own_addresses)
    for entry in routes:
        nexthop = ipaddress.ip_address(entry["nexthop"])
        if ipaddress.ip_network(entry["destination"]).version != nexthop.version:
            raise invalid_routes(entry, "the nexthop does not match the destination's "
                                        "IP version")
        if not any(nexthop in cidr for cidr in cidrs):
            raise invalid_routes(entry, "the nexthop is not connected with router")
        if str(nexthop) in own:
            raise invalid_routes(entry, "the nexthop is used by router")


def invalid_routes(entry: Mapping[str, str], reason: str) -> BadRequest:
    return BadRequest(f"Invalid format for routes: [{dict(entry)}], {reason}",
                      type_name="InvalidRoutes")


def routes_using(routes: Iterable[Mapping[str, str]], cidr: str) -> list[Mapping[str, str]]:
    network = ipaddress.ip_network(cidr)
    return [r for r in routes if ipaddress.ip_address(r["nexthop"]) in network]


def interface_not_found(router_id: str, port_id: str) -> NotFound:
    return NotFound(f"Router {router_id} does not have an interface with id {port_id}",
                    type_name="RouterInterfaceNotFound")


def interface_not_found_for_subnet(router_id: str, subnet_id: str) -> NotFound:
    return NotFound(f"Router {router_id} has no interface on subnet {subnet_id}",
                    type_name="RouterInterfaceNotFoundForSubnet")


def router_in_use(router_id: str, reason: str = "still has ports") -> Conflict:
    return Conflict(f"Router {router_id} {reason}", type_name="RouterInUse")


def interface_info(router: Mapping[str, Any], port: Mapping[str, Any],
                   subnet_id: str) -> dict[str, Any]:
    """The body ``add_router_interface``/``remove_router_interface`` answer."""
    # Neutron's answer has project_id but no tenant_id.
    return {"id": router["id"], "project_id": router["tenant_id"], "port_id": port["id"],
            "network_id": port["network_id"], "subnet_id": subnet_id,
            "subnet_ids": [ip["subnet_id"] for ip in port["fixed_ips"]]}
