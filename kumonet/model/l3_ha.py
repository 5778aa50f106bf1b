"""L3 HA, the pure part: names of the per-project HA network, VRRP ids, and
which L3 hosts a router goes to.

As Neutron's L3HA does (seed 002), each project with HA routers has one HA
network ("HA network tenant <project>", owned by no project) with one subnet
in ``l3_ha_net_cidr``; each HA router gets a VRRP id unique in that network
(1-255) and one HA port per hosting host (``network:router_ha_interface``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kumonet.model.errors import Conflict

VR_ID_MIN = 1
VR_ID_MAX = 255
# Neutron shows these (seed 002's net-list and router-port-list).
HA_NETWORK_NAME = "HA network tenant {}"
HA_SUBNET_NAME = "HA subnet tenant {}"
HA_PORT_NAME = "HA port tenant {}"
HA_STATE_ACTIVE = "active"
HA_STATE_STANDBY = "standby"
# Router status while two hosts both claim to be active (split brain):
# Neutron has no such status; ERROR is the status clients already know.
ROUTER_STATUS_SPLIT_BRAIN = "ERROR"
ROUTER_STATUS_ACTIVE = "ACTIVE"


def ha_network_name(project_id: str) -> str:
    return HA_NETWORK_NAME.format(project_id)


def ha_subnet_name(project_id: str) -> str:
    return HA_SUBNET_NAME.format(project_id)


def ha_port_name(project_id: str) -> str:
    return HA_PORT_NAME.format(project_id)


def lowest_free_vr_id(taken: Iterable[int]) -> int | None:
    used = set(taken)
    return next((i for i in range(VR_ID_MIN, VR_ID_MAX + 1) if i not in used), None)


def vr_ids_exhausted(network_id: str) -> Conflict:
    return Conflict(f"The maximum number of {VR_ID_MAX} HA routers per project is reached: no "
                    f"VRRP id is free on HA network {network_id}.",
                    type_name="MaxVRIDAllocationTriesReached")


@dataclass(frozen=True, slots=True)
class AgentCount:
    """How many L3 hosts a router should have."""

    minimum: int
    maximum: int


def agent_count(ha: bool, min_agents: int, max_agents: int) -> AgentCount:
    if not ha:
        return AgentCount(1, 1)
    return AgentCount(max(1, min_agents), max(1, min_agents, max_agents))


def choose_hosts(candidates: Mapping[str, int], current: Iterable[str], wanted: int
                 ) -> list[str]:
    """Up to ``wanted`` more hosts for a router already on ``current``:
    never one it is on (one placement per host), least loaded first (load =
    routers a host holds), ties by name so that every server decides the
    same."""
    have = set(current)
    free = sorted((load, host) for host, load in candidates.items() if host not in have)
    return [host for _, host in free[:max(0, wanted)]]


def hosts_to_add(candidates: Mapping[str, int], current: Iterable[str],
                 count: AgentCount) -> list[str]:
    """Hosts to add so the router reaches its maximum (as far as live hosts
    allow). Routers already at or above it get none."""
    have = list(current)
    return choose_hosts(candidates, have, count.maximum - len(have))


@dataclass(frozen=True, slots=True)
class HANetwork:
    """``/config/neutron/l3_ha_networks/<project>``: the project's HA network
    and its HA routers. Every HA router create and delete of the project
    rewrites it, so the last router's delete and a new router's create
    cannot both think they decide the network's fate."""

    project_id: str
    network_id: str
    subnet_id: str
    routers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"project_id": self.project_id, "network_id": self.network_id,
                "subnet_id": self.subnet_id, "routers": sorted(self.routers)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> HANetwork:
        return cls(value["project_id"], value["network_id"], value["subnet_id"],
                   tuple(value.get("routers", ())))

    def with_router(self, router_id: str) -> HANetwork:
        return HANetwork(self.project_id, self.network_id, self.subnet_id,
                         tuple(sorted({*self.routers, router_id})))

    def without_router(self, router_id: str) -> HANetwork:
        return HANetwork(self.project_id, self.network_id, self.subnet_id,
                         tuple(r for r in self.routers if r != router_id))


@dataclass(frozen=True, slots=True)
class RouterSchedule:
    """``/config/neutron/l3_schedules/<router>``: the hosts a router is
    placed on, rewritten (under its revision) with every placement change,
    so two servers scheduling one router at once cannot both add hosts past
    its maximum. Routers without one (made before scheduling existed, or
    written by hand) are left to manual scheduling."""

    router_id: str
    project_id: str
    ha: bool
    hosts: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"router_id": self.router_id, "project_id": self.project_id, "ha": self.ha,
                "hosts": sorted(self.hosts)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> RouterSchedule:
        return cls(value["router_id"], value.get("project_id", ""), bool(value.get("ha")),
                   tuple(value.get("hosts", ())))

    def with_hosts(self, hosts: Iterable[str]) -> RouterSchedule:
        return RouterSchedule(self.router_id, self.project_id, self.ha,
                              tuple(sorted(set(hosts))))


def split_brain(states: Mapping[str, str], live_hosts: Iterable[str]) -> bool:
    """Two or more live hosts report the router active."""
    live = set(live_hosts)
    return sum(1 for host, state in states.items()
               if state == HA_STATE_ACTIVE and host in live) > 1
