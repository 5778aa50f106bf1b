"""The Neutron floating IP resource (with fip-port-details folded in).

The address itself is held by a port on the external network (device_owner
``network:floatingip``, device_id the floating IP's id, no project), as in
Neutron, so the external subnets' IPAM is the only allocator."""

from __future__ import annotations

from kumonet.model import converters as c
from kumonet.model.common import base_attributes
from kumonet.model.errors import BadRequest, Conflict, NotFound
from kumonet.model.resource import Access, Attribute, Default, ResourceDefinition

DEVICE_OWNER_FLOATINGIP = "network:floatingip"

FLOATINGIP = ResourceDefinition("floatingips", "floatingip", (
    *base_attributes(with_name=False),
    Attribute("floating_network_id", c.uuid, default=Default.REQUIRED, on_update=False),
    # Neutron's policy: only admins choose the address.
    Attribute("floating_ip_address", c.ip_address, on_update=False, write=Access.ADMIN),
    # Which external subnet to take the address from; Neutron does not show it.
    Attribute("subnet_id", c.nullable(c.uuid), on_update=False, read=Access.NOBODY),
    Attribute("port_id", c.nullable(c.uuid), default=None),
    Attribute("fixed_ip_address", c.nullable(c.ip_address), default=None),
    Attribute("router_id", c.nullable(c.uuid), on_create=False, on_update=False),
    Attribute("status", c.string(16), on_create=False, on_update=False),
    Attribute("port_details", c.nullable(c.dict_body), on_create=False, on_update=False,
              filterable=False, sortable=False),
    # No dns_*, port_forwardings or qos_policy_id: Neutron shows them only
    # with the dns-integration, port forwarding and QoS plugins, none here.
))


def gateway_not_found(network_id: str, subnet_id: str, port_id: str) -> NotFound:
    return NotFound(f"External network {network_id} is not reachable from subnet "
                    f"{subnet_id}.  Therefore, cannot associate Port {port_id} with a "
                    "Floating IP.", type_name="ExternalGatewayForFloatingIPNotFound")


def already_associated(fip: dict[str, str], port_id: str, fixed_ip: str,
                       network_id: str) -> Conflict:
    return Conflict(f"Cannot associate floating IP {fip['floating_ip_address']} "
                    f"({fip['id']}) with port {port_id} using fixed IP {fixed_ip}, as that "
                    f"fixed IP already has a floating IP on external network {network_id}.",
                    type_name="FloatingIPPortAlreadyAssociated")


def bad_floatingip_request(message: str) -> BadRequest:
    return BadRequest(f"Bad floatingip request: {message}.", type_name="BadRequest")


def port_details(port: dict[str, object]) -> dict[str, object]:
    return {key: port.get(key) for key in ("name", "network_id", "mac_address",
                                           "admin_state_up", "status", "device_id",
                                           "device_owner")}
