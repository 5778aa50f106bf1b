"""``/v2.0/networks``: networks with provider segments from the type drivers."""

from __future__ import annotations

from typing import Any

import orjson

from kumonet.api.context import ApiContext
from kumonet.api.identity import Identity
from kumonet.api.ipam import AddressHints
from kumonet.api.neutron.base import ResourceBase
from kumonet.api.neutron.guard import Guard, deletion_guard
from kumonet.api.neutron.resource import Visible, check_revision
from kumonet.api.repository import Resource, Stored, neutron_key, neutron_prefix
from kumonet.api.transaction import Plan, commit_with_retry
from kumonet.model.errors import BadRequest, Conflict, InvalidInput, ServiceUnavailable
from kumonet.model.network import NETWORK
from kumonet.model.port import AUTO_DELETE_DEVICE_OWNERS
from kumonet.model.segment import (
    Segment,
    lowest_free_id,
    no_network_available,
    pool_of,
    validate_requested,
)
from kumonet.store.contract import (
    Compare,
    Delete,
    DeletePrefix,
    Op,
    Put,
    key_absent,
    key_unchanged,
)

PROVIDER = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")


def segment_key(segment: Segment) -> str | None:
    parts = segment.allocation_key_parts()
    return neutron_key("segments", *parts) if parts else None


