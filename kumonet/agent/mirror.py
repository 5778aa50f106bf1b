"""The agent's copy of the intent it needs, kept current from watch events.

Stored values are Neutron JSON (the full admin view the API writes); each is
converted once, when it arrives, to the dataplane's frozen intent types, so an
`Intent` for the compiler is built without reconverting everything.

Routers are kept as Neutron JSON (with the raw subnets and networks): the L3
role builds its `RouterIntent`s from them (`kumonet.l3.intent.router_from_neutron`),
and every host needs the routers, their placements and HA states to know on
which host a router's ports live (`kumonet.agent.router_hosts`).
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
HA_STATES_PREFIX = "/operational/neutron/l3/"
PLACEMENTS = "l3_placements"


@dataclass(frozen=True, slots=True)
class Change:
    """What an applied batch touched, for deciding what to do next."""

    ports: frozenset[str] = frozenset()
    intent_changed: bool = False
    routers_changed: bool = False  # routers, FIPs, placements or their ports/subnets


@dataclass(frozen=True, slots=True)
class HaReport:
    """One host's HA state for a router; ``revision`` (the key's mod_revision)
    orders transitions across hosts."""

    state: str
    revision: int


@dataclass
class IntentMirror:
    networks: dict[str, Network] = field(default_factory=dict)
    subnets: dict[str, Subnet] = field(default_factory=dict)
    ports: dict[str, Port] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    security_groups: dict[str, SecurityGroup] = field(default_factory=dict)
    # The raw port bodies: status and binding are reported against them.
    port_bodies: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    # Raw bodies for the L3 side.
    subnet_bodies: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    network_bodies: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    routers: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    floatingips: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    placements: dict[str, frozenset[str]] = field(default_factory=dict)  # router → hosts
    ha_states: dict[str, dict[str, HaReport]] = field(default_factory=dict)  # router → host →

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
        self.subnet_bodies.clear()
        self.network_bodies.clear()
        self.routers.clear()
        self.floatingips.clear()
        self.placements.clear()
        return self.apply_config((key, value) for key, value in items)

    def reset_hosts(self, items: Iterable[tuple[str, Any]]) -> Change:
        self.hosts.clear()
        return self.apply_hosts(items)

    def apply_config(self, changes: Iterable[tuple[str, Any]]) -> Change:
        """Apply (key, value) pairs under ``/config/neutron/``; value None deletes."""
        touched: set[str] = set()
        changed = routers = False
        for key, value in changes:
            collection, _, item_id = key[len(CONFIG_PREFIX) :].partition("/")
            if collection == PLACEMENTS:
                # Router placements change which host a router's ports live on.
                if self._place(item_id, value):
                    changed = routers = True
                continue
            if not item_id or "/" in item_id:
                continue  # allocation keys (ipam/…, macs/…) are not intent
            if collection == "networks":
                routers |= _raw(self.network_bodies, item_id, value)
                changed |= _set(self.networks, item_id, value, network_from_neutron)
            elif collection == "subnets":
                routers |= _raw(self.subnet_bodies, item_id, value)
                changed |= _set(self.subnets, item_id, value, subnet_from_neutron)
            elif collection == "routers":
                # A router's ``ha`` flag decides where its ports live: recompile.
                if _raw(self.routers, item_id, value):
                    changed = routers = True
            elif collection == "floatingips":
                routers |= _raw(self.floatingips, item_id, value)
            elif collection == "security_groups":
                # Groups embed their rules; the rules' own keys add nothing.
                changed |= _set(self.security_groups, item_id, value, security_group_from_neutron)
            elif collection == "ports":
                before = self.port_bodies.get(item_id)
                if value is None:
                    self.port_bodies.pop(item_id, None)
                else:
                    self.port_bodies[item_id] = value
                routers |= _router_port(before) or _router_port(value)
                changed |= _set(self.ports, item_id, value, port_from_neutron)
                touched.add(item_id)
        return Change(ports=frozenset(touched), intent_changed=changed, routers_changed=routers)

    def _place(self, item_id: str, value: Any) -> bool:
        router_id, _, host = item_id.partition("/")
        if not router_id or not host or "/" in host:
            return False
        hosts = self.placements.get(router_id, frozenset())
        updated = hosts | {host} if value is not None else hosts - {host}
        if updated == hosts:
            return False
        if updated:
            self.placements[router_id] = updated
        else:
            del self.placements[router_id]
        return True

    def reset_ha_states(self, items: Iterable[tuple[str, Any, int]]) -> Change:
        self.ha_states.clear()
        self.apply_ha_states(items)
        return Change(intent_changed=True)

    def apply_ha_states(self, changes: Iterable[tuple[str, Any, int]]) -> Change:
        """(key, value or None, mod_revision) under ``/operational/neutron/l3/``."""
        changed = False
        for key, value, revision in changes:
            router_id, _, host = key[len(HA_STATES_PREFIX) :].partition("/")
            if not router_id or not host or "/" in host:
                continue
            states = self.ha_states.setdefault(router_id, {})
            state = (value or {}).get("state") if isinstance(value, Mapping) else None
            if not state:
                changed |= states.pop(host, None) is not None
                if not states:
                    del self.ha_states[router_id]
                continue
            previous = states.get(host)
            states[host] = HaReport(str(state), revision)
            # A re-report of the same state (new lease) moves no port.
            changed |= previous is None or previous.state != state
        return Change(intent_changed=changed, routers_changed=changed)

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


def _raw(target: dict[str, Mapping[str, Any]], item_id: str, value: Any) -> bool:
    """Store a raw body (or delete); True when it changed."""
    if value is None:
        return target.pop(item_id, None) is not None
    if not isinstance(value, Mapping) or target.get(item_id) == value:
        return False
    target[item_id] = value
    return True


def _router_port(body: Mapping[str, Any] | None) -> bool:
    owner = (body or {}).get("device_owner") or ""
    return owner.startswith("network:router") or owner == "network:ha_router_replicated_interface"


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
