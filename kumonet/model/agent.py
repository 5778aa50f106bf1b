"""Neutron's agents, derived from the hosts that registered with kumonet.

kumonet has one process per host (``kumonet-agent``) that plays the roles
Neutron spreads over several agents (Open vSwitch, DHCP, L3, metadata). The
agents API shows one entry per (host, role) as Neutron does, so operators'
tools (``openstack network agent list``) keep working. Everything here is
pure: what a host states, how its agents' ids and bodies are derived.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kumonet.model import converters as c
from kumonet.model.errors import BadRequest
from kumonet.model.resource import Access, Attribute, ResourceDefinition

# Agent ids are uuid5 of (host, type) in this namespace: the same host and
# role get the same id after any restart, on any server, with no id table.
AGENT_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:kumonet:agent")
MAX_HEARTBEAT_INTERVAL = 300
DEFAULT_HEARTBEAT_INTERVAL = 30
# A host is alive while its lease lives: three missed heartbeats end it.
LEASE_TTL_HEARTBEATS = 3
# Host names become key parts.
HOST_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")


@dataclass(frozen=True, slots=True)
class AgentType:
    name: str
    binary: str
    topic: str
    # Neutron reports an availability zone for schedulable agents only.
    zoned: bool


OVS_AGENT = AgentType("Open vSwitch agent", "neutron-openvswitch-agent", "N/A", False)
DHCP_AGENT = AgentType("DHCP agent", "neutron-dhcp-agent", "dhcp_agent", True)
L3_AGENT = AgentType("L3 agent", "neutron-l3-agent", "l3_agent", True)
METADATA_AGENT = AgentType("Metadata agent", "neutron-metadata-agent", "N/A", False)
AGENT_TYPES: Mapping[str, AgentType] = {
    t.name: t for t in (OVS_AGENT, DHCP_AGENT, L3_AGENT, METADATA_AGENT)}


def agent_id(host: str, agent_type: str) -> str:
    return str(uuid.uuid5(AGENT_ID_NAMESPACE, f"{host}/{agent_type}"))


def _ro(name: str, convert: c.Converter, **kw: Any) -> Attribute:
    return Attribute(name, convert, on_create=False, on_update=False, **kw)


# Agents are admin-only as a whole (Neutron's policy hides them from members),
# so attributes need no per-attribute read policy.
AGENT = ResourceDefinition("agents", "agent", (
    _ro("id", c.uuid),
    _ro("agent_type", c.string(255)),
    _ro("binary", c.string(255)),
    _ro("topic", c.string(255)),
    _ro("host", c.string(255)),
    Attribute("admin_state_up", c.to_bool, default=True, on_create=False,
              write=Access.ADMIN),
    _ro("alive", c.to_bool),
    _ro("created_at", c.string(64)),
    _ro("started_at", c.string(64)),
    _ro("heartbeat_timestamp", c.string(64)),
    _ro("configurations", c.dict_body, filterable=False, sortable=False),
    _ro("availability_zone", c.string(255)),
    Attribute("description", c.string(255), default="", on_create=False,
              write=Access.ADMIN),
    _ro("resources_synced", c.to_bool),
))


def _string_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"'{name}' must be a list of strings")
    return list(value)


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What a host's agent states when it registers."""

    host: str
    agent_types: tuple[str, ...]
    tunnel_ip: str | None
    tunnel_types: tuple[str, ...]
    bridge_mappings: Mapping[str, str]
    configurations: Mapping[str, Any]
    heartbeat_interval: int
    availability_zone: str
    integration_bridge: str
    datapath_type: str

    @property
    def lease_ttl(self) -> int:
        return self.heartbeat_interval * LEASE_TTL_HEARTBEATS

    def record(self) -> dict[str, Any]:
        """The JSON kept under ``/operational/topology/hosts/<host>``."""
        return {"host": self.host, "agent_types": list(self.agent_types),
                "tunnel_ip": self.tunnel_ip, "tunnel_types": list(self.tunnel_types),
                "bridge_mappings": dict(self.bridge_mappings),
                "configurations": dict(self.configurations),
                "heartbeat_interval": self.heartbeat_interval,
                "availability_zone": self.availability_zone,
                "integration_bridge": self.integration_bridge,
                "datapath_type": self.datapath_type}


