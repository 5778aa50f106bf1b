"""Every resource definition, for the meta-test and the API's docs.

Resources added later append theirs here (one line each)."""

from __future__ import annotations

from kumonet.model.floatingip import FLOATINGIP
from kumonet.model.network import NETWORK
from kumonet.model.port import PORT
from kumonet.model.resource import ResourceDefinition
from kumonet.model.router import ROUTER
from kumonet.model.security_group import SECURITY_GROUP, SECURITY_GROUP_RULE
from kumonet.model.subnet import SUBNET

ALL_DEFINITIONS: tuple[ResourceDefinition, ...] = (NETWORK, SUBNET, PORT, SECURITY_GROUP,
                                                   SECURITY_GROUP_RULE, ROUTER, FLOATINGIP)
