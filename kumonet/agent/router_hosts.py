"""On which host a router's ports live, for the L2 compiler of every host.

A router's ``qr-``/``qg-`` ports have one Neutron identity (id, MAC, address)
but, for an HA router, a copy on every hosting L3 host. Only the VRRP master's
copy must get traffic: every host's compiler treats the port as bound to the
host whose HA state is ``active`` (VMs' frames to the gateway MAC tunnel
there; the backups' copies are not local ports anywhere, so they get
nothing). When several hosts say ``active`` (split brain, a cut link that
has not expired yet) the most recent transition wins: the HA state key's
``mod_revision``. With no active report but every other placed host
standby, the one placed host without a report is the master: its agent
lost the servers (its report went with its lease) while its keepalived
kept the role, its peers still hearing it (`lost_master`). Otherwise, with
no active host yet, the port's own binding stands.

A non-HA router's ports live on its placement host. ``ha-`` ports (one per
host, bound to it) are ordinary per-host ports and are left alone.

An L3 host knows its own transitions before the servers echo them back
(``local_active``): a router that just became active here is compiled as
local at once, so its ports pass traffic (and the gratuitous ARPs sent after
the flow update) without waiting for the round trip; one that just left
active here is no longer compiled here even if the servers still say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kumonet.agent.mirror import HaReport

#: Owners of the ports that follow the router (not the per-host HA ports).
ROUTER_PORT_OWNERS = frozenset(
    {
        "network:router_interface",
        "network:router_gateway",
        "network:ha_router_replicated_interface",
    }
)
ACTIVE = "active"


def active_host(
    states: Mapping[str, HaReport] | None, *, excluding: str | None = None
) -> str | None:
    """The host the router is active on; the latest transition to active wins."""
    best: tuple[int, str] | None = None
    for host, report in (states or {}).items():
        if host == excluding:
            continue
        if report.state == ACTIVE and (best is None or (report.revision, host) > best):
            best = (report.revision, host)
    return best[1] if best else None


def lost_master(
    states: Mapping[str, HaReport] | None, placed: frozenset[str], *, excluding: str | None = None
) -> str | None:
    """The placed host without an HA report when every other placed host
    reports standby (see the module docstring); ``None`` otherwise."""
    states = states or {}
    silent = [h for h in sorted(placed) if h not in states and h != excluding]
    others = [states[h].state for h in placed if h in states]
    if len(silent) == 1 and others and all(state == "standby" for state in others):
        return silent[0]
    return None


def router_port_hosts(
    port_bodies: Mapping[str, Mapping[str, Any]],
    routers: Mapping[str, Mapping[str, Any]],
    placements: Mapping[str, frozenset[str]],
    ha_states: Mapping[str, Mapping[str, HaReport]],
    *,
    here: str = "",
    local_active: Mapping[str, bool] | None = None,
) -> dict[str, str]:
    """port id → the host its router port lives on (where it is known)."""
    local_active = local_active or {}
    where: dict[str, str] = {}
    for port_id, body in port_bodies.items():
        if body.get("device_owner") not in ROUTER_PORT_OWNERS:
            continue
        router_id = body.get("device_id") or ""
        router = routers.get(router_id)
        if router is None:
            continue
        if router.get("ha"):
            mine = local_active.get(router_id)
            if mine:
                host: str | None = here
            else:
                states = ha_states.get(router_id)
                excluding = here if mine is False else None
                host = active_host(states, excluding=excluding) or lost_master(
                    states, placements.get(router_id, frozenset()), excluding=excluding
                )
        else:
            hosts = sorted(placements.get(router_id, ()))
            host = hosts[0] if len(hosts) == 1 else None
        if host:
            where[port_id] = host
    return where
