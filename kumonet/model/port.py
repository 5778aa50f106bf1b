"""The Neutron port resource, with port binding, port security and allowed
address pairs folded in."""

from __future__ import annotations

from kumonet.model import converters as c
from kumonet.model.common import base_attributes
from kumonet.model.resource import Access, Attribute, Default, ResourceDefinition

# Ports the network owns: deleted with their network, not counted as "in use".
AUTO_DELETE_DEVICE_OWNERS = frozenset({"network:dhcp", "network:distributed",
                                       "network:floatingip_agent_gateway"})
# Ports whose addresses do not keep their subnet in use (deleted with it).
SUBNET_OWNED_DEVICE_OWNERS = frozenset({"network:dhcp"})
VNIC_TYPES = ("normal", "direct", "macvtap", "baremetal", "direct-physical", "virtio-forwarder",
              "smart-nic", "vdpa", "remote-managed")

fixed_ip = c.record({}, {"subnet_id": c.uuid, "ip_address": c.ip_address})
address_pair = c.record({"ip_address": c.ip_or_cidr}, {"mac_address": c.mac_address})

PORT = ResourceDefinition("ports", "port", (
    *base_attributes(),
    Attribute("network_id", c.uuid, default=Default.REQUIRED, on_update=False),
    Attribute("admin_state_up", c.to_bool, default=True),
    Attribute("mac_address", c.mac_address),
    Attribute("fixed_ips", c.list_of(fixed_ip), sortable=False),
    Attribute("device_id", c.string(255), default=""),
    Attribute("device_owner", c.string(255), default=""),
    Attribute("status", c.string(16), on_create=False, on_update=False),
    Attribute("security_groups", c.list_of(c.uuid, unique=True), sortable=False),
    Attribute("port_security_enabled", c.to_bool),
    Attribute("allowed_address_pairs", c.list_of(address_pair), default=[],
              filterable=False, sortable=False),
    Attribute("binding:vnic_type", c.one_of(*VNIC_TYPES), default="normal"),
    # Neutron 2023.2+ (ADMIN_OR_SERVICE): Nova's service user, with the
    # ``service`` role and no admin, binds ports and reads how they were bound.
    Attribute("binding:host_id", c.string(255), default="", read=Access.ADMIN_OR_SERVICE,
              write=Access.ADMIN_OR_SERVICE),
    Attribute("binding:profile", c.dict_body, default={}, filterable=False, sortable=False,
              read=Access.ADMIN_OR_SERVICE, write=Access.ADMIN_OR_SERVICE),
    Attribute("binding:vif_type", c.string(64), filterable=True,
              read=Access.ADMIN_OR_SERVICE, write=Access.ADMIN),
    Attribute("binding:vif_details", c.dict_body, filterable=False, sortable=False,
              read=Access.ADMIN_OR_SERVICE, write=Access.ADMIN),
))

VIF_TYPE_UNBOUND = "unbound"
