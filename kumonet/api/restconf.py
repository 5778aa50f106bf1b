"""The RESTCONF view of the Neutron config tree, as OpenDaylight serves it.

Seed 000 checks replication by reading the config datastore on every
member::

    curl -u admin:admin http://MEMBER:8181/restconf/config/neutron:neutron/

kumonet answers the same paths from its store, in the JSON shape of ODL's
neutron YANG models (``neutron.yang`` with ``neutron-networks``,
``neutron-provider-ext``, ``neutron-L3-ext``, ``neutron-subnets``,
``neutron-ports``, ``neutron-binding``, ``neutron-portsecurity``,
``neutron-L3``, ``neutron-secgroups``): dashed names, ``uuid`` for ids,
tenant ids as dashed UUIDs, identities such as
``neutron-networks:network-type-vxlan`` and the segmentation id as a string.

Paths (every member serves all of them; reads may be stale when the store
cluster has no majority, and then say so in ``X-Kumonet-Stale``)::

    GET /restconf/config/neutron:neutron/
    GET /restconf/config/neutron:neutron/{networks|subnets|ports|routers|
        floatingips|security-groups|security-rules}/
    GET /restconf/config/neutron:neutron/networks/network/{uuid}/  (one item)

These routes authenticate themselves with HTTP basic auth, as ODL does
(:class:`BasicAuth`, ``admin:admin`` by default); the API's identity
middleware leaves paths under :data:`SELF_AUTHENTICATED_PREFIXES` to them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from kumonet.api.neutron.resource import json_response
from kumonet.api.repository import Repository, Resource

SELF_AUTHENTICATED_PREFIXES = ("/restconf/", "/controller/nb/")
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """ODL's northbound credentials. ``required=False`` (the noauth server)
    also lets requests without credentials through; wrong ones never."""

    username: str = "admin"
    password: str = "admin"
    required: bool = False

    def check(self, request: web.Request) -> None:
        header = request.headers.get("Authorization")
        if header is None:
            if self.required:
                raise _unauthorized()
            return
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            raise _unauthorized()
        try:
            user, sep, password = base64.b64decode(encoded.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _unauthorized() from None
        good_user = hmac.compare_digest(user.encode(), self.username.encode())
        good_password = hmac.compare_digest(password.encode(), self.password.encode())
        if not (sep and good_user and good_password):
            raise _unauthorized()


def _unauthorized() -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="opendaylight"'})


def yang_uuid(value: str | None) -> str | None:
    """Keystone's 32-hex ids as the dashed UUIDs ODL's ``yang:uuid`` wants."""
    if not value:
        return None
    if _HEX32.match(value):
        v = value.lower()
        return f"{v[:8]}-{v[8:12]}-{v[12:16]}-{v[16:20]}-{v[20:]}"
    return value


def _compact(item: dict[str, Any]) -> dict[str, Any]:
    """YANG JSON leaves out leaves without a value."""
    return {k: v for k, v in item.items() if v is not None and v != []}


def _base(resource: Resource) -> dict[str, Any]:
    return {
        "uuid": resource["id"],
        "name": resource.get("name"),
        "tenant-id": yang_uuid(resource.get("tenant_id")),
    }


def network_item(network: Resource) -> dict[str, Any]:
    segmentation = network.get("provider:segmentation_id")
    network_type = network.get("provider:network_type")
    return _compact({
        **_base(network),
        "admin-state-up": network.get("admin_state_up"),
        "shared": network.get("shared"),
        "status": network.get("status"),
        "neutron-L3-ext:external": network.get("router:external", False),
        "neutron-provider-ext:network-type":
            f"neutron-networks:network-type-{network_type}" if network_type else None,
        "neutron-provider-ext:segmentation-id":
            str(segmentation) if segmentation is not None else None,
        "neutron-provider-ext:physical-network": network.get("provider:physical_network"),
        "mtu": network.get("mtu"),
    })


def _ipv6_mode(value: str | None) -> str | None:
    return f"neutron-constants:{value}" if value else None


def subnet_item(subnet: Resource) -> dict[str, Any]:
    return _compact({
        **_base(subnet),
        "network-id": subnet.get("network_id"),
        "ip-version": f"neutron-constants:ip-version-v{subnet.get('ip_version', 4)}",
        "cidr": subnet.get("cidr"),
        "gateway-ip": subnet.get("gateway_ip"),
        "enable-dhcp": subnet.get("enable_dhcp"),
        "ipv6-address-mode": _ipv6_mode(subnet.get("ipv6_address_mode")),
        "ipv6-ra-mode": _ipv6_mode(subnet.get("ipv6_ra_mode")),
        "allocation-pools": [{"start": p["start"], "end": p["end"]}
                             for p in subnet.get("allocation_pools") or ()],
        "dns-nameservers": list(subnet.get("dns_nameservers") or ()),
        "host-routes": [{"destination": r["destination"], "nexthop": r["nexthop"]}
                        for r in subnet.get("host_routes") or ()],
    })


def _fixed_ips(ips: Sequence[Mapping[str, str]] | None) -> list[dict[str, str]]:
    return [{"subnet-id": ip["subnet_id"], "ip-address": ip["ip_address"]} for ip in ips or ()]


def port_item(port: Resource) -> dict[str, Any]:
    details = port.get("binding:vif_details") or {}
    profile = port.get("binding:profile")
    return _compact({
        **_base(port),
        "network-id": port.get("network_id"),
        "admin-state-up": port.get("admin_state_up"),
        "status": port.get("status"),
        "mac-address": port.get("mac_address"),
        "fixed-ips": _fixed_ips(port.get("fixed_ips")),
        "device-id": port.get("device_id") or None,
        "device-owner": port.get("device_owner") or None,
        "security-groups": list(port.get("security_groups") or ()),
        "allowed-address-pairs": [{"ip-address": p["ip_address"],
                                   "mac-address": p.get("mac_address")}
                                  for p in port.get("allowed_address_pairs") or ()],
        "neutron-binding:host-id": port.get("binding:host_id") or None,
        "neutron-binding:vif-type": port.get("binding:vif_type"),
        "neutron-binding:vnic-type": port.get("binding:vnic_type"),
        "neutron-binding:vif-details": [{"details-key": k, "value": str(v)}
                                        for k, v in sorted(details.items())],
        # ODL keeps the profile as the JSON string networking-odl sends.
        "neutron-binding:profile": _json_text(profile) if profile else None,
        "neutron-portsecurity:port-security-enabled": port.get("port_security_enabled"),
    })


def _json_text(value: object) -> str:
    return orjson.dumps(value).decode()


def router_item(router: Resource) -> dict[str, Any]:
    gateway = router.get("external_gateway_info")
    return _compact({
        **_base(router),
        "admin-state-up": router.get("admin_state_up"),
        "status": router.get("status"),
        "distributed": router.get("distributed"),
        "gateway-port-id": router.get("gw_port_id"),
        "external-gateway-info": _compact({
            "external-network-id": gateway.get("network_id"),
            "enable-snat": gateway.get("enable_snat"),
            "external-fixed-ips": _fixed_ips(gateway.get("external_fixed_ips")),
        }) if gateway else None,
        "routes": [{"destination": r["destination"], "nexthop": r["nexthop"]}
                   for r in router.get("routes") or ()],
    })


def floatingip_item(floatingip: Resource) -> dict[str, Any]:
    return _compact({
        "uuid": floatingip["id"],
        "tenant-id": yang_uuid(floatingip.get("tenant_id")),
        "floating-network-id": floatingip.get("floating_network_id"),
        "floating-ip-address": floatingip.get("floating_ip_address"),
        "fixed-ip-address": floatingip.get("fixed_ip_address"),
        "port-id": floatingip.get("port_id"),
        "router-id": floatingip.get("router_id"),
        "status": floatingip.get("status"),
    })


def security_group_item(group: Resource) -> dict[str, Any]:
    return _compact({**_base(group), "description": group.get("description") or None})


_PROTOCOLS = frozenset(("icmp", "tcp", "udp", "icmpv6"))


def security_rule_item(rule: Resource) -> dict[str, Any]:
    protocol = rule.get("protocol")
    if isinstance(protocol, str) and protocol.lower() in _PROTOCOLS:
        protocol = f"neutron-constants:protocol-{protocol.lower()}"
    ethertype = str(rule.get("ethertype", "IPv4")).lower()
    return _compact({
        "uuid": rule["id"],
        "tenant-id": yang_uuid(rule.get("tenant_id")),
        "security-group-id": rule.get("security_group_id"),
        "direction": f"neutron-constants:direction-{rule.get('direction', 'ingress')}",
        "ethertype": f"neutron-constants:ethertype-{ethertype}",
        "protocol": protocol,
        "port-range-min": rule.get("port_range_min"),
        "port-range-max": rule.get("port_range_max"),
        "remote-ip-prefix": rule.get("remote_ip_prefix"),
        "remote-group-id": rule.get("remote_group_id"),
    })


@dataclass(frozen=True, slots=True)
class YangList:
    """One container of ``neutron:neutron``: its name, its list's name, the
    repository it reads and how an item is shown."""

    container: str
    item: str
    repository: Repository
    render: Callable[[Resource], dict[str, Any]]

    async def items(self) -> list[dict[str, Any]]:
        return [self.render(r) for r in await self.repository.all()]


class RestconfView:
    """``GET /restconf/config/neutron:neutron/...`` (a ``RouteProvider``)."""

    def __init__(self, lists: Sequence[YangList], auth: BasicAuth) -> None:
        self.lists = {yang_list.container: yang_list for yang_list in lists}
        self.auth = auth

    def add_routes(self, app: web.Application) -> None:
        root = "/restconf/config/neutron:neutron"
        for suffix in ("", "/"):
            app.router.add_get(root + suffix, self.tree)
            app.router.add_get(root + "/{container}" + suffix, self.container)
            app.router.add_get(root + "/{container}/{item}/{uuid}" + suffix, self.one)

    async def tree(self, request: web.Request) -> web.Response:
        self.auth.check(request)
        neutron: dict[str, Any] = {}
        for name, yang_list in self.lists.items():
            neutron[name] = {yang_list.item: await yang_list.items()}
        return json_response({"neutron": neutron})

    def _list(self, name: str) -> YangList:
        # RESTCONF also accepts the module-qualified name.
        found = self.lists.get(name.removeprefix("neutron:"))
        if found is None:
            raise web.HTTPNotFound()
        return found

    async def container(self, request: web.Request) -> web.Response:
        self.auth.check(request)
        yang_list = self._list(request.match_info["container"])
        return json_response({yang_list.container: {yang_list.item: await yang_list.items()}})

    async def one(self, request: web.Request) -> web.Response:
        self.auth.check(request)
        yang_list = self._list(request.match_info["container"])
        if request.match_info["item"].removeprefix("neutron:") != yang_list.item:
            raise web.HTTPNotFound()
        found = await yang_list.repository.find(request.match_info["uuid"])
        if found is None:
            raise web.HTTPNotFound()
        return json_response({yang_list.item: [yang_list.render(found.resource)]})