def parse_host_facts(host: str, body: Any) -> HostFacts:
    """Validate a registration body (``PUT /v1/agent/hosts/{host}``)."""
    if not HOST_NAME.match(host):
        raise BadRequest(f"Invalid host name {host!r}")
    if not isinstance(body, dict):
        raise BadRequest("Registration body must be a JSON object")
    if body.get("host", host) != host:
        raise BadRequest(f"Body host {body.get('host')!r} does not match the path's {host!r}")
    types = _string_list("agent_types", body.get("agent_types", [OVS_AGENT.name]))
    unknown = [t for t in types if t not in AGENT_TYPES]
    if unknown or not types:
        raise BadRequest(f"Unknown or missing agent types {unknown}; known: "
                         f"{sorted(AGENT_TYPES)}")
    interval = body.get("heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL)
    if not isinstance(interval, int) or isinstance(interval, bool) \
            or not 1 <= interval <= MAX_HEARTBEAT_INTERVAL:
        raise BadRequest(f"'heartbeat_interval' must be an integer of 1 to "
                         f"{MAX_HEARTBEAT_INTERVAL} seconds")
    tunnel_ip = body.get("tunnel_ip")
    if tunnel_ip is not None:
        tunnel_ip = c.ip_address(tunnel_ip)
    mappings = body.get("bridge_mappings", {})
    if not isinstance(mappings, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mappings.items()):
        raise BadRequest("'bridge_mappings' must map physical network names to bridges")
    configurations = body.get("configurations", {})
    if not isinstance(configurations, dict):
        raise BadRequest("'configurations' must be a JSON object")
    texts = {}
    for name, default in (("availability_zone", "nova"), ("integration_bridge", "br-int"),
                          ("datapath_type", "system")):
        value = body.get(name, default)
        if not isinstance(value, str) or not value:
            raise BadRequest(f"'{name}' must be a non-empty string")
        texts[name] = value
    return HostFacts(host=host, agent_types=tuple(dict.fromkeys(types)), tunnel_ip=tunnel_ip,
                     tunnel_types=tuple(_string_list("tunnel_types",
                                                     body.get("tunnel_types", []))),
                     bridge_mappings=dict(mappings), configurations=dict(configurations),
                     heartbeat_interval=interval, **texts)


def agent_configurations(agent_type: AgentType, record: Mapping[str, Any]) -> dict[str, Any]:
    """Neutron's ``configurations`` for one role of a host."""
    extra = dict(record.get("configurations") or {})
    if agent_type is OVS_AGENT:
        return {"bridge_mappings": record.get("bridge_mappings", {}),
                "tunnel_types": record.get("tunnel_types", []),
                "tunneling_ip": record.get("tunnel_ip"),
                "integration_bridge": record.get("integration_bridge", "br-int"),
                "datapath_type": record.get("datapath_type", "system"),
                "l2_population": False, "arp_responder_enabled": False,
                "enable_distributed_routing": False, **extra}
    if agent_type is L3_AGENT:
        return {"agent_mode": "legacy", "ha_vrrp_advert_int": 2, **extra}
    return extra


def agent_body(agent_type: AgentType, record: Mapping[str, Any], *, alive: bool,
               admin: Mapping[str, Any]) -> dict[str, Any]:
    """One agent as Neutron shows it. ``record`` is the host's stored
    registration, ``admin`` what operators set (``admin_state_up``,
    ``description``)."""
    host = record["host"]
    return {
        "id": agent_id(host, agent_type.name),
        "agent_type": agent_type.name,
        "binary": agent_type.binary,
        "topic": agent_type.topic,
        "host": host,
        "admin_state_up": admin.get("admin_state_up", True),
        "alive": alive,
        "created_at": record.get("created_at"),
        "started_at": record.get("started_at"),
        "heartbeat_timestamp": record.get("heartbeat_timestamp"),
        "configurations": agent_configurations(agent_type, record),
        "availability_zone": record.get("availability_zone") if agent_type.zoned else None,
        "description": admin.get("description", ""),
        "resources_synced": None,
    }
