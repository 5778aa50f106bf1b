"""``/v2.0/ports``: ports with MACs and fixed IPs allocated in the same
store transaction as the port itself."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kumonet.api.context import ApiContext
from kumonet.api.identity import Identity
from kumonet.api.ipam import AddressHints, Reservations, ipam_key
from kumonet.api.listing import Matcher
from kumonet.api.neutron.base import ResourceBase
from kumonet.api.neutron.guard import (
    guard_key,
    not_being_deleted,
    wait_while_guarded,
)
from kumonet.api.neutron.resource import Visible, check_revision, resolve_project
from kumonet.api.repository import (
    Resource,
    Stored,
    neutron_key,
    neutron_prefix,
    still_exists,
)
from kumonet.api.transaction import Plan, commit_with_retry
from kumonet.model.errors import BadRequest, Conflict, NotAuthorized, resource_not_found
from kumonet.model.ipam import eui64_address, random_mac
from kumonet.model.port import PORT, VIF_TYPE_UNBOUND
from kumonet.model.router import ROUTER_INTERFACE_OWNERS
from kumonet.model.subnet import is_auto_address
from kumonet.store.contract import Compare, Delete, Op, Put, key_absent, key_unchanged


class PortSecurityGroups(Protocol):
    """The security groups a port gets; the security-group resource fills it
    in (default group of the project when none are requested)."""

    async def resolve(self, identity: Identity, project_id: str,
                      requested: list[str] | None, port_security_enabled: bool) -> list[str]:
        ...


class PortDeleteHook(Protocol):
    """Another resource's say in a port delete: raise to refuse it, or
    return compares and ops joined to the delete's own transaction
    (floating IPs disassociate). ``internal``: the delete comes from another
    resource (removing a router interface), not from ``DELETE /ports``."""

    async def port_deleting(self, port: Resource, *, internal: bool
                            ) -> tuple[Sequence[Compare], Sequence[Op]]: ...


class RequestedSecurityGroups:
    """Until security groups exist: keep what was asked for, else none."""

    async def resolve(self, identity: Identity, project_id: str,
                      requested: list[str] | None, port_security_enabled: bool) -> list[str]:
        return list(requested or [])


def mac_key(mac: str) -> str:
    return neutron_key("macs", mac)


def _fixed_ips_matcher(values: list[str]) -> Matcher:
    """``fixed_ips=ip_address=X`` / ``subnet_id=Y`` / ``ip_address_substr=Z``:
    a port matches if one of its addresses satisfies every key given (values
    of one key are OR-ed)."""
    wanted: dict[str, set[str]] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or name not in ("ip_address", "subnet_id", "ip_address_substr"):
            raise BadRequest(f"Invalid fixed_ips filter '{value}'")
        wanted.setdefault(name, set()).add(text)

    def one(ip: dict[str, str]) -> bool:
        return all(
            any(t in ip["ip_address"] for t in texts) if name == "ip_address_substr"
            else ip.get(name) in texts
            for name, texts in wanted.items())

    return lambda port: any(one(ip) for ip in port.get("fixed_ips", ()))


@dataclass
class AddressPlan:
    fixed_ips: list[dict[str, str]] = field(default_factory=list)
    compares: list[Compare] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)


def check_network_owner_only(identity: Identity, network: Resource,
                             attrs: dict[str, Any]) -> None:
    """Neutron's policy: on someone else's (shared) network a member may not
    choose the MAC, the addresses, or claim a network-owned device owner."""
    if identity.is_admin or identity.is_service \
            or network.get("tenant_id") == identity.project_id:
        return
    refused = None
    if "mac_address" in attrs:
        refused = "mac_address"
    elif any("ip_address" in ip for ip in attrs.get("fixed_ips") or ()):
        refused = "fixed_ips:ip_address"
    elif str(attrs.get("device_owner", "")).startswith("network:"):
        refused = "device_owner"
    if refused is not None:
        raise NotAuthorized(f"rule:create_port:{refused} is disallowed by policy")


def with_pair_macs(pairs: list[dict[str, str]], mac: str) -> list[dict[str, str]]:
    """Neutron fills a pair's missing MAC with the port's own."""
    return [{"ip_address": p["ip_address"], "mac_address": p.get("mac_address") or mac}
            for p in pairs]


def _invalid_ip(ip: str, subnet_id: str | None = None) -> BadRequest:
    if subnet_id:
        return BadRequest(f"IP address {ip} is not a valid IP for the specified subnet.",
                          type_name="InvalidIpForSubnet")
    return BadRequest(f"IP address {ip} is not a valid IP for any of the subnets on the "
                      "specified network.", type_name="InvalidIpForNetwork")


def generation_failure(network_id: str) -> Conflict:
    return Conflict(f"No more IP addresses available on network {network_id}.",
                    type_name="IpAddressGenerationFailure")


class Ports(ResourceBase):
    def __init__(self, context: ApiContext, hints: AddressHints, networks: ResourceBase,
                 subnets: ResourceBase,
                 security_groups: PortSecurityGroups | None = None) -> None:
        super().__init__(context, PORT)
        self.hints = hints
        self.networks = networks
        self.subnets = subnets
        self.security_groups = security_groups or RequestedSecurityGroups()
        # Filled in by kumonet.api.main (routers, floating IPs), which build on ports.
        self.delete_hooks: list[PortDeleteHook] = []
        self.special_filters = {"fixed_ips": _fixed_ips_matcher}
        self.rng = random.Random()


    def bulk_concurrently(self, items: list[dict[str, Any]]) -> bool:
        """Ports of a bulk (Nova booting many VMs) are made concurrently when no
        two items can contend for one address or MAC: either no item chooses
        addresses or every item names all of its addresses, and chosen values
        are distinct. Otherwise, as in Neutron, in order, so that which item
        gets a contested address does not depend on timing."""
        macs = [item["mac_address"] for item in items if "mac_address" in item]
        if len(set(macs)) != len(macs):
            return False
        fixed = [fip for item in items for fip in item.get("fixed_ips") or ()]
        if not fixed:
            return True
        if not all("fixed_ips" in item for item in items):
            return False
        addresses = [(fip.get("subnet_id"), fip.get("ip_address")) for fip in fixed]
        return all(ip is not None for _, ip in addresses) and len(set(addresses)) == len(
            addresses
        )

    async def visibility(self, identity: Identity) -> Visible:
        # Neutron (2023.2+): the service role (Nova) sees every project's ports.
        if identity.is_admin or identity.is_service:
            return lambda _r: True
        project = identity.project_id
        # Neutron's policy: a network's owner sees every port on it.
        owned = {n["id"] for n in await self.networks.repository.all()
                 if n.get("tenant_id") == project}
        return lambda r: r.get("tenant_id") == project or r.get("network_id") in owned

    async def create_from_body(self, identity: Identity, attrs: dict[str, Any]) -> Resource:
        """Create a port for another resource (router interfaces, floating
        IPs): ``attrs`` as a client would send them, validated the same way."""
        parsed = PORT.parse_create({"port": attrs}, is_admin=identity.is_admin)
        resolve_project(parsed, identity, "port")
        return await self.create(identity, parsed)

    async def writable(self, identity: Identity, resource_id: str) -> Stored:
        """Neutron's ``update_port``/``delete_port`` allow the service role on
        any project's port (Nova binds and unbinds its instances' ports)."""
        if identity.is_service and not identity.is_admin:
            found = await self.repository.find(resource_id)
            if found is None:
                raise resource_not_found("port", resource_id)
            return found
        return await super().writable(identity, resource_id)

    async def _network_and_subnets(self, identity: Identity, network_id: str
                                   ) -> tuple[Stored, list[Stored]]:
        found = await self.networks.repository.find(network_id)
        # The service role reaches every project's networks for their ports
        # (neutron-lib's queries do not filter its context by project).
        if found is None or not (identity.is_service or
                                 (await self.networks.visibility(identity))(found.resource)):
            raise resource_not_found("network", network_id)
        subnets = [s for sid in found.resource.get("subnets", [])
                   if (s := await self.subnets.repository.find(sid)) is not None]
        return found, subnets

    async def _allocate(self, network_id: str, subnets: Sequence[Stored],
                        requested: list[dict[str, str]] | None, *, port_id: str, mac: str,
                        reservations: Reservations,
                        keep: Sequence[dict[str, str]] = (),
                        auto_addresses: bool = False) -> AddressPlan:
        """Addresses for a port: ``requested`` as given (None: automatic),
        ``keep`` the port's current addresses that stay (updates);
        ``auto_addresses``: also an EUI-64 address on each SLAAC or
        DHCPv6-stateless subnet not requested, as Neutron gives every
        port but a router's, even when its addresses are chosen."""
        plan = AddressPlan()
        by_id = {s.resource["id"]: s for s in subnets}
        kept = {(ip["subnet_id"], ip["ip_address"]) for ip in keep}
        used_subnets: set[str] = set()

        def take(subnet: Stored, address: str) -> None:
            sid = subnet.resource["id"]
            plan.fixed_ips.append({"subnet_id": sid, "ip_address": address})
            if sid not in used_subnets:
                used_subnets.add(sid)
                plan.compares += [still_exists(subnet.kv), not_being_deleted(sid)]
            if (sid, address) in kept:
                return
            key = ipam_key(sid, address)
            plan.compares.append(key_absent(key))
            plan.ops.append(Put(key, port_id.encode()))

        async def lowest(subnet: Stored) -> str | None:
            s = subnet.resource
            if is_auto_address(s):
                return eui64_address(s["cidr"], mac)
            hint = await self.hints.for_subnet(s)
            value = self.hints.reserve(s["id"], hint)
            if value is None:
                # Another server may have freed addresses this one's hint
                # still counts as taken: look at the store before refusing.
                hint = await self.hints.resync(s)
                value = hint.reserve_lowest()
            if value is None:
                return None
            reservations.add(s["id"], hint, value)
            return str(ipaddress.ip_address(value))

        if requested is None:
            v4 = [s for s in subnets if s.resource["ip_version"] == 4]
            for subnet in v4:
                address = await lowest(subnet)
                if address is not None:
                    take(subnet, address)
                    break
            else:
                if v4:
                    raise generation_failure(network_id)
            stateful_done = False
            for subnet in (s for s in subnets if s.resource["ip_version"] == 6):
                auto = is_auto_address(subnet.resource)
                if not auto and stateful_done:
                    continue
                address = await lowest(subnet)
                if address is None:
                    raise generation_failure(network_id)
                take(subnet, address)
                stateful_done = stateful_done or not auto
            return plan

        seen: set[tuple[str | None, str | None]] = set()
        for entry in requested:
            sid, ip = entry.get("subnet_id"), entry.get("ip_address")
            if (sid, ip) in seen:
                raise BadRequest("Duplicate fixed_ips entry", type_name="InvalidInput")
            seen.add((sid, ip))
            if sid is None and ip is None:
                raise BadRequest("Invalid input for operation: IP allocation requires "
                                 "subnet_id or ip_address.", type_name="InvalidInput")
            if sid is not None and sid not in by_id:
                if await self.subnets.repository.find(sid) is None:
                    raise resource_not_found("subnet", sid)
                raise BadRequest(f"Invalid input for operation: Failed to create port on "
                                 f"network {network_id}, because fixed_ips included invalid "
                                 f"subnet {sid}.", type_name="InvalidInput")
            if ip is None:
                assert sid is not None
                current = next((a for s, a in kept if s == sid), None)
                if current is not None and (sid, current) not in seen:
                    seen.add((sid, current))
                    take(by_id[sid], current)
                    continue
                address = await lowest(by_id[sid])
                if address is None:
                    raise generation_failure(network_id)
                take(by_id[sid], address)
                continue
            address_obj = ipaddress.ip_address(ip)
            candidates = [by_id[sid]] if sid is not None else [
                s for s in subnets if address_obj in ipaddress.ip_network(s.resource["cidr"])]
            if not candidates:
                raise _invalid_ip(ip)
            subnet = candidates[0]
            network = ipaddress.ip_network(subnet.resource["cidr"])
            if address_obj not in network or (network.version == 4 and network.prefixlen < 31
                                               and address_obj in (network.network_address,
                                                                   network.broadcast_address)):
                raise _invalid_ip(ip, sid)
            real_sid = subnet.resource["id"]
            if (real_sid, ip) not in kept:
                owner = await self.store.get(ipam_key(real_sid, ip))
                hint = await self.hints.for_subnet(subnet.resource)
                if owner is not None or int(address_obj) in hint.pending:
                    raise Conflict(f"IP address {ip} already allocated in subnet {real_sid}",
                                   type_name="IpAddressAlreadyAllocated")
                hint.pending.add(int(address_obj))
                reservations.add(real_sid, hint, int(address_obj))
            take(subnet, ip)
        if auto_addresses:
            for subnet in subnets:
                if is_auto_address(subnet.resource) and \
                        subnet.resource["id"] not in used_subnets:
                    take(subnet, eui64_address(subnet.resource["cidr"], mac))
        return plan

    async def _wait_for_guards(self, ids: Sequence[str]) -> None:
        for resource_id in ids:
            if await self.store.get(guard_key(resource_id)) is not None:
                await wait_while_guarded(self.store, resource_id)

    async def create(self, identity: Identity, attrs: dict[str, Any]) -> Resource:
        network_id = attrs["network_id"]
        attempt = 0

        async def decide() -> Plan[Resource]:
            nonlocal attempt
            attempt += 1
            network, subnets = await self._network_and_subnets(identity, network_id)
            if attempt > 1:
                # Lost a race: maybe with a delete of the network or a subnet.
                await self._wait_for_guards([network_id, *network.resource["subnets"]])
                network, subnets = await self._network_and_subnets(identity, network_id)
            check_network_owner_only(identity, network.resource, attrs)
            port = self.new_resource(attrs)
            port_security = bool(attrs.get("port_security_enabled",
                                           network.resource.get("port_security_enabled", True)))
            mac = attrs.get("mac_address")
            compares: list[Compare] = [key_absent(self.repository.key(port["id"])),
                                       still_exists(network.kv),
                                       not_being_deleted(network_id)]
            if mac is not None:
                if await self.store.get(mac_key(mac)) is not None:
                    raise Conflict(f"Unable to complete operation for network {network_id}. "
                                   f"The mac address {mac} is in use.",
                                   type_name="MacAddressInUse")
            else:
                mac = random_mac(self.context.config.base_mac, self.rng)
            compares.append(key_absent(mac_key(mac)))
            reservations = Reservations(self.hints)
            try:
                addresses = await self._allocate(
                    network_id, subnets, attrs.get("fixed_ips"), port_id=port["id"], mac=mac,
                    reservations=reservations,
                    auto_addresses=attrs.get("device_owner") not in ROUTER_INTERFACE_OWNERS)
                groups = await self._security(identity, port, attrs, port_security,
                                              addresses.fixed_ips)
            except BaseException:
                reservations.lost()
                raise
            port["allowed_address_pairs"] = with_pair_macs(
                port.get("allowed_address_pairs", []), mac)
            port.update({
                "mac_address": mac, "fixed_ips": addresses.fixed_ips, "status": "DOWN",
                "port_security_enabled": port_security, "security_groups": groups,
                "binding:vif_type": VIF_TYPE_UNBOUND, "binding:vif_details": {},
            })
            return Plan([*compares, *addresses.compares],
                        [self.repository.put(port), Put(mac_key(mac), port["id"].encode()),
                         *addresses.ops],
                        port, on_conflict=reservations.lost, on_success=reservations.committed)

        return await commit_with_retry(self.store, decide)

    async def _security(self, identity: Identity, port: Resource, attrs: dict[str, Any],
                        port_security: bool, fixed_ips: list[dict[str, str]]) -> list[str]:
        requested = attrs.get("security_groups")
        if not port_security:
            if requested:
                raise BadRequest("Port security must be enabled and port must have an IP "
                                 "address in order to use security groups.",
                                 type_name="PortSecurityAndIPRequiredForSecurityGroups")
            if attrs.get("allowed_address_pairs"):
                raise Conflict("Port Security must be enabled in order to have allowed "
                               "address pairs on a port.",
                               type_name="AddressPairAndPortSecurityRequired")
            return []
        if port.get("device_owner", "").startswith("network:"):
            # Neutron gives network-owned ports (router, DHCP) no groups.
            return list(requested or [])
        return await self.security_groups.resolve(identity, port["tenant_id"], requested,
                                                  port_security)

    @staticmethod
    def _requested_on_update(old: Resource, changes: dict[str, Any], subnets: Sequence[Stored]
                             ) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """The addresses to ask for and those that may stay, as Neutron
        decides on an update: a port keeps its SLAAC/DHCPv6-stateless
        addresses unless it is a router's, and they follow a new MAC."""
        auto = {s.resource["id"] for s in subnets if is_auto_address(s.resource)}
        source = changes["fixed_ips"] if "fixed_ips" in changes else old["fixed_ips"]
        requested: list[dict[str, str]] = [dict(ip) for ip in source]
        if old.get("device_owner") not in ROUTER_INTERFACE_OWNERS:
            named = {r.get("subnet_id") for r in requested}
            requested += [{"subnet_id": ip["subnet_id"]} for ip in old["fixed_ips"]
                          if ip["subnet_id"] in auto and ip["subnet_id"] not in named]
        keep = list(old["fixed_ips"])
        if changes.get("mac_address", old["mac_address"]) != old["mac_address"]:
            requested = [{"subnet_id": r["subnet_id"]} if r.get("subnet_id") in auto else r
                         for r in requested]
            keep = [ip for ip in keep if ip["subnet_id"] not in auto]
        return requested, keep

    async def _refuse_losing_floating_ips(self, port_id: str,
                                          fixed_ips: list[dict[str, str]]) -> None:
        """Neutron refuses to take away a fixed IP a floating IP points at."""
        kept = {ip["ip_address"] for ip in fixed_ips}
        for kv in (await self.store.range(neutron_prefix("fip_assoc", port_id))).kvs:
            if kv.key.rsplit("/", 1)[-1] not in kept:
                raise BadRequest(f"Bad port request: Cannot update the fixed_ips of the port "
                                 f"{port_id}, because its original fixed_ip has been "
                                 "associated to a floating ip.", type_name="BadRequest")

    async def update(self, identity: Identity, resource_id: str, changes: dict[str, Any],
                     expected_revision: int | None) -> Resource:
        released: list[tuple[str, str]] = []

        async def decide() -> Plan[Resource]:
            found = await self.writable(identity, resource_id)
            old = found.resource
            check_revision(old, expected_revision)
            new = self.changed(old, changes)
            compares: list[Compare] = [key_unchanged(found.kv)]
            ops: list[Op] = []
            reservations = Reservations(self.hints)
            released.clear()
            if "mac_address" in changes and changes["mac_address"] != old["mac_address"]:
                if old.get("binding:vif_type") not in (VIF_TYPE_UNBOUND, None):
                    raise Conflict(f"Port {resource_id} is bound; its MAC address cannot "
                                   "change.", type_name="PortBound")
                mac = changes["mac_address"]
                if await self.store.get(mac_key(mac)) is not None:
                    raise Conflict(f"Unable to complete operation for network "
                                   f"{old['network_id']}. The mac address {mac} is in use.",
                                   type_name="MacAddressInUse")
                compares.append(key_absent(mac_key(mac)))
                ops += [Delete(mac_key(old["mac_address"])), Put(mac_key(mac),
                                                                 resource_id.encode())]
            mac_changed = new["mac_address"] != old["mac_address"]
            try:
                if "fixed_ips" in changes or mac_changed:
                    _, subnets = await self._network_and_subnets(identity,
                                                                       old["network_id"])
                    requested, keep = self._requested_on_update(old, changes, subnets)
                    addresses = await self._allocate(
                        old["network_id"], subnets, requested, port_id=resource_id,
                        mac=new["mac_address"], reservations=reservations, keep=keep)
                    new["fixed_ips"] = addresses.fixed_ips
                    await self._refuse_losing_floating_ips(resource_id, new["fixed_ips"])
                    compares += addresses.compares
                    ops += addresses.ops
                    current = {(ip["subnet_id"], ip["ip_address"]) for ip in new["fixed_ips"]}
                    for ip in old["fixed_ips"]:
                        if (ip["subnet_id"], ip["ip_address"]) not in current:
                            ops.append(Delete(ipam_key(ip["subnet_id"], ip["ip_address"])))
                            released.append((ip["subnet_id"], ip["ip_address"]))
                if any(k in changes for k in ("security_groups", "port_security_enabled",
                                              "allowed_address_pairs")):
                    if changes.get("port_security_enabled") is False and \
                            new.get("security_groups") and "security_groups" not in changes:
                        raise Conflict("Port has security group associated. Cannot disable "
                                       "port security or ip address until security group is "
                                       "removed", type_name="PortSecurityPortHasSecurityGroup")
                    new["security_groups"] = await self._security(
                        identity, new, {"security_groups": new.get("security_groups"),
                                        "allowed_address_pairs":
                                            new.get("allowed_address_pairs")},
                        bool(new.get("port_security_enabled")), new["fixed_ips"])
            except BaseException:
                reservations.lost()
                raise
            new["allowed_address_pairs"] = with_pair_macs(new.get("allowed_address_pairs", []),
                                                          new["mac_address"])
            ops.insert(0, self.repository.put(new))

            def committed() -> None:
                reservations.committed()
                for sid, address in released:
                    self.hints.released(sid, address)

            return Plan(compares, ops, new, on_conflict=reservations.lost,
                        on_success=committed)

        return await commit_with_retry(self.store, decide)

    async def delete(self, identity: Identity, resource_id: str,
                     expected_revision: int | None) -> None:
        await self._delete(identity, resource_id, expected_revision, internal=False)

    async def _delete(self, identity: Identity, resource_id: str,
                      expected_revision: int | None, *, internal: bool) -> None:
        async def decide() -> Plan[Resource]:
            found = await self.writable(identity, resource_id)
            check_revision(found.resource, expected_revision)
            port = found.resource
            compares: list[Compare] = [key_unchanged(found.kv)]
            ops: list[Op] = [Delete(found.kv.key), Delete(mac_key(port["mac_address"]))]
            ops += [Delete(ipam_key(ip["subnet_id"], ip["ip_address"]))
                    for ip in port["fixed_ips"]]
            for hook in self.delete_hooks:
                more_compares, more_ops = await hook.port_deleting(port, internal=internal)
                compares += more_compares
                ops += more_ops
            return Plan(compares, ops, port)

        port = await commit_with_retry(self.store, decide)
        for ip in port["fixed_ips"]:
            self.hints.released(ip["subnet_id"], ip["ip_address"])

    async def delete_internal(self, port_id: str) -> None:
        """Delete a port on behalf of another resource (router interfaces)."""
        from kumonet.api.identity import ADMIN

        await self._delete(ADMIN, port_id, None, internal=True)
