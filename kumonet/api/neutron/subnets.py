"""``/v2.0/subnets``: subnets on networks, with their address pools."""

from __future__ import annotations

import ipaddress
from typing import Any

import orjson

from kumonet.api.context import ApiContext
from kumonet.api.identity import Identity
from kumonet.api.ipam import AddressHints, ipam_key
from kumonet.api.neutron.base import ResourceBase
from kumonet.api.neutron.guard import Guard, deletion_guard, not_being_deleted
from kumonet.api.neutron.resource import Visible, check_revision
from kumonet.api.repository import Resource, neutron_key, neutron_prefix
from kumonet.api.transaction import Plan, commit_with_retry
from kumonet.model.errors import BadRequest, Conflict, NotAuthorized, resource_not_found
from kumonet.model.port import SUBNET_OWNED_DEVICE_OWNERS
from kumonet.model.subnet import (
    SUBNET,
    check_gateway,
    check_pools,
    cidr_overlaps,
    plan_subnet,
    pools_from_json,
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

UPDATABLE_ADDRESS_FIELDS = ("gateway_ip", "allocation_pools")


class Subnets(ResourceBase):
    initial_revision = 0
    def __init__(self, context: ApiContext, hints: AddressHints, networks: ResourceBase) -> None:
        super().__init__(context, SUBNET)
        self.hints = hints
        self.networks = networks

    async def visibility(self, identity: Identity) -> Visible:
        if identity.is_admin:
            return lambda _r: True
        open_networks = {n["id"] for n in await self.networks.repository.all()
                         if n.get("shared") or n.get("router:external")}
        project = identity.project_id
        return lambda r: r.get("tenant_id") == project or r.get("network_id") in open_networks

    async def presented(self, resources: list[Resource]) -> list[Resource]:
        """Each subnet with its network's ``router:external`` (Neutron's
        subnet-external-network), read now rather than copied, so a network
        turned external shows on its subnets at once."""
        wanted = {r["network_id"] for r in resources}
        if len(wanted) <= 4:
            networks = [found.resource for nid in wanted
                        if (found := await self.networks.repository.find(nid)) is not None]
        else:
            networks = await self.networks.repository.all()
        external = {n["id"]: bool(n.get("router:external")) for n in networks}
        return [{**r, "router:external": external.get(r["network_id"], False)}
                for r in resources]

    async def create(self, identity: Identity, attrs: dict[str, Any]) -> Resource:
        planned = plan_subnet(attrs)

        async def decide() -> Plan[Resource]:
            network_id = attrs["network_id"]
            found = await self.networks.repository.find(network_id)
            if found is None or not (await self.networks.visibility(identity))(found.resource):
                raise resource_not_found("network", network_id)
            network = found.resource
            if not identity.owns(network):
                raise NotAuthorized("rule:create_subnet is disallowed by policy")
            siblings = [s.resource for sid in network.get("subnets", [])
                        if (s := await self.repository.find(sid)) is not None]
            if cidr_overlaps(planned["cidr"], [s["cidr"] for s in siblings]):
                raise BadRequest(f"Invalid input for operation: Requested subnet with cidr: "
                                 f"{planned['cidr']} for network: {network_id} overlaps with "
                                 "another subnet.", type_name="InvalidInput")
            subnet = self.new_resource({**attrs, **planned})
            new_network = self.networks.changed(
                network, {"subnets": [*network.get("subnets", []), subnet["id"]]})
            return Plan(
                [key_absent(self.repository.key(subnet["id"])), key_unchanged(found.kv),
                 not_being_deleted(network_id)],
                [self.repository.put(subnet), self.networks.repository.put(new_network)],
                subnet)

        return await commit_with_retry(self.store, decide)

    async def update(self, identity: Identity, resource_id: str, changes: dict[str, Any],
                     expected_revision: int | None) -> Resource:
        def check(old: Resource, new: Resource) -> None:
            network = ipaddress.ip_network(old["cidr"])
            gateway = check_gateway(network, new.get("gateway_ip"))
            pools = check_pools(network, pools_from_json(new["allocation_pools"]), gateway)
            new["allocation_pools"] = [p.to_json(network.version) for p in pools]

        if "gateway_ip" in changes:
            await self._refuse_moving_a_used_gateway(resource_id, changes["gateway_ip"])
        updated = await self.update_plain(identity, resource_id, changes, expected_revision,
                                          check)
        if any(f in changes for f in UPDATABLE_ADDRESS_FIELDS):
            self.hints.forget(resource_id)
        return updated

    async def _refuse_moving_a_used_gateway(self, subnet_id: str, gateway: str | None) -> None:
        """Neutron's GatewayIpInUse: a router's port holds the current gateway."""
        found = await self.repository.find(subnet_id)
        current = None if found is None else found.resource.get("gateway_ip")
        if current is None or current == gateway:
            return
        owner = await self.store.get(ipam_key(subnet_id, current))
        if owner is None:
            return
        port_kv = await self.store.get(neutron_key("ports", owner.value.decode()))
        if port_kv is not None and \
                orjson.loads(port_kv.value).get("device_owner", "").startswith("network:router"):
            raise Conflict(f"Current gateway ip {current} already in use by port "
                           f"{owner.value.decode()}. Unable to update.",
                           type_name="GatewayIpInUse")

    async def delete(self, identity: Identity, resource_id: str,
                     expected_revision: int | None) -> None:
        found = await self.writable(identity, resource_id)
        check_revision(found.resource, expected_revision)
        async with deletion_guard(self.store, resource_id) as guard:
            await commit_with_retry(self.store, lambda: self._decide_delete(
                identity, resource_id, expected_revision, guard))
        self.hints.forget(resource_id)

    async def _decide_delete(self, identity: Identity, resource_id: str,
                             expected_revision: int | None, guard: Guard) -> Plan[None]:
        await guard.check_held(self.store)
        found = await self.writable(identity, resource_id)
        check_revision(found.resource, expected_revision)
        allocations = await self.store.range(neutron_prefix("ipam", resource_id))
        port_ids = sorted({kv.value.decode() for kv in allocations.kvs})
        compares: list[Compare] = [key_unchanged(found.kv), guard.held()]
        ops: list[Op] = [Delete(found.kv.key), DeletePrefix(neutron_prefix("ipam", resource_id))]
        for port_id in port_ids:
            port_kv = await self.store.get(neutron_key("ports", port_id))
            if port_kv is None:
                continue
            port = orjson.loads(port_kv.value)
            if port.get("device_owner") not in SUBNET_OWNED_DEVICE_OWNERS:
                raise Conflict(f"Unable to complete operation on subnet {resource_id}: One or "
                               "more ports have an IP allocation from this subnet.",
                               type_name="SubnetInUse")
            # Ports the subnet owns (DHCP) just lose their address on it.
            port = self.changed(port, {"fixed_ips": [ip for ip in port["fixed_ips"]
                                                     if ip["subnet_id"] != resource_id]})
            compares.append(key_unchanged(port_kv))
            ops.append(Put(port_kv.key, orjson.dumps(port)))
        network = await self.networks.repository.find(found.resource["network_id"])
        if network is not None:
            compares.append(key_unchanged(network.kv))
            ops.append(self.networks.repository.put(self.networks.changed(
                network.resource, {"subnets": [s for s in network.resource.get("subnets", [])
                                               if s != resource_id]})))
        return Plan(compares, ops, None)
