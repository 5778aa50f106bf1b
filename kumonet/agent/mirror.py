"""The agent's copy of the intent it needs, kept current from watch events.

Stored values are Neutron JSON (the full admin view the API writes); each is
converted once, when it arrives, to the dataplane's frozen intent types, so an
`Intent` for the compiler is built without reconverting everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kumonet.dataplane.intent import (
    Host,
    Intent,
    Network,
    Port,
    SecurityGroup,
    Subnet,
    network_from_neutron,
    port_from_neutron,
    security_group_from_neutron,
    subnet_from_neutron,
)

CONFIG_PREFIX = "/config/neutron/"
HOSTS_PREFIX = "/operational/topology/hosts/"


@dataclass(frozen=True, slots=True)
class Change:
    """What an applied batch touched, for deciding what to do next."""

    ports: frozenset[str] = frozenset()
    intent_changed: bool = False


@dataclass
class IntentMirror:
    networks: dict[str, Network] = field(default_factory=dict)
    subnets: dict[str, Subnet] = field(default_factory=dict)
    ports: dict[str, Port] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    security_groups: dict[str, SecurityGroup] = field(default_factory=dict)
    # The raw port bodies: status and binding are reported against them.
    port_bodies: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def intent(self) -> Intent:
        return Intent(
            networks=dict(self.networks),
            subnets=dict(self.subnets),
            ports=dict(self.ports),
            hosts=dict(self.hosts),
            security_groups=dict(self.security_groups),
        )

    def reset_config(self, items: Iterable[tuple[str, Any]]) -> Change:
        self.networks.clear()
        self.subnets.clear()
        self.ports.clear()
        self.port_bodies.clear()
        self.security_groups.clear()
        return self.apply_config((key, value) for key, value in items)

    def reset_hosts(self, items: Iterable[tuple[str, Any]]) -> Change:
        self.hosts.clear()
        return self.apply_hosts(items)

    def apply_config(self, changes: Iterable[tuple[str, Any]]) -> Change:
        """Apply (key, value) pairs under ``/config/neutron/``; value None deletes."""
        touched: set[str] = set()
        changed = False
        for key, value in changes:
            collection, _, item_id = key[len(CONFIG_PREFIX) :].partition("/")
            if not item_id or "/" in item_id:
                continue  # allocation keys (ipam/…, macs/…) are not intent
            if collection == "networks":
                changed |= _set(self.networks, item_id, value, network_from_neutron)
            elif collection == "subnets":
                changed |= _set(self.subnets, item_id, value, subnet_from_neutron)
            elif collection == "security_groups":
                # Groups embed their rules; the rules' own keys add nothing.
                changed |= _set(self.security_groups, item_id, value, security_group_from_neutron)
            elif collection == "ports":
                if value is None:
                    self.port_bodies.pop(item_id, None)
                else:
                    self.port_bodies[item_id] = value
                changed |= _set(self.ports, item_id, value, port_from_neutron)
                touched.add(item_id)
        return Change(ports=frozenset(touched), intent_changed=changed)

    def apply_hosts(self, changes: Iterable[tuple[str, Any]]) -> Change:
        changed = False
        for key, value in changes:
            name = key[len(HOSTS_PREFIX) :]
            if not name or "/" in name:
                continue
            tunnel_ip = (value or {}).get("tunnel_ip") if value is not None else None
            if value is None or not tunnel_ip:
                changed |= self.hosts.pop(name, None) is not None
                continue
            host = Host(name, str(tunnel_ip))
            if self.hosts.get(name) != host:
                self.hosts[name] = host
                changed = True
        return Change(intent_changed=changed)


def _set(target: dict[str, Any], item_id: str, value: Any, convert: Any) -> bool:
    """Store the converted value (or delete); True when the intent changed."""
    if value is None:
        return target.pop(item_id, None) is not None
    try:
        converted = convert(value)
    except (KeyError, TypeError, ValueError):
        # A malformed stored object must not stop the agent; it is simply not realised.
        return target.pop(item_id, None) is not None
    if target.get(item_id) == converted:
        return False
    target[item_id] = converted
    return True
