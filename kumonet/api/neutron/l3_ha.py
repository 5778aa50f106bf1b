"""L3 HA in the API: the per-project HA network, VRRP ids and HA ports.

Keys (besides the network, subnet and ports themselves):

    /config/neutron/l3_ha_networks/<project>        HANetwork: network, subnet, HA routers
    /config/neutron/l3_ha_vr_ids/<network>/<vr_id>  the router holding the VRRP id

(``<project>`` is ``-`` for routers of the empty project, the noauth
admin's.) The HA network's record is the deterministic key: the first HA
router of a project creates the network, its subnet and the record *in the
router's own transaction* (guarded by ``key_absent`` on the record), so two
first routers racing on two servers create one network; every later HA
router create or delete rewrites the record under its revision, so the last
router's delete and a new router's create never both decide the network's
fate. A VRRP id is taken in the router's transaction too, guarded by
``key_absent`` on its key: two routers never share one. The router keeps its
id as ``ha_vr_id`` (stored, not shown to clients) for the L3 hosts
(``kumonet.l3.intent.router_from_neutron`` reads it).

Neutron's shapes: the HA network and subnet belong to no project
(``tenant_id`` ''), are named "HA network tenant <project>" / "HA subnet
tenant <project>", the subnet has no gateway and no DHCP; one "HA port
tenant <project>" per hosting host, ``device_owner``
``network:router_ha_interface``, ``device_id`` the router,
``binding:host_id`` the host.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from kumonet.api.context import ApiContext
from kumonet.api.identity import ADMIN
from kumonet.api.neutron.base import ResourceBase
from kumonet.api.neutron.networks import Networks, segment_key
from kumonet.api.neutron.ports import Ports
from kumonet.api.repository import Resource, neutron_prefix, still_exists
from kumonet.model.errors import Conflict, NotFound
from kumonet.model.l3_ha import (
    HANetwork,
    ha_network_name,
    ha_port_name,
    ha_subnet_name,
    lowest_free_vr_id,
    vr_ids_exhausted,
)
from kumonet.model.network import NETWORK
from kumonet.model.router import DEVICE_OWNER_HA_INTERFACE
from kumonet.model.segment import Segment, lowest_free_id, no_network_available, pool_of
from kumonet.model.subnet import SUBNET, plan_subnet
from kumonet.store.contract import Compare, Delete, KeyValue, Op, Put, key_absent, key_unchanged

HA_NETWORKS_PREFIX = neutron_prefix("l3_ha_networks")
VR_IDS_PREFIX = neutron_prefix("l3_ha_vr_ids")


def ha_network_key(project_id: str) -> str:
    return HA_NETWORKS_PREFIX + (project_id or "-")


def vr_id_key(network_id: str, vr_id: int) -> str:
    return f"{VR_IDS_PREFIX}{network_id}/{vr_id}"


@dataclass
class Membership:
    """What joining or leaving an HA network adds to a router's transaction,
    and what is left to do once it committed."""

    compares: list[Compare] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    # Set when the transaction removes the project's last HA router.
    network_to_delete: HANetwork | None = None


class RouterHA:
    """HA networks, VRRP ids and HA ports of HA routers."""

    def __init__(self, context: ApiContext, networks: Networks, subnets: ResourceBase,
                 ports: Ports) -> None:
        self.context = context
        self.store = context.store
        self.networks = networks
        self.subnets = subnets
        self.ports = ports

    # -- the project's HA network ------------------------------------------

    async def network_of(self, project_id: str) -> tuple[HANetwork, KeyValue] | None:
        kv = await self.store.get(ha_network_key(project_id))
        if kv is None:
            return None
        return HANetwork.from_json(orjson.loads(kv.value)), kv

    async def _ha_segment(self) -> Segment:
        """A tenant segment for the HA network (Neutron's l3_ha_network_type
        defaults to the tenant network type)."""
        types = self.context.config.types
        for kind in types.tenant_network_types:
            if kind == "local":
                return Segment("local", None, None)
            taken: set[tuple[str, int]] = set()
            for kv in (await self.store.range(neutron_prefix("segments", kind))).kvs:
                _, taken_physnet, seg_id = kv.key.rsplit("/", 2)
                taken.add((taken_physnet, int(seg_id)))
            for physnet, id_range in pool_of(types, kind):
                used = {i for p, i in taken if p == (physnet or "-")}
                free = lowest_free_id((id_range,), used)
                if free is not None:
                    return Segment(kind, physnet, free)
        raise no_network_available()

    async def _new_network(self, project_id: str, routers: tuple[str, ...]
                           ) -> tuple[HANetwork, list[Compare], list[Op]]:
        """The HA network, its subnet and segment, as ops of the caller's
        transaction."""
        segment = await self._ha_segment()
        types = self.context.config.types
        attrs = NETWORK.parse_create({"network": {
            "name": ha_network_name(project_id), "tenant_id": "", "project_id": "",
            "shared": False, "admin_state_up": True}}, is_admin=True)
        network = self.networks.new_resource(attrs)
        cidr = self.context.config.l3.l3_ha_net_cidr
        subnet_attrs = SUBNET.parse_create({"subnet": {
            "name": ha_subnet_name(project_id), "tenant_id": "", "project_id": "",
            "network_id": network["id"], "cidr": cidr,
            "ip_version": ipaddress.ip_network(cidr).version, "gateway_ip": None,
            "enable_dhcp": False}}, is_admin=True)
        subnet = self.subnets.new_resource({**subnet_attrs, **plan_subnet(subnet_attrs)})
        network.update({
            "status": "ACTIVE", "subnets": [subnet["id"]],
            "mtu": types.mtu_for(segment.network_type), "availability_zones": [],
            "ipv4_address_scope": None, "ipv6_address_scope": None, "l2_adjacency": True,
            "provider:network_type": segment.network_type,
            "provider:physical_network": segment.physical_network,
            "provider:segmentation_id": segment.segmentation_id,
        })
        compares = [key_absent(self.networks.repository.key(network["id"])),
                    key_absent(self.subnets.repository.key(subnet["id"]))]
        ops: list[Op] = [self.networks.repository.put(network),
                         self.subnets.repository.put(subnet)]
        seg_key = segment_key(segment)
        if seg_key is not None:
            compares.append(key_absent(seg_key))
            ops.append(Put(seg_key, network["id"].encode()))
        return HANetwork(project_id, network["id"], subnet["id"], routers), compares, ops

    # -- joining and leaving (parts of the router's transaction) ------------

    async def joining(self, router: Resource) -> Membership:
        """Make ``router`` an HA router of its project: the HA network
        (created with the first router), a VRRP id (stored in the router as
        ``ha_vr_id``) and the record, all as compares and ops to commit with
        the router's own write."""
        project_id = router.get("tenant_id") or ""
        change = Membership()
        found = await self.network_of(project_id)
        key = ha_network_key(project_id)
        record: HANetwork | None = None
        if found is not None:
            record, kv = found
            change.compares.append(key_unchanged(kv))
            network_kv = await self.store.get(self.networks.repository.key(record.network_id))
            if network_kv is None:
                # Deleted behind our back (an admin removed it while no port
                # used it): start again with a new network.
                record = None
            else:
                change.compares.append(still_exists(network_kv))
        else:
            change.compares.append(key_absent(key))
        taken: list[int] = []
        if record is None:
            routers = tuple(r for r in (found[0].routers if found else ()) if r != router["id"])
            record, compares, ops = await self._new_network(project_id, routers)
            change.compares += compares
            change.ops += ops
        else:
            taken = [int(kv.key.rsplit("/", 1)[1]) for kv in
                     (await self.store.range(f"{VR_IDS_PREFIX}{record.network_id}/")).kvs]
        vr_id = lowest_free_vr_id(taken)
        if vr_id is None:
            raise vr_ids_exhausted(record.network_id)
        router["ha_vr_id"] = vr_id
        change.compares.append(key_absent(vr_id_key(record.network_id, vr_id)))
        change.ops += [Put(key, orjson.dumps(record.with_router(router["id"]).to_json())),
                       Put(vr_id_key(record.network_id, vr_id), router["id"].encode())]
        return change

    async def leaving(self, router: Resource) -> Membership:
        """Stop ``router`` being an HA router: release its VRRP id, drop it
        from the record, and with the last one the record (the network is
        deleted by :meth:`delete_network` after the commit)."""
        project_id = router.get("tenant_id") or ""
        change = Membership()
        found = await self.network_of(project_id)
        if found is None:
            return change
        record, kv = found
        change.compares.append(key_unchanged(kv))
        vr_id = router.get("ha_vr_id")
        if vr_id is not None:
            change.ops.append(Delete(vr_id_key(record.network_id, int(vr_id))))
        rest = record.without_router(router["id"])
        if rest.routers:
            if rest != record:
                change.ops.append(Put(kv.key, orjson.dumps(rest.to_json())))
        else:
            change.ops.append(Delete(kv.key))
            change.network_to_delete = record
        return change

    async def delete_network(self, record: HANetwork) -> None:
        """Delete a project's HA network once its record is gone (after the
        last HA router left). A new HA router of the project made meanwhile
        has its own new network, so this one is never in use again."""
        for port in await self._ha_ports(network_id=record.network_id):
            await self.delete_port(port["id"])
        # In use again (a port made meanwhile by a late placement): the
        # leader's sweep deletes it later.
        with contextlib.suppress(NotFound, Conflict):
            await self.networks.delete(ADMIN, record.network_id, None)

    # -- HA ports -----------------------------------------------------------

    async def _ha_ports(self, *, router_id: str | None = None, network_id: str | None = None
                        ) -> list[Resource]:
        return [p for p in await self.ports.repository.all()
                if p.get("device_owner") == DEVICE_OWNER_HA_INTERFACE
                and (router_id is None or p.get("device_id") == router_id)
                and (network_id is None or p.get("network_id") == network_id)]

    async def all_ports(self) -> list[Resource]:
        return await self._ha_ports()

    async def ports_of(self, router_id: str) -> dict[str, list[Resource]]:
        """The router's HA ports by host."""
        by_host: dict[str, list[Resource]] = {}
        for port in await self._ha_ports(router_id=router_id):
            by_host.setdefault(port.get("binding:host_id", ""), []).append(port)
        return by_host

    async def create_port(self, router: Resource, host: str) -> Resource | None:
        """The router's HA port on ``host`` (made if missing); ``None`` for a
        router that is not a member of its project's HA network (written
        without the API, or no longer HA)."""
        found = await self.network_of(router.get("tenant_id") or "")
        if found is None or router["id"] not in found[0].routers:
            return None
        record = found[0]
        existing = (await self.ports_of(router["id"])).get(host)
        if existing:
            return existing[0]
        return await self.ports.create_from_body(ADMIN, {
            "network_id": record.network_id, "tenant_id": "",
            "name": ha_port_name(record.project_id),
            "fixed_ips": [{"subnet_id": record.subnet_id}],
            "device_owner": DEVICE_OWNER_HA_INTERFACE, "device_id": router["id"],
            "admin_state_up": True, "binding:host_id": host})

    async def delete_ports(self, router_id: str, hosts: Sequence[str] | None = None) -> None:
        """The router's HA ports (on ``hosts``, or all)."""
        for host, ports in (await self.ports_of(router_id)).items():
            if hosts is None or host in hosts:
                for port in ports:
                    await self.delete_port(port["id"])

    async def delete_port(self, port_id: str) -> None:
        with contextlib.suppress(NotFound):
            await self.ports.delete_internal(port_id)

    async def vr_id_holder(self, network_id: str, vr_id: int) -> str | None:
        kv = await self.store.get(vr_id_key(network_id, vr_id))
        return kv.value.decode() if kv is not None else None

    async def all_networks(self) -> list[HANetwork]:
        return [HANetwork.from_json(orjson.loads(kv.value))
                for kv in (await self.store.range(HA_NETWORKS_PREFIX)).kvs]