class Networks(ResourceBase):
    def __init__(self, context: ApiContext, hints: AddressHints) -> None:
        super().__init__(context, NETWORK)
        self.hints = hints

    async def visibility(self, identity: Identity) -> Visible:
        if identity.is_admin:
            return lambda _r: True
        project = identity.project_id
        return lambda r: (r.get("tenant_id") == project or bool(r.get("shared"))
                          or bool(r.get("router:external")))

    async def _taken_ids(self, network_type: str) -> set[tuple[str, int]]:
        result = await self.store.range(neutron_prefix("segments", network_type))
        taken = set()
        for kv in result.kvs:
            _, physnet, seg_id = kv.key.rsplit("/", 2)
            taken.add((physnet, int(seg_id)))
        return taken

    async def _tenant_segment(self) -> Segment:
        types = self.context.config.types
        if not types.tenant_network_types:
            raise no_network_available()
        for kind in types.tenant_network_types:
            if kind == "local":
                return Segment("local", None, None)
            taken = await self._taken_ids(kind)
            for physnet, id_range in pool_of(types, kind):
                used = {seg_id for phys, seg_id in taken if phys == (physnet or "-")}
                free = lowest_free_id((id_range,), used)
                if free is not None:
                    return Segment(kind, physnet, free)
        raise no_network_available()

    async def _requested_segment(self, attrs: dict[str, Any]) -> Segment | None:
        if not any(attrs.get(name) is not None for name in PROVIDER):
            return None
        kind = attrs.get("provider:network_type")
        if kind is None:
            raise BadRequest("Invalid input for operation: network_type required.",
                             type_name="InvalidInput")
        segment = Segment(kind, attrs.get("provider:physical_network"),
                          attrs.get("provider:segmentation_id"))
        types = self.context.config.types
        validate_requested(types, segment)
        if segment.network_type == "vlan" and segment.segmentation_id is None:
            taken = await self._taken_ids("vlan")
            ranges = types.vlan_ranges.get(segment.physical_network or "", ())
            free = lowest_free_id(ranges, {i for p, i in taken
                                           if p == segment.physical_network})
            if free is None:
                raise no_network_available()
            segment = Segment("vlan", segment.physical_network, free)
        elif segment.network_type in ("vxlan", "gre", "geneve") and \
                segment.segmentation_id is None:
            taken = await self._taken_ids(segment.network_type)
            free = lowest_free_id(types.tunnel_ranges.get(segment.network_type, ()),
                                  {i for _, i in taken})
            if free is None:
                raise no_network_available()
            segment = Segment(segment.network_type, None, free)
        return segment

    async def create(self, identity: Identity, attrs: dict[str, Any]) -> Resource:
        requested_mtu = attrs.pop("mtu", None)

        async def decide() -> Plan[Resource]:
            requested = await self._requested_segment(attrs)
            segment = requested or await self._tenant_segment()
            types = self.context.config.types
            max_mtu = types.mtu_for(segment.network_type)
            if requested_mtu is not None and requested_mtu > max_mtu:
                raise InvalidInput(f"Requested MTU is too big, maximum is {max_mtu}")
            network = self.new_resource(attrs)
            network.update({
                "status": "ACTIVE", "subnets": [], "mtu": requested_mtu or max_mtu,
                "availability_zones": [], "ipv4_address_scope": None,
                "ipv6_address_scope": None, "l2_adjacency": True,
                "provider:network_type": segment.network_type,
                "provider:physical_network": segment.physical_network,
                "provider:segmentation_id": segment.segmentation_id,
            })
            compares = [key_absent(self.repository.key(network["id"]))]
            ops: list[Op] = [self.repository.put(network)]
            seg_key = segment_key(segment)
            if seg_key is not None:
                taken = await self.store.get(seg_key)
                if taken is not None:
                    raise segment_in_use(segment)
                compares.append(key_absent(seg_key))
                ops.append(Put(seg_key, network["id"].encode()))
            return Plan(compares, ops, network)

        return await commit_with_retry(self.store, decide)

    async def update(self, identity: Identity, resource_id: str, changes: dict[str, Any],
                     expected_revision: int | None) -> Resource:
        def check(old: Resource, new: Resource) -> None:
            if "mtu" in changes:
                max_mtu = self.context.config.types.mtu_for(old["provider:network_type"])
                if changes["mtu"] > max_mtu:
                    raise InvalidInput(f"Requested MTU is too big, maximum is {max_mtu}")

        if changes.get("shared") is False:
            found = await self.writable(identity, resource_id)
            owner = found.resource.get("tenant_id")
            ports = (await self.store.range(neutron_prefix("ports"))).kvs
            if any(p.get("network_id") == resource_id and p.get("tenant_id") != owner
                   for p in (orjson.loads(kv.value) for kv in ports)):
                raise Conflict(f"Unable to reconfigure sharing settings for network "
                               f"{resource_id}. Multiple tenants are using it.",
                               type_name="InvalidSharedSetting")
        return await self.update_plain(identity, resource_id, changes, expected_revision,
                                       check)

    async def delete(self, identity: Identity, resource_id: str,
                     expected_revision: int | None) -> None:
        # The revision is checked under the guard, after the ports: Neutron
        # answers NetworkInUse before a revision mismatch.
        found = await self.writable(identity, resource_id)
        async with deletion_guard(self.store, resource_id) as guard:
            await self._delete_guarded(identity, resource_id, guard, expected_revision)
        for subnet_id in found.resource.get("subnets", []):
            self.hints.forget(subnet_id)

    async def _delete_guarded(self, identity: Identity, resource_id: str, guard: Guard,
                              expected_revision: int | None) -> None:
        async def decide() -> Plan[None]:
            await guard.check_held(self.store)
            found: Stored = await self.writable(identity, resource_id)
            network = found.resource
            ports = [orjson.loads(kv.value) for kv in
                     (await self.store.range(neutron_prefix("ports"))).kvs]
            ports = [p for p in ports if p.get("network_id") == resource_id]
            in_use = [p["id"] for p in ports
                      if p.get("device_owner") not in AUTO_DELETE_DEVICE_OWNERS]
            if in_use:
                raise Conflict(f"Unable to complete operation on network {resource_id}. "
                               "There are one or more ports still in use on the network, id "
                               f"for these ports is: {','.join(in_use)}.",
                               type_name="NetworkInUse")
            check_revision(network, expected_revision)
            compares: list[Compare] = [key_unchanged(found.kv), guard.held()]
            ops: list[Op] = [Delete(found.kv.key), Delete(guard.key)]
            for port in ports:
                ops.append(Delete(neutron_key("ports", port["id"])))
                ops.append(Delete(neutron_key("macs", port["mac_address"])))
            for subnet_id in network.get("subnets", []):
                ops.append(Delete(neutron_key("subnets", subnet_id)))
                ops.append(DeletePrefix(neutron_prefix("ipam", subnet_id)))
            seg_key = segment_key(Segment(network["provider:network_type"],
                                          network["provider:physical_network"],
                                          network["provider:segmentation_id"]))
            if seg_key is not None:
                ops.append(Delete(seg_key))
            return Plan(compares, ops, None)

        await commit_with_retry(self.store, decide)


def segment_in_use(segment: Segment) -> Conflict | ServiceUnavailable:
    if segment.network_type == "vlan":
        return Conflict(f"Unable to create the network. The VLAN {segment.segmentation_id} on "
                        f"physical network {segment.physical_network} is in use.",
                        type_name="VlanIdInUse")
    if segment.network_type == "flat":
        return Conflict(f"Unable to create the flat network. Physical network "
                        f"{segment.physical_network} is in use.", type_name="FlatNetworkInUse")
    return Conflict(f"Unable to create the network. The tunnel ID {segment.segmentation_id} "
                    "is in use.", type_name="TunnelIdInUse")
