"""``/v2.0/floatingips``: floating IPs on external networks, associated with
a port's fixed IP through a router that has a gateway on that network.

The address is a port's (``network:floatingip``), allocated by the port
IPAM, so two servers never hand out one address. An association is also a
key, ``/config/neutron/fip_assoc/<port_id>/<fixed_ip>`` (value: the floating
IP id), written under ``key_absent`` in the floating IP's transaction: one
fixed IP never gets two floating IPs, whichever server decides. Deleting the
associated port disassociates in the port delete's own transaction.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Sequence
from typing import Any

from kumonet.api.context import ApiContext
from kumonet.api.identity import ADMIN, Identity
from kumonet.api.neutron.base import ResourceBase
from kumonet.api.neutron.ports import Ports
from kumonet.api.neutron.resource import check_revision
from kumonet.api.neutron.routers import Routers
from kumonet.api.repository import Resource, Stored, neutron_key, neutron_prefix, still_exists
from kumonet.api.transaction import Plan, commit_with_retry
from kumonet.model.errors import BadRequest, Conflict, NotFound, resource_not_found
from kumonet.model.floatingip import (
    DEVICE_OWNER_FLOATINGIP,
    FLOATINGIP,
    already_associated,
    bad_floatingip_request,
    gateway_not_found,
    port_details,
)
from kumonet.store.contract import Compare, Delete, Op, Put, key_absent, key_unchanged


def association_key(port_id: str, fixed_ip: str) -> str:
    return neutron_key("fip_assoc", port_id, fixed_ip)


def _exhausted(network_id: str) -> BadRequest:
    return BadRequest(f"Unable to find any IP address on external network {network_id}.",
                      type_name="ExternalIpAddressExhausted")


class Association:
    """Where a floating IP points: a port's fixed IP behind a router."""

    def __init__(self, port: Stored, fixed_ip: str, router_id: str) -> None:
        self.port = port
        self.fixed_ip = fixed_ip
        self.router_id = router_id

    def fields(self) -> dict[str, Any]:
        return {"port_id": self.port.resource["id"], "fixed_ip_address": self.fixed_ip,
                "router_id": self.router_id,
                "port_details": port_details(self.port.resource)}


NO_ASSOCIATION = {"port_id": None, "fixed_ip_address": None, "router_id": None,
                  "port_details": None}


