"""The scheduler's writes under a fencing token: a deposed leader's
placement changes fail, the current leader's succeed (real SQLite store,
routers and hosts made through the API)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kumonet.api.config import ServerConfig
from kumonet.api.context import ApiContext
from kumonet.api.hosts import HostRegistry
from kumonet.api.identity import ADMIN
from kumonet.api.ipam import AddressHints
from kumonet.api.neutron.l3_ha import RouterHA
from kumonet.api.neutron.l3_scheduler import (
    L3Rescheduler,
    LeaderMemory,
    ReschedulerSettings,
    RouterL3,
    RouterScheduler,
    held_by_unreachable,
)
from kumonet.api.neutron.networks import Networks
from kumonet.api.neutron.ports import Ports
from kumonet.api.neutron.routers import Routers
from kumonet.api.neutron.subnets import Subnets
from kumonet.cluster.leadership import Leadership
from kumonet.model.agent import HostFacts
from kumonet.store.contract import Store
from kumonet.store.url import open_store
from tests.api.neutron.test_l3_ha import ha_config


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path}/store.db")
    try:
        yield opened
    finally:
        await opened.close()


def _facts(host: str) -> HostFacts:
    return HostFacts(host=host, agent_types=("Open vSwitch agent", "L3 agent"),
                     tunnel_ip=None, tunnel_types=(), bridge_mappings={}, configurations={},
                     heartbeat_interval=1, availability_zone="nova",
                     integration_bridge="br-int", datapath_type="system")


async def test_stale_leader_cannot_move_placements(store: Store,
                                                   server_config: ServerConfig) -> None:
    context = ApiContext(store=store, config=ha_config(server_config,
                                                       max_l3_agents_per_router=2))
    hints = AddressHints(store)
    networks = Networks(context, hints)
    subnets = Subnets(context, hints, networks)
    ports = Ports(context, hints, networks, subnets)
    hosts = HostRegistry(context)
    scheduler = RouterScheduler(context, hosts, RouterHA(context, networks, subnets, ports))
    for host in ("network1", "network2", "network3"):
        await hosts.register(_facts(host))
    router_id = "9b7c1a2e-3f4d-4e5f-8a6b-7c8d9e0f1a2b"
    routers = Routers(context, networks, subnets, ports, RouterL3(scheduler.ha, scheduler))
    await routers.create(ADMIN, {"id": router_id, "name": "r", "tenant_id": "p",
                                 "project_id": "p", "admin_state_up": True})
    assert sorted(await scheduler.placed_hosts(router_id)) == ["network1", "network2"]

    one = Leadership(store, "l3-scheduler", identity="one", ttl=5)
    two = Leadership(store, "l3-scheduler", identity="two", ttl=5)
    old = await one.campaign()
    assert old is not None
    await store.revoke_lease(old.lease_id)  # as an expiry while "one" was paused
    new = await two.campaign()
    assert new is not None

    # The deposed leader's writes fail; the current leader's succeed.
    assert not await scheduler.remove_host(router_id, "network1", fence=old.fence())
    assert sorted(await scheduler.placed_hosts(router_id)) == ["network1", "network2"]
    assert await scheduler.remove_host(router_id, "network2", fence=new.fence())
    assert await scheduler.placed_hosts(router_id) == ["network1"]
    assert await scheduler.schedule(router_id, fence=old.fence()) == []
    assert await scheduler.placed_hosts(router_id) == ["network1"]
    assert set(await scheduler.ha.ports_of(router_id)) == {"network1"}
    assert await scheduler.schedule(router_id, fence=new.fence()) == ["network2"]
    assert set(await scheduler.ha.ports_of(router_id)) == {"network1", "network2"}
    # Its whole rescheduling pass writes nothing either (network1 "dead").
    await store.delete("/operational/topology/alive/network1")
    rescheduler = L3Rescheduler(scheduler, ReschedulerSettings(grace_seconds=0))
    await rescheduler.scan(old, LeaderMemory())
    assert sorted(await scheduler.placed_hosts(router_id)) == ["network1", "network2"]
    # The current leader's pass moves the router off the dead host.
    await rescheduler.scan(new, LeaderMemory())
    assert sorted(await scheduler.placed_hosts(router_id)) == ["network2", "network3"]
    # network1's HA port stays while it is lost (see L3Rescheduler._move_off).
    assert set(await scheduler.ha.ports_of(router_id)) == {"network1", "network2", "network3"}
    await two.resign(new)


def test_a_router_its_live_hosts_hear_from_stays_on_its_lost_host() -> None:
    placed = ["network1", "network2", "network3"]
    alive = ["network2", "network3"]
    # Every live host standby: network1 (lost to the servers) is still master.
    assert held_by_unreachable({"network1": "active", "network2": "standby",
                                "network3": "standby"}, placed, alive)
    assert held_by_unreachable({"network2": "standby", "network3": "standby"}, placed, alive)
    # A live host took over (network1 died), or one has not reported: move.
    assert not held_by_unreachable({"network2": "active", "network3": "standby"},
                                   placed, alive)
    assert not held_by_unreachable({"network2": "standby"}, placed, alive)
    assert not held_by_unreachable({"network2": "fault", "network3": "standby"}, placed, alive)
    # No live host at all: nothing hears the lost one, move.
    assert not held_by_unreachable({"network1": "active"}, placed, [])
