"""The Neutron network resource, with the provider, external-net, MTU and
port-security extensions folded in."""

from __future__ import annotations

from kumonet.model import converters as c
from kumonet.model.common import admin_only, base_attributes
from kumonet.model.resource import Access, Attribute, ResourceDefinition
from kumonet.model.segment import NETWORK_TYPES

NETWORK = ResourceDefinition("networks", "network", (
    *base_attributes(),
    Attribute("admin_state_up", c.to_bool, default=True),
    Attribute("status", c.string(16), on_create=False, on_update=False),
    Attribute("subnets", c.list_of(c.uuid), on_create=False, on_update=False,
              sortable=False),
    Attribute("shared", c.to_bool, default=False, write=Access.ADMIN),
    # Neutron's policy: only admins create external networks; all may read it.
    Attribute("router:external", c.to_bool, default=False, write=Access.ADMIN),
    Attribute("mtu", c.int_in_range(68, 65535)),
    Attribute("port_security_enabled", c.to_bool, default=True),
    Attribute("availability_zone_hints", c.list_of(c.string(255)), default=[],
              on_update=False, filterable=False, sortable=False),
    Attribute("availability_zones", c.list_of(c.string(255)), on_create=False,
              on_update=False, filterable=False, sortable=False),
    Attribute("ipv4_address_scope", c.nullable(c.uuid), on_create=False, on_update=False),
    Attribute("ipv6_address_scope", c.nullable(c.uuid), on_create=False, on_update=False),
    admin_only(Attribute("provider:network_type", c.one_of(*NETWORK_TYPES), on_update=False)),
    admin_only(Attribute("provider:physical_network", c.nullable(c.string(64)),
                         on_update=False)),
    admin_only(Attribute("provider:segmentation_id", c.nullable(c.to_int), on_update=False)),
))

DEVICE_OWNER_NETWORK_PREFIX = "network:"
