"""Every resource definition, for the meta-test and the API's docs.

Resources added later append theirs here (one line each)."""

from __future__ import annotations

from kumonet.model.network import NETWORK
from kumonet.model.port import PORT
from kumonet.model.resource import ResourceDefinition
from kumonet.model.subnet import SUBNET

ALL_DEFINITIONS: tuple[ResourceDefinition, ...] = (NETWORK, SUBNET, PORT)