class FloatingIPs(ResourceBase):
    initial_revision = 0
    def __init__(self, context: ApiContext, networks: ResourceBase, ports: Ports,
                 routers: Routers) -> None:
        super().__init__(context, FLOATINGIP)
        self.networks = networks
        self.ports = ports
        self.routers = routers

    async def _external_network(self, network_id: str) -> Resource:
        found = await self.networks.repository.find(network_id)
        if found is None:
            raise resource_not_found("network", network_id)
        if not found.resource.get("router:external"):
            raise bad_floatingip_request(f"Network {network_id} is not a valid external "
                                         "network")
        return found.resource

    async def _association(self, identity: Identity, network_id: str, tenant_id: str,
                           port_id: str, fixed_ip: str | None) -> Association:
        port = await self.ports.repository.find(port_id)
        if port is None or not (await self.ports.visibility(identity))(port.resource):
            raise resource_not_found("port", port_id)
        if not identity.is_admin and port.resource.get("tenant_id") != tenant_id:
            raise bad_floatingip_request(f"Cannot create floating IP and bind it to Port "
                                         f"{port_id}, since that port is owned by a "
                                         "different tenant")
        ips = port.resource.get("fixed_ips", [])
        if fixed_ip is not None:
            chosen = next((ip for ip in ips if ip["ip_address"] == fixed_ip), None)
            if chosen is None:
                raise bad_floatingip_request(f"Port {port_id} does not have fixed ip "
                                             f"{fixed_ip}")
        else:
            v4 = [ip for ip in ips if ipaddress.ip_address(ip["ip_address"]).version == 4]
            if not v4:
                raise bad_floatingip_request(f"Port {port_id} does not have any IPv4 address")
            if len(v4) > 1:
                raise bad_floatingip_request(
                    f"Port {port_id} has multiple fixed IPv4 addresses.  Must provide a "
                    "specific IPv4 address when assigning a floating IP")
            chosen = v4[0]
        if ipaddress.ip_address(chosen["ip_address"]).version != 4:
            raise bad_floatingip_request(f"Cannot process floating IP association with "
                                         f"{chosen['ip_address']}, since that is not an IPv4 "
                                         "address")
        for router in await self.routers.repository.all():
            gateway = router.get("external_gateway_info") or {}
            if gateway.get("network_id") != network_id:
                continue
            if any(ip["subnet_id"] == chosen["subnet_id"]
                   for itf in router.get("interfaces", ()) for ip in itf["fixed_ips"]):
                return Association(port, chosen["ip_address"], router["id"])
        raise gateway_not_found(network_id, chosen["subnet_id"], port_id)

    @staticmethod
    def _associate_ops(fip: Resource, new: Association | None, old: Resource | None
                       ) -> tuple[list[Compare], list[Op]]:
        compares: list[Compare] = []
        ops: list[Op] = []
        old_key = association_key(old["port_id"], old["fixed_ip_address"]) \
            if old is not None and old.get("port_id") else None
        new_key = association_key(new.port.resource["id"], new.fixed_ip) \
            if new is not None else None
        if new is not None:
            compares.append(still_exists(new.port.kv))
        if old_key != new_key:
            if old_key is not None:
                ops.append(Delete(old_key))
            if new_key is not None:
                compares.append(key_absent(new_key))
                ops.append(Put(new_key, fip["id"].encode()))
        return compares, ops

    async def _taken_by(self, new: Association | None, fip_id: str | None,
                        network_id: str) -> None:
        if new is None:
            return
        kv = await self.store.get(association_key(new.port.resource["id"], new.fixed_ip))
        if kv is not None and kv.value.decode() != fip_id:
            other = await self.repository.find(kv.value.decode())
            shown = other.resource if other is not None else \
                {"floating_ip_address": "", "id": kv.value.decode()}
            raise already_associated(shown, new.port.resource["id"], new.fixed_ip, network_id)

    async def create(self, identity: Identity, attrs: dict[str, Any]) -> Resource:
        network_id = attrs["floating_network_id"]
        network = await self._external_network(network_id)
        subnet_id = attrs.pop("subnet_id", None)
        address = attrs.get("floating_ip_address")
        association = None
        if attrs.get("port_id"):
            association = await self._association(identity, network_id, attrs["tenant_id"],
                                                  attrs["port_id"],
                                                  attrs.get("fixed_ip_address"))
        elif attrs.get("fixed_ip_address"):
            raise bad_floatingip_request("fixed_ip_address cannot be specified without a "
                                         "port_id")
        await self._taken_by(association, None, network_id)
        fip = self.new_resource({k: v for k, v in attrs.items() if k != "floating_ip_address"})
        port = await self._make_port(network, fip["id"], subnet_id, address)
        fip.update({"floating_ip_address": next(
            ip["ip_address"] for ip in port["fixed_ips"]
            if ipaddress.ip_address(ip["ip_address"]).version == 4),
            "floating_port_id": port["id"], "status": "DOWN", "dns_domain": "",
            "dns_name": "", "port_forwardings": [], **NO_ASSOCIATION})
        if association is not None:
            fip.update(association.fields())

        async def decide() -> Plan[Resource]:
            current = association
            if current is not None:
                # Re-read on every run: a lost race may mean the port changed
                # or another floating IP took the fixed IP.
                current = await self._association(identity, network_id, attrs["tenant_id"],
                                                   attrs["port_id"],
                                                   attrs.get("fixed_ip_address"))
                await self._taken_by(current, None, network_id)
                fip.update(current.fields())
            compares, ops = self._associate_ops(fip, current, None)
            return Plan([key_absent(self.repository.key(fip["id"])), *compares],
                        [self.repository.put(fip), *ops], fip)

        try:
            return await commit_with_retry(self.store, decide)
        except BaseException:
            await self.ports.delete_internal(port["id"])
            raise

    async def _make_port(self, network: Resource, fip_id: str, subnet_id: str | None,
                         address: str | None) -> Resource:
        body: dict[str, Any] = {"network_id": network["id"], "tenant_id": "", "name": "",
                                "device_owner": DEVICE_OWNER_FLOATINGIP, "device_id": fip_id,
                                "admin_state_up": True}
        if address is not None or subnet_id is not None:
            wanted = {"ip_address": address} if address is not None else {}
            if subnet_id is not None:
                wanted["subnet_id"] = subnet_id
            return await self.ports.create_from_body(ADMIN, {**body, "fixed_ips": [wanted]})
        # The lowest free address of the first IPv4 subnet that has one.
        candidates = [s.resource for sid in network.get("subnets", [])
                      if (s := await self.ports.subnets.repository.find(sid)) is not None
                      and s.resource["ip_version"] == 4]
        for subnet in candidates:
            try:
                return await self.ports.create_from_body(
                    ADMIN, {**body, "fixed_ips": [{"subnet_id": subnet["id"]}]})
            except Conflict as error:
                if error.type_name != "IpAddressGenerationFailure":
                    raise
        raise _exhausted(network["id"])

    async def update(self, identity: Identity, resource_id: str, changes: dict[str, Any],
                     expected_revision: int | None) -> Resource:
        async def decide() -> Plan[Resource]:
            found = await self.writable(identity, resource_id)
            check_revision(found.resource, expected_revision)
            old = found.resource
            plain = {k: v for k, v in changes.items() if k not in ("port_id",
                                                                    "fixed_ip_address")}
            association = None
            if "port_id" in changes:
                port_id = changes["port_id"]
                if port_id is not None:
                    association = await self._association(
                        identity, old["floating_network_id"], old["tenant_id"], port_id,
                        changes.get("fixed_ip_address"))
                    await self._taken_by(association, resource_id, old["floating_network_id"])
                    plain.update(association.fields())
                else:
                    plain.update(NO_ASSOCIATION)
            elif "fixed_ip_address" in changes:
                raise bad_floatingip_request("fixed_ip_address cannot be specified without "
                                             "a port_id")
            new = self.changed(old, plain)
            compares, ops = ([], []) if "port_id" not in changes else \
                self._associate_ops(new, association, old)
            return Plan([key_unchanged(found.kv), *compares],
                        [self.repository.put(new), *ops], new)

        return await commit_with_retry(self.store, decide)

    async def delete(self, identity: Identity, resource_id: str,
                     expected_revision: int | None) -> None:
        async def decide() -> Plan[Resource]:
            found = await self.writable(identity, resource_id)
            check_revision(found.resource, expected_revision)
            _, ops = self._associate_ops(found.resource, None, found.resource)
            return Plan([key_unchanged(found.kv)], [Delete(found.kv.key), *ops],
                        found.resource)

        fip = await commit_with_retry(self.store, decide)
        with contextlib.suppress(NotFound):  # already gone with its network
            await self.ports.delete_internal(fip["floating_port_id"])

    async def port_deleting(self, port: Resource, *, internal: bool
                            ) -> tuple[Sequence[Compare], Sequence[Op]]:
        """A floating IP's own port goes with the floating IP; a port with
        floating IPs on its addresses leaves them disassociated."""
        if port.get("device_owner") == DEVICE_OWNER_FLOATINGIP and not internal and \
                await self.repository.find(port.get("device_id", "")) is not None:
            raise Conflict(f"Port {port['id']} cannot be deleted directly via the port API: "
                           f"has device owner {DEVICE_OWNER_FLOATINGIP}.",
                           type_name="ServicePortInUse")
        compares: list[Compare] = []
        ops: list[Op] = []
        for kv in (await self.store.range(neutron_prefix("fip_assoc", port["id"]))).kvs:
            fip = await self.repository.find(kv.value.decode())
            ops.append(Delete(kv.key))
            compares.append(key_unchanged(kv))
            if fip is None:
                continue
            compares.append(key_unchanged(fip.kv))
            ops.append(self.repository.put(self.changed(fip.resource, NO_ASSOCIATION)))
        return compares, ops

