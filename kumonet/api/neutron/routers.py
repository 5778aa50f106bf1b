"""``/v2.0/routers``: routers, their interfaces (``add_router_interface`` /
``remove_router_interface``), external gateway and extra routes
(``routes``, ``add_extraroutes`` / ``remove_extraroutes``), and the admin
``ha`` / ``distributed`` attributes. API and IPAM only: the dataplane reads
the stored router (with its ``interfaces`` and ``gw_port_id``).

Ports are made through :class:`~kumonet.api.neutron.ports.Ports` (so the
port IPAM is the only allocator): first the port, then the router rewritten
under its revision; if the router step fails the port is deleted again.

L3 HA and scheduling take part through :class:`RouterLifecycle` (built in
``kumonet.api.main``, see :mod:`kumonet.api.neutron.l3_scheduler`): their
compares and ops join the router's own create, ``ha`` conversion and delete
transactions (the HA network record, the VRRP id, the schedule record,
placements), and their follow-up work (placing the router, HA ports, the
last HA router's network) runs once the router's transaction committed.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from kumonet.api.context import ApiContext
from kumonet.api.identity import ADMIN, Identity
from kumonet.api.neutron.base import ResourceBase
from kumonet.api.neutron.extensions import Extension
from kumonet.api.neutron.ports import Ports
from kumonet.api.neutron.resource import (
    check_revision,
    identity_of,
    json_response,
    read_json,
)
from kumonet.api.repository import Repository, Resource, Stored
from kumonet.api.transaction import Plan, commit_with_retry
from kumonet.model import converters as c
from kumonet.model.errors import (
    BadRequest,
    Conflict,
    NotAuthorized,
    NotFound,
    PreconditionFailed,
    resource_not_found,
)
from kumonet.model.floatingip import FLOATINGIP
from kumonet.model.router import (
    ADMIN_ONLY_GATEWAY_KEYS,
    DEVICE_OWNER_ROUTER_GATEWAY,
    DEVICE_OWNER_ROUTER_INTERFACE,
    ROUTER,
    ROUTER_INTERFACE_OWNERS,
    bad_router_request,
    check_no_overlap,
    check_routes,
    interface_info,
    interface_not_found,
    interface_not_found_for_subnet,
    route,
    router_in_use,
    routes_using,
)
from kumonet.store.contract import Compare, Delete, Op, key_absent, key_unchanged

ROUTER_EXTENSIONS = (
    Extension("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding "
              "between L2 Neutron networks and access to external networks via a NAT "
              "gateway."),
    Extension("ext-gw-mode", "Neutron L3 Configurable external gateway mode",
              "Extension of the router abstraction for specifying whether SNAT should "
              "occur on the external gateway"),
    Extension("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 "
              "router"),
    Extension("extraroute-atomic", "Atomically add/remove extra routes",
              "Edit extra routes of a router on server side by atomically adding/removing "
              "extra routes"),
    Extension("l3-ha", "HA Router extension", "Adds HA capability to routers."),
    Extension("dvr", "Distributed Virtual Router", "Enables configuration of Distributed "
              "Virtual Routers."),
    Extension("fip-port-details", "Floating IP Port Details Extension", "Add port_details "
              "attribute to Floating IP resource"),
)

subnet_or_port = c.record({}, {"subnet_id": c.uuid, "port_id": c.uuid})
routes_body = c.record({"routes": c.list_of(route)}, {})


@dataclass(frozen=True, slots=True)
class RouterChange:
    """Another part's share of a router transaction: compares and ops joined
    to it, and what to do once it committed."""

    compares: Sequence[Compare] = ()
    ops: Sequence[Op] = ()
    after: Callable[[], Awaitable[None]] | None = None

    async def run_after(self) -> None:
        if self.after is not None:
            await self.after()


class RouterLifecycle(Protocol):
    """L3 HA and scheduling's say in a router's life. ``creating`` and
    ``converting`` may add stored keys to the router they are given (its
    ``ha_vr_id``); each may run more than once (re-run transactions)."""

    async def creating(self, router: Resource) -> RouterChange: ...

    async def converting(self, old: Resource, new: Resource) -> RouterChange: ...

    async def deleting(self, router: Resource) -> RouterChange: ...


def _port_in_use(port: Resource) -> Conflict:
    return Conflict(f"Unable to complete operation on port {port['id']} for network "
                    f"{port['network_id']}. Port already has an attached device "
                    f"{port.get('device_id') or port.get('device_owner')}.",
                    type_name="PortInUse")


def _l3_port_in_use(port: Resource) -> Conflict:
    return Conflict(f"Port {port['id']} cannot be deleted directly via the port API: has "
                    f"device owner {port['device_owner']}.", type_name="ServicePortInUse")


def extraroutes_extras(router: Resource) -> dict[str, Any]:
    """Keys Neutron's ``add_extraroutes``/``remove_extraroutes`` answers carry
    beyond a router's attributes (it returns its database row's fields)."""
    gateway = router.get("external_gateway_info") or {}
    return {"enable_snat": bool(gateway.get("enable_snat", True)),
            "gw_port_id": router.get("gw_port_id"),
            "ha_vr_id": int(router.get("ha_vr_id") or 0),
            "enable_default_route_bfd": False, "enable_default_route_ecmp": False}


class Routers(ResourceBase):
    def __init__(self, context: ApiContext, networks: ResourceBase, subnets: ResourceBase,
                 ports: Ports, lifecycle: RouterLifecycle | None = None) -> None:
        super().__init__(context, ROUTER)
        self.networks = networks
        self.subnets = subnets
        self.ports = ports
        self.lifecycle = lifecycle
        # Read only: interfaces and gateways in use by floating IPs stay.
        self.floatingips = Repository(context.store, FLOATINGIP)

    # -- routes ----------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        base = f"/v2.0/{ROUTER.path}/{{id}}"
        app.router.add_put(base + "/add_router_interface", self._add_interface)
        app.router.add_put(base + "/remove_router_interface", self._remove_interface)
        app.router.add_put(base + "/add_extraroutes", self._add_extraroutes)
        app.router.add_put(base + "/remove_extraroutes", self._remove_extraroutes)

    async def _add_interface(self, request: web.Request) -> web.Response:
        subnet_id, port_id = self._interface_body(await read_json(request))
        info = await self.add_interface(identity_of(request), request.match_info["id"],
                                        subnet_id=subnet_id, port_id=port_id)
        return json_response(info)

    async def _remove_interface(self, request: web.Request) -> web.Response:
        subnet_id, port_id = self._interface_body(await read_json(request), removing=True)
        info = await self.remove_interface(identity_of(request), request.match_info["id"],
                                           subnet_id=subnet_id, port_id=port_id)
        return json_response(info)

    async def _add_extraroutes(self, request: web.Request) -> web.Response:
        return await self._edit_routes(request, adding=True)

    async def _remove_extraroutes(self, request: web.Request) -> web.Response:
        return await self._edit_routes(request, adding=False)

    async def _edit_routes(self, request: web.Request, *, adding: bool) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) != {"router"}:
            raise BadRequest("Resource body required with key 'router'")
        given = routes_body(body["router"])["routes"]
        identity = identity_of(request)
        router_id = request.match_info["id"]
        found = await self.writable(identity, router_id)
        current = found.resource.get("routes", [])
        if adding:
            routes = current + [r for r in given if r not in current]
        else:
            routes = [r for r in current if r not in given]
        updated = await self.update(identity, router_id, {"routes": routes}, None)
        return json_response({"router": {**ROUTER.view(updated, is_admin=identity.is_admin),
                                         **extraroutes_extras(updated)}})

    @staticmethod
    def _interface_body(body: Any, *, removing: bool = False) -> tuple[str | None, str | None]:
        info = subnet_or_port(body)
        subnet_id, port_id = info.get("subnet_id"), info.get("port_id")
        if subnet_id is None and port_id is None:
            raise bad_router_request("Either subnet_id or port_id must be specified")
        if subnet_id is not None and port_id is not None and not removing:
            raise bad_router_request("Cannot specify both subnet-id and port-id")
        return subnet_id, port_id

    # -- create, update, delete ------------------------------------------------

    @staticmethod
    def _check_gateway_policy(identity: Identity, info: dict[str, Any] | None,
                              action: str) -> None:
        if identity.is_admin or info is None:
            return
        for key in ADMIN_ONLY_GATEWAY_KEYS:
            if key in info:
                raise NotAuthorized(f"rule:{action}_router:external_gateway_info:{key} is "
                                    "disallowed by policy")

    async def create(self, identity: Identity, attrs: dict[str, Any]) -> Resource:
        gateway = attrs.pop("external_gateway_info", None)
        self._check_gateway_policy(identity, gateway, "create")
        router = self.new_resource(attrs)
        router.setdefault("ha", self.context.config.l3.l3_ha)
        router.setdefault("distributed", False)
        router.update({"status": "ACTIVE", "external_gateway_info": None, "routes": [],
                       "availability_zones": [], "interfaces": [], "gw_port_id": None})

        async def decide() -> Plan[tuple[Resource, RouterChange]]:
            change = RouterChange() if self.lifecycle is None \
                else await self.lifecycle.creating(router)
            return Plan([key_absent(self.repository.key(router["id"])), *change.compares],
                        [self.repository.put(router), *change.ops], (dict(router), change))

        created, change = await commit_with_retry(self.store, decide)
        await change.run_after()
        if gateway is None:
            return created
        try:
            return await self._set_gateway(identity, created["id"], gateway)
        except BaseException:
            await self.delete(ADMIN, created["id"], None)
            raise

    async def update(self, identity: Identity, resource_id: str, changes: dict[str, Any],
                     expected_revision: int | None) -> Resource:
        found = await self.writable(identity, resource_id)
        check_revision(found.resource, expected_revision)
        if "external_gateway_info" in changes:
            gateway = changes.pop("external_gateway_info")
            self._check_gateway_policy(identity, gateway, "update")
            current = found.resource.get("external_gateway_info")
            if gateway != current:
                await self._set_gateway(identity, resource_id, gateway)
                expected_revision = None
            if not changes:
                return (await self.repository.get(resource_id)).resource
        gateway_cidrs = await self._gateway_cidrs(found.resource)

        def check(old: Resource, new: Resource) -> None:
            self._ha_changed(old, new)
            if "routes" in changes:
                check_routes(new["routes"], new, gateway_cidrs, _own_addresses(new))

        if "ha" not in changes or self.lifecycle is None:
            return await self.update_plain(identity, resource_id, changes, expected_revision,
                                           check)
        lifecycle = self.lifecycle

        async def decide() -> Plan[tuple[Resource, RouterChange]]:
            found = await self.writable(identity, resource_id)
            check_revision(found.resource, expected_revision)
            new = self.changed(found.resource, changes)
            check(found.resource, new)
            change = RouterChange()
            if bool(new.get("ha")) != bool(found.resource.get("ha")):
                change = await lifecycle.converting(found.resource, new)
            return Plan([key_unchanged(found.kv), *change.compares],
                        [self.repository.put(new), *change.ops], (new, change))

        updated, change = await commit_with_retry(self.store, decide)
        await change.run_after()
        return updated

    @staticmethod
    def _ha_changed(old: Resource, new: Resource) -> None:
        """Neutron migrates a router between legacy, HA and DVR only while it
        is administratively down (the HA network, VRRP id and HA ports follow
        through :meth:`RouterLifecycle.converting`)."""
        for name in ("ha", "distributed"):
            if new.get(name) != old.get(name) and (old.get("admin_state_up") or
                                                  new.get("admin_state_up")):
                raise bad_router_request(f"Cannot change {name} attribute of active routers. "
                                         "Please set router admin_state_up to False prior "
                                         "to upgrade")
        if old.get("distributed") and not new.get("distributed"):
            raise bad_router_request("Migration from distributed router to centralized is "
                                     "not supported")

    async def _gateway_cidrs(self, router: Resource) -> list[str]:
        info = router.get("external_gateway_info") or {}
        cidrs = []
        for ip in info.get("external_fixed_ips", []):
            found = await self.subnets.repository.find(ip["subnet_id"])
            if found is not None:
                cidrs.append(found.resource["cidr"])
        return cidrs

    async def delete(self, identity: Identity, resource_id: str,
                     expected_revision: int | None) -> None:
        async def decide() -> Plan[tuple[Resource, RouterChange]]:
            found = await self.writable(identity, resource_id)
            check_revision(found.resource, expected_revision)
            if found.resource.get("interfaces"):
                ports = ",".join(i["port_id"] for i in found.resource["interfaces"])
                raise router_in_use(resource_id, f"has ports still attached: {ports}")
            change = RouterChange() if self.lifecycle is None \
                else await self.lifecycle.deleting(found.resource)
            return Plan([key_unchanged(found.kv), *change.compares],
                        [Delete(found.kv.key), *change.ops], (found.resource, change))

        router, change = await commit_with_retry(self.store, decide)
        if router.get("gw_port_id"):
            await self._delete_port_quietly(router["gw_port_id"])
        await change.run_after()

    async def _delete_port_quietly(self, port_id: str) -> None:
        with contextlib.suppress(NotFound):  # already gone with its network
            await self.ports.delete_internal(port_id)

    # -- external gateway -----------------------------------------------------

    async def _fips_via(self, router_id: str) -> list[Resource]:
        return [f for f in await self.floatingips.all() if f.get("router_id") == router_id]

    async def _set_gateway(self, identity: Identity, router_id: str,
                           info: dict[str, Any] | None) -> Resource:
        found = await self.writable(identity, router_id)
        router = found.resource
        current = router.get("external_gateway_info")
        old_port_id = router.get("gw_port_id")
        if info is None:
            if await self._fips_via(router_id):
                raise Conflict(f"Gateway cannot be updated for router {router_id}, since a "
                               "gateway to external network "
                               f"{current['network_id'] if current else ''} is required by "
                               "one or more floating IPs.",
                               type_name="RouterExternalGatewayInUseByFloatingIp")
            updated = await self._commit_gateway(router_id, old_port_id, None, None)
            if old_port_id:
                await self._delete_port_quietly(old_port_id)
            return updated
        network_id = info["network_id"]
        network = await self.networks.repository.find(network_id)
        if network is None or not (await self.networks.visibility(identity))(network.resource):
            raise resource_not_found("network", network_id)
        if not network.resource.get("router:external"):
            raise bad_router_request(f"Network {network_id} is not an external network")
        same_network = current is not None and current["network_id"] == network_id
        enable_snat = info.get("enable_snat",
                               current.get("enable_snat", True) if same_network and current
                               else True)
        wanted_ips = info.get("external_fixed_ips")
        if same_network and old_port_id:
            if wanted_ips is not None and not _same_ips(wanted_ips, current):
                port = await self.ports.update(ADMIN, old_port_id, {"fixed_ips": wanted_ips},
                                               None)
            else:
                port = (await self.ports.repository.get(old_port_id)).resource
            return await self._commit_gateway(router_id, old_port_id, port, enable_snat)
        if current is not None and await self._fips_via(router_id):
            raise Conflict(f"Gateway cannot be updated for router {router_id}, since a "
                           f"gateway to external network {current['network_id']} is "
                           "required by one or more floating IPs.",
                           type_name="RouterExternalGatewayInUseByFloatingIp")
        body: dict[str, Any] = {"network_id": network_id, "tenant_id": "", "name": "",
                                "device_owner": DEVICE_OWNER_ROUTER_GATEWAY,
                                "device_id": router_id, "admin_state_up": True}
        if wanted_ips is not None:
            body["fixed_ips"] = wanted_ips
        port = await self.ports.create_from_body(ADMIN, body)
        try:
            updated = await self._commit_gateway(router_id, old_port_id, port, enable_snat)
        except BaseException:
            await self._delete_port_quietly(port["id"])
            raise
        if old_port_id:
            await self._delete_port_quietly(old_port_id)
        return updated

    async def _commit_gateway(self, router_id: str, expected_port_id: str | None,
                              port: Resource | None, enable_snat: bool | None) -> Resource:
        async def decide() -> Plan[Resource]:
            found = await self.repository.get(router_id)
            if found.resource.get("gw_port_id") != expected_port_id:
                raise Conflict(f"The gateway of router {router_id} changed concurrently; "
                               "retry.", type_name="RouterInUse")
            info = None if port is None else {
                "network_id": port["network_id"], "enable_snat": enable_snat,
                "external_fixed_ips": [dict(ip) for ip in port["fixed_ips"]]}
            new = self.changed(found.resource, {"external_gateway_info": info,
                                                "gw_port_id": None if port is None
                                                else port["id"]})
            return Plan([key_unchanged(found.kv)], [self.repository.put(new)], new)

        return await commit_with_retry(self.store, decide)

    # -- interfaces -----------------------------------------------------------

    async def _visible_subnet(self, identity: Identity, subnet_id: str) -> Resource:
        found = await self.subnets.repository.find(subnet_id)
        if found is None or not (await self.subnets.visibility(identity))(found.resource):
            raise resource_not_found("subnet", subnet_id)
        return found.resource

    async def _visible_port(self, identity: Identity, port_id: str) -> Stored:
        found = await self.ports.repository.find(port_id)
        if found is None or not (await self.ports.visibility(identity))(found.resource):
            raise resource_not_found("port", port_id)
        return found

    async def add_interface(self, identity: Identity, router_id: str, *,
                            subnet_id: str | None, port_id: str | None) -> dict[str, Any]:
        router = (await self.writable(identity, router_id)).resource
        if subnet_id is not None:
            subnet = await self._visible_subnet(identity, subnet_id)
            if not subnet.get("gateway_ip"):
                raise bad_router_request("Subnet for router interface must have a gateway IP")
            check_no_overlap(router, [subnet])
            port = await self.ports.create_from_body(ADMIN, {
                "network_id": subnet["network_id"], "tenant_id": router["tenant_id"],
                "fixed_ips": [{"subnet_id": subnet_id, "ip_address": subnet["gateway_ip"]}],
                "device_owner": DEVICE_OWNER_ROUTER_INTERFACE, "device_id": router_id,
                "admin_state_up": True, "name": ""})

            async def undo() -> None:
                await self._delete_port_quietly(port["id"])
        else:
            assert port_id is not None
            stored = await self._visible_port(identity, port_id)
            claimed = stored.resource
            if claimed.get("device_id") or claimed.get("device_owner"):
                raise _port_in_use(claimed)
            if not claimed["fixed_ips"]:
                raise bad_router_request(f"Router port {port_id} must have at least one "
                                         "fixed IP")
            subnets = [await self._visible_subnet(ADMIN, ip["subnet_id"])
                       for ip in claimed["fixed_ips"]]
            if sum(1 for s in subnets if s["ip_version"] == 4) > 1:
                raise bad_router_request(f"Cannot have multiple IPv4 subnets on router port "
                                         f"{port_id}")
            check_no_overlap(router, subnets)
            try:
                # Guarded by the revision read: two routers claiming one port
                # cannot both win.
                port = await self.ports.update(
                    ADMIN, port_id, {"device_owner": DEVICE_OWNER_ROUTER_INTERFACE,
                                     "device_id": router_id},
                    claimed["revision_number"])
            except PreconditionFailed:
                raise _port_in_use(claimed) from None

            async def undo() -> None:
                with contextlib.suppress(NotFound):
                    await self.ports.update(ADMIN, port_id, {"device_owner": "",
                                                             "device_id": ""}, None)
        try:
            updated = await self._attach(router_id, port)
        except BaseException:
            await undo()
            raise
        return interface_info(updated, port, port["fixed_ips"][0]["subnet_id"])

    async def _attach(self, router_id: str, port: Resource) -> Resource:
        cidrs = {}
        for ip in port["fixed_ips"]:
            subnet = await self.subnets.repository.get(ip["subnet_id"])
            cidrs[ip["subnet_id"]] = subnet.resource

        async def decide() -> Plan[Resource]:
            found = await self.repository.get(router_id)
            check_no_overlap(found.resource, cidrs.values())
            entry = {"port_id": port["id"], "network_id": port["network_id"],
                     "fixed_ips": [{"subnet_id": ip["subnet_id"], "ip_address": ip["ip_address"],
                                    "cidr": cidrs[ip["subnet_id"]]["cidr"]}
                                   for ip in port["fixed_ips"]]}
            new = self.changed(found.resource, {
                "interfaces": [*found.resource.get("interfaces", []), entry]})
            return Plan([key_unchanged(found.kv)], [self.repository.put(new)], new)

        return await commit_with_retry(self.store, decide)

    async def remove_interface(self, identity: Identity, router_id: str, *,
                               subnet_id: str | None, port_id: str | None) -> dict[str, Any]:
        router = (await self.writable(identity, router_id)).resource
        interfaces = router.get("interfaces", [])
        if port_id is not None:
            entry = next((i for i in interfaces if i["port_id"] == port_id), None)
            if entry is None:
                raise interface_not_found(router_id, port_id)
            subnet_ids = [ip["subnet_id"] for ip in entry["fixed_ips"]]
            if subnet_id is not None and subnet_id not in subnet_ids:
                raise BadRequest(f"Subnet on port {port_id} does not match the requested "
                                 f"subnet {subnet_id}.", type_name="SubnetMismatchForPort")
            removed = entry["fixed_ips"]
        else:
            assert subnet_id is not None
            entry = next((i for i in interfaces
                          if any(ip["subnet_id"] == subnet_id for ip in i["fixed_ips"])), None)
            if entry is None:
                raise interface_not_found_for_subnet(router_id, subnet_id)
            removed = [ip for ip in entry["fixed_ips"] if ip["subnet_id"] == subnet_id]
        await self._check_interface_unused(router, removed)
        port = (await self.ports.repository.get(entry["port_id"])).resource
        whole_port = len(removed) == len(entry["fixed_ips"])
        await self._detach(router_id, entry["port_id"], {ip["subnet_id"] for ip in removed})
        if whole_port:
            await self._delete_port_quietly(port["id"])
        else:
            gone = {ip["subnet_id"] for ip in removed}
            await self.ports.update(ADMIN, port["id"], {"fixed_ips": [
                ip for ip in port["fixed_ips"] if ip["subnet_id"] not in gone]}, None)
        return interface_info(router, port, removed[0]["subnet_id"])

    async def _check_interface_unused(self, router: Resource,
                                      removed: Sequence[dict[str, str]]) -> None:
        for ip in removed:
            network = ipaddress.ip_network(ip["cidr"])
            if routes_using(router.get("routes", []), ip["cidr"]):
                raise Conflict(f"Router interface for subnet {ip['subnet_id']} on router "
                               f"{router['id']} cannot be deleted, as it is required by one "
                               "or more routes.", type_name="RouterInterfaceInUseByRoute")
            for fip in await self._fips_via(router["id"]):
                fixed = fip.get("fixed_ip_address")
                if fixed and ipaddress.ip_address(fixed) in network:
                    raise Conflict(f"Router interface for subnet {ip['subnet_id']} on router "
                                   f"{router['id']} cannot be deleted, as it is required by "
                                   "one or more floating IPs.",
                                   type_name="RouterInterfaceInUseByFloatingIP")

    async def _detach(self, router_id: str, port_id: str, subnet_ids: set[str]) -> Resource:
        async def decide() -> Plan[Resource]:
            found = await self.repository.get(router_id)
            interfaces = []
            for itf in found.resource.get("interfaces", []):
                if itf["port_id"] == port_id:
                    kept = [ip for ip in itf["fixed_ips"] if ip["subnet_id"] not in subnet_ids]
                    if kept:
                        interfaces.append({**itf, "fixed_ips": kept})
                    continue
                interfaces.append(itf)
            new = self.changed(found.resource, {"interfaces": interfaces})
            return Plan([key_unchanged(found.kv)], [self.repository.put(new)], new)

        return await commit_with_retry(self.store, decide)

    # -- ports owned by routers -----------------------------------------------

    async def port_deleting(self, port: Resource, *, internal: bool
                            ) -> tuple[Sequence[Compare], Sequence[Op]]:
        """A router's ports go through the router API (Neutron's ServicePortInUse)."""
        owner = port.get("device_owner", "")
        if internal or (owner not in ROUTER_INTERFACE_OWNERS
                        and owner != DEVICE_OWNER_ROUTER_GATEWAY):
            return (), ()
        router = await self.repository.find(port.get("device_id", ""))
        if router is None:
            return (), ()
        raise _l3_port_in_use(port)


def _same_ips(wanted: list[dict[str, str]], current: dict[str, Any] | None) -> bool:
    if current is None:
        return False
    have = current.get("external_fixed_ips", [])
    return all(any(all(ip.get(k) == v for k, v in w.items()) for ip in have)
               for w in wanted) and len(wanted) == len(have)


def _own_addresses(router: Resource) -> list[str]:
    addresses = [ip["ip_address"] for itf in router.get("interfaces", ())
                 for ip in itf["fixed_ips"]]
    info = router.get("external_gateway_info") or {}
    addresses += [ip["ip_address"] for ip in info.get("external_fixed_ips", [])]
    return addresses
