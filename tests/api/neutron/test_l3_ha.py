"""L3 HA through the API on a real SQLite store: the per-project HA network
and HA ports, VRRP ids, scheduling onto live L3 hosts registered through
``/v1/agent/hosts`` (with leases), rescheduling off a dead host by the
leader, split-brain status, conversion and cleanup."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from kumonet.api.auth import NoAuth
from kumonet.api.config import L3HAConfig, ServerConfig
from kumonet.api.main import make_app
from kumonet.api.neutron.l3_scheduler import ReschedulerSettings
from kumonet.model.agent import agent_id
from kumonet.store.contract import Store
from kumonet.store.url import open_store
from tests.api.conftest import Api
from tests.api.test_main import Server, _cli

OVS, L3 = "Open vSwitch agent", "L3 agent"
P1, P2 = "p1" * 16, "p2" * 16
HA_OWNER = "network:router_ha_interface"
FAST = ReschedulerSettings(scan_seconds=0.1, leader_ttl=2)


class Cloud:
    """One or more API servers on one store, and hosts that heartbeat."""

    def __init__(self, store: Store, config: ServerConfig) -> None:
        self.store = store
        self.config = config
        self.apis: list[Api] = []
        self.beating: dict[str, asyncio.Task[None]] = {}

    @property
    def api(self) -> Api:
        return self.apis[0]

    async def start_server(self, settings: ReschedulerSettings = FAST) -> Api:
        app = make_app(self.store, self.config, NoAuth(), rescheduler=settings)
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        api = Api(client)
        self.apis.append(api)
        return api

    async def register(self, host: str, types: tuple[str, ...] = (OVS, L3),
                       interval: int = 1) -> None:
        status, body = await self.api.call("PUT", f"/v1/agent/hosts/{host}", {
            "agent_types": list(types), "tunnel_ip": "192.0.2.1",
            "heartbeat_interval": interval})
        assert status == 200, body
        self.beating[host] = asyncio.create_task(self._beat(host, interval))

    async def _beat(self, host: str, interval: int) -> None:
        while True:
            await asyncio.sleep(interval / 3)
            status, _ = await self.api.call("POST", f"/v1/agent/hosts/{host}/heartbeat")
            assert status == 200

    async def kill(self, host: str) -> None:
        """The host stops heartbeating (its lease runs out)."""
        task = self.beating.pop(host)
        task.cancel()
        await asyncio.wait({task})

    async def close(self) -> None:
        for task in self.beating.values():
            task.cancel()
        await asyncio.gather(*self.beating.values(), return_exceptions=True)
        for api in self.apis:
            await api.client.close()

    # -- reads ------------------------------------------------------------------

    async def get(self, path: str, project: str | None = None) -> Any:
        status, body = await self.api.call("GET", path, project=project)
        assert status == 200, body
        return body

    async def hosts_of(self, router_id: str) -> dict[str, str]:
        body = await self.get(f"/v2.0/routers/{router_id}/l3-agents")
        return {a["host"]: a.get("ha_state", "") for a in body["agents"]}

    async def ha_ports(self, router_id: str) -> dict[str, dict[str, Any]]:
        body = await self.get(f"/v2.0/ports?device_id={router_id}&device_owner={HA_OWNER}")
        ports = body["ports"]
        by_host = {p["binding:host_id"]: p for p in ports}
        assert len(by_host) == len(ports), "two HA ports of one router on one host"
        return by_host

    async def ha_networks(self) -> list[dict[str, Any]]:
        body = await self.get("/v2.0/networks")
        return [n for n in body["networks"] if n["name"].startswith("HA network tenant")]

    async def stored_router(self, router_id: str) -> dict[str, Any]:
        kv = await self.store.get(f"/config/neutron/routers/{router_id}")
        assert kv is not None
        result: dict[str, Any] = orjson.loads(kv.value)
        return result

    async def router(self, project: str | None = P1, **attrs: Any) -> dict[str, Any]:
        return await self.api.create("routers", "router", project=project, **attrs)


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll a condition the leader's background work makes true (bounded,
    not a timing assertion)."""
    for _ in range(600):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def ha_config(base: ServerConfig, **l3: Any) -> ServerConfig:
    options = {"l3_ha": True, "min_l3_agents_per_router": 2, "max_l3_agents_per_router": 3,
               **l3}
    return dataclasses.replace(base, l3=L3HAConfig(**options))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(f"sqlite:///{tmp_path}/store.db")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def cloud(store: Store, server_config: ServerConfig) -> AsyncIterator[Cloud]:
    made = Cloud(store, ha_config(server_config, max_l3_agents_per_router=2))
    await made.start_server()
    try:
        yield made
    finally:
        await made.close()


async def _external(cloud: Cloud) -> tuple[dict[str, Any], dict[str, Any]]:
    provider: dict[str, Any] = {"router:external": True, "provider:network_type": "flat",
                                "provider:physical_network": "extnet"}
    ext = await cloud.api.create("networks", "network", name="ext-net", **provider)
    sub = await cloud.api.create("subnets", "subnet", network_id=ext["id"], ip_version=4,
                                 cidr="203.0.113.0/24", gateway_ip="203.0.113.1",
                                 enable_dhcp=False)
    return ext, sub


async def test_seed_002_shape(cloud: Cloud) -> None:
    for host in ("network1", "network2"):
        await cloud.register(host)
    await cloud.register("compute1", (OVS,))
    ext, _ = await _external(cloud)
    demo = await cloud.api.create("networks", "network", project=P1, name="demo-net")
    demo_sub = await cloud.api.create("subnets", "subnet", project=P1,
                                      network_id=demo["id"], ip_version=4,
                                      cidr="192.168.1.0/24")
    router = await cloud.router(name="demo-router")
    status, _ = await cloud.api.call("PUT", f"/v2.0/routers/{router['id']}"
                                            "/add_router_interface",
                                     {"subnet_id": demo_sub["id"]}, project=P1)
    assert status == 200
    status, _ = await cloud.api.call("PUT", f"/v2.0/routers/{router['id']}", {
        "router": {"external_gateway_info": {"network_id": ext["id"]}}}, project=P1)
    assert status == 200

    # neutron net-list: the HA network, owned by no project, named after it.
    (ha_net,) = await cloud.ha_networks()
    assert ha_net["name"] == f"HA network tenant {P1}"
    assert ha_net["tenant_id"] == "" and ha_net["shared"] is False
    assert ha_net["provider:network_type"] == "vxlan"
    (ha_sub,) = (await cloud.get(f"/v2.0/subnets?network_id={ha_net['id']}"))["subnets"]
    assert ha_sub["name"] == f"HA subnet tenant {P1}"
    assert (ha_sub["cidr"], ha_sub["gateway_ip"], ha_sub["enable_dhcp"]) == (
        "169.254.192.0/18", None, False)
    # The project's member sees neither (Neutron: the HA network is nobody's).
    assert ha_net["id"] not in {n["id"] for n in
                                (await cloud.get("/v2.0/networks", P1))["networks"]}

    # l3-agent-list-hosting-router: both L3 hosts, none on the compute host.
    assert await cloud.hosts_of(router["id"]) == {"network1": "standby",
                                                  "network2": "standby"}
    # router-port-list: two HA ports in 169.254.192.0/18, interface, gateway.
    ports = (await cloud.get(f"/v2.0/ports?device_id={router['id']}"))["ports"]
    owners = sorted(p["device_owner"] for p in ports)
    assert owners == sorted([HA_OWNER, HA_OWNER, "network:router_gateway",
                             "network:router_interface"])
    ha_ports = await cloud.ha_ports(router["id"])
    assert set(ha_ports) == {"network1", "network2"}
    for port in ha_ports.values():
        assert port["name"] == f"HA port tenant {P1}" and port["tenant_id"] == ""
        assert port["network_id"] == ha_net["id"]
        assert port["fixed_ips"][0]["ip_address"].startswith("169.254.192.")
    # The VRRP id is kept for the L3 hosts, not shown to clients.
    assert (await cloud.stored_router(router["id"]))["ha_vr_id"] == 1
    shown = (await cloud.get(f"/v2.0/routers/{router['id']}"))["router"]
    assert shown["ha"] is True and "ha_vr_id" not in shown
    # The member's router-port-list shows its own ports, not the HA ports.
    mine = (await cloud.get(f"/v2.0/ports?device_id={router['id']}", P1))["ports"]
    assert HA_OWNER not in {p["device_owner"] for p in mine}

    # Removing the interface and gateway keeps the router placed.
    status, _ = await cloud.api.call("PUT", f"/v2.0/routers/{router['id']}"
                                            "/remove_router_interface",
                                     {"subnet_id": demo_sub["id"]}, project=P1)
    assert status == 200
    status, _ = await cloud.api.call("PUT", f"/v2.0/routers/{router['id']}", {
        "router": {"external_gateway_info": None}}, project=P1)
    assert status == 200
    assert set(await cloud.hosts_of(router["id"])) == {"network1", "network2"}
    assert set(await cloud.ha_ports(router["id"])) == {"network1", "network2"}


async def test_ha_network_shared_by_a_project_and_cleaned_up(cloud: Cloud,
                                                            store: Store) -> None:
    for host in ("network1", "network2", "network3"):
        await cloud.register(host)
    first = await cloud.router(name="r1")
    second = await cloud.router(name="r2")
    other = await cloud.router(project=P2, name="r3")
    networks = {n["name"]: n for n in await cloud.ha_networks()}
    assert set(networks) == {f"HA network tenant {P1}", f"HA network tenant {P2}"}
    assert [(await cloud.stored_router(r["id"]))["ha_vr_id"]
            for r in (first, second, other)] == [1, 2, 1]
    # Least loaded first: the second router takes the host the first left.
    assert set(await cloud.hosts_of(first["id"])) == {"network1", "network2"}
    assert "network3" in await cloud.hosts_of(second["id"])

    status, _ = await cloud.api.call("DELETE", f"/v2.0/routers/{first['id']}", project=P1)
    assert status == 204
    assert await cloud.ha_ports(first["id"]) == {}
    assert not (await store.range(f"/config/neutron/l3_placements/{first['id']}/")).kvs
    assert len(await cloud.ha_networks()) == 2
    vr_ids = [kv.value.decode() for kv in
              (await store.range("/config/neutron/l3_ha_vr_ids/")).kvs]
    assert sorted(vr_ids) == sorted([second["id"], other["id"]])
    # A new router takes the VRRP id released.
    again = await cloud.router(name="r4")
    assert (await cloud.stored_router(again["id"]))["ha_vr_id"] == 1

    for router in (second, again):
        status, _ = await cloud.api.call("DELETE", f"/v2.0/routers/{router['id']}",
                                         project=P1)
        assert status == 204, _
    # The project's last HA router took the HA network, subnet and ports along.
    assert [n["name"] for n in await cloud.ha_networks()] == [f"HA network tenant {P2}"]
    ports = (await cloud.get(f"/v2.0/ports?device_owner={HA_OWNER}"))["ports"]
    assert {p["device_id"] for p in ports} == {other["id"]}
    subnets = (await cloud.get("/v2.0/subnets"))["subnets"]
    assert [s["name"] for s in subnets] == [f"HA subnet tenant {P2}"]
    assert not (await store.range("/config/neutron/l3_ha_networks/" + P1)).kvs
    assert not (await store.range("/config/neutron/l3_schedules/" + first["id"])).kvs


async def test_min_max_and_one_per_host(store: Store, server_config: ServerConfig) -> None:
    cloud = Cloud(store, ha_config(server_config, min_l3_agents_per_router=2,
                                   max_l3_agents_per_router=3))
    await cloud.start_server()
    try:
        await cloud.register("solo")
        # Fewer live L3 hosts than the minimum: the create succeeds on what
        # there is (Neutron since it deprecated min_l3_agents_per_router).
        lonely = await cloud.router(name="lonely")
        assert set(await cloud.hosts_of(lonely["id"])) == {"solo"}
        # A host that registers later tops it up to its minimum (the leader).
        await cloud.register("late")

        async def topped_up() -> bool:
            return set(await cloud.hosts_of(lonely["id"])) == {"solo", "late"}

        await eventually(topped_up, "router topped up onto the new host")
        await eventually(lambda: _has_ports(cloud, lonely["id"], {"solo", "late"}),
                         "HA port on the new host")
        for host in ("h3", "h4"):
            await cloud.register(host)
        routers = [await cloud.router(name=f"r{i}") for i in range(4)]
        loads: dict[str, int] = {}
        for router in routers:
            hosts = await cloud.hosts_of(router["id"])
            assert len(hosts) == 3
            assert set(await cloud.ha_ports(router["id"])) == set(hosts)
            for host in hosts:
                loads[host] = loads.get(host, 0) + 1
        # Least loaded first keeps the hosts within one router of each other
        # (counting the lonely router's two placements).
        loads["solo"] += 1
        loads["late"] += 1
        assert max(loads.values()) - min(loads.values()) <= 1, loads

        # A legacy router: one host, no HA port, no VRRP id.
        legacy = await cloud.router(project=None, name="legacy", ha=False)
        (host,) = await cloud.hosts_of(legacy["id"])
        assert await cloud.ha_ports(legacy["id"]) == {}
        assert "ha_vr_id" not in await cloud.stored_router(legacy["id"])
        other = next(h for h in ("solo", "late", "h3", "h4") if h != host)
        status, body = await cloud.api.call(
            "POST", f"/v2.0/agents/{agent_id(other, L3)}/l3-routers",
            {"router_id": legacy["id"]})
        assert status == 409 and body["NeutronError"]["type"] == "RouterHostedByL3Agent"
        status, _ = await cloud.api.call("POST", f"/v2.0/agents/{agent_id(host, L3)}/l3-routers",
                                         {"router_id": legacy["id"]})
        assert status == 201
        # By hand an admin may put an HA router on one more host than the
        # maximum; taking it off removes its HA port there.
        full = routers[0]["id"]
        placed = await cloud.hosts_of(full)
        spare = next(h for h in ("solo", "late", "h3", "h4") if h not in placed)
        status, _ = await cloud.api.call("POST", f"/v2.0/agents/{agent_id(spare, L3)}"
                                                 "/l3-routers", {"router_id": full})
        assert status == 201
        assert len(await cloud.hosts_of(full)) == 4
        assert spare in await cloud.ha_ports(full)
        status, _ = await cloud.api.call("DELETE", f"/v2.0/agents/{agent_id(spare, L3)}"
                                                   f"/l3-routers/{full}")
        assert status == 204, _
        assert spare not in await cloud.ha_ports(full)
        assert spare not in await cloud.hosts_of(full)
    finally:
        await cloud.close()


async def _has_ports(cloud: Cloud, router_id: str, hosts: set[str]) -> bool:
    return set(await cloud.ha_ports(router_id)) == hosts


async def test_router_made_with_no_live_host_is_placed_when_one_registers(
        cloud: Cloud) -> None:
    router = await cloud.router(name="early")
    assert await cloud.hosts_of(router["id"]) == {}
    await cloud.register("network1")

    async def placed() -> bool:
        return set(await cloud.hosts_of(router["id"])) == {"network1"}

    await eventually(placed, "router placed on the first L3 host")
    await eventually(lambda: _has_ports(cloud, router["id"], {"network1"}), "HA port")


async def test_vrrp_ids_unique_across_two_servers(store: Store,
                                                  server_config: ServerConfig) -> None:
    cloud = Cloud(store, ha_config(server_config))
    one, two = await cloud.start_server(), await cloud.start_server()
    try:
        # The first HA routers of a project, racing on two servers.
        bodies = [{"router": {"name": f"r{i}"}} for i in range(16)]
        answers = await asyncio.gather(*(
            (one if i % 2 else two).call("POST", "/v2.0/routers", body, project=P1)
            for i, body in enumerate(bodies)))
        assert all(status == 201 for status, _ in answers), answers
        ids = [body["router"]["id"] for _, body in answers]
        vr_ids = [(await cloud.stored_router(r))["ha_vr_id"] for r in ids]
        assert sorted(vr_ids) == list(range(1, 17))
        assert len(await cloud.ha_networks()) == 1
        keys = (await store.range("/config/neutron/l3_ha_vr_ids/")).kvs
        assert sorted(kv.value.decode() for kv in keys) == sorted(ids)
    finally:
        await cloud.close()


async def test_vrrp_ids_exhausted(store: Store, server_config: ServerConfig) -> None:
    cloud = Cloud(store, ha_config(server_config))
    await cloud.start_server()
    try:
        first = await cloud.router(name="first")
        (network,) = await cloud.ha_networks()
        # Fill the other 254 ids as other routers would have.
        for vr_id in range(2, 256):
            await store.put(f"/config/neutron/l3_ha_vr_ids/{network['id']}/{vr_id}",
                            b"someone")
        status, body = await cloud.api.call("POST", "/v2.0/routers",
                                            {"router": {"name": "one-too-many"}}, project=P1)
        assert status == 409, body
        assert "VRRP" in body["NeutronError"]["message"]
        status, answer = await cloud.api.call("DELETE", f"/v2.0/routers/{first['id']}",
                                              project=P1)
        assert status == 204, answer
        assert await cloud.router(name="fits") is not None
    finally:
        await cloud.close()


async def test_reschedule_off_a_dead_host(cloud: Cloud, store: Store) -> None:
    for host in ("network1", "network2", "network3"):
        await cloud.register(host)
    router = await cloud.router(name="demo-router")
    hosting = set(await cloud.hosts_of(router["id"]))
    assert len(hosting) == 2
    victim = sorted(hosting)[0]
    spare = ({"network1", "network2", "network3"} - hosting).pop()
    await cloud.kill(victim)

    async def moved() -> bool:
        return set(await cloud.hosts_of(router["id"])) == hosting - {victim} | {spare}

    await eventually(moved, "router moved off the dead host")
    # The spare host gets its HA port; the lost host keeps its own until it is
    # back (cut off rather than dead, its keepalived hears the new master
    # through it when the partition heals), then the sweep removes it.
    await eventually(lambda: _has_ports(cloud, router["id"], hosting | {spare}),
                     "HA port made with the placement")
    # The move was the leader's, fenced by its key's create_revision.
    leader = await store.get("/operational/default/leaders/l3-scheduler")
    assert leader is not None


async def test_dead_host_with_no_replacement_keeps_its_placement(cloud: Cloud) -> None:
    for host in ("network1", "network2"):
        await cloud.register(host)
    router = await cloud.router(name="demo-router")
    await cloud.kill("network1")

    async def dead() -> bool:
        body = await cloud.get(f"/v2.0/agents/{agent_id('network1', L3)}")
        return body["agent"]["alive"] is False

    await eventually(dead, "network1 dead")
    # Its namespaces come back with the host: nothing better to do.
    assert set(await cloud.hosts_of(router["id"])) == {"network1", "network2"}
    # A new host takes the dead one's place.
    await cloud.register("network3")

    async def moved() -> bool:
        return set(await cloud.hosts_of(router["id"])) == {"network2", "network3"}

    await eventually(moved, "router moved to the new host")


async def test_leader_failover_between_servers(store: Store,
                                               server_config: ServerConfig) -> None:
    cloud = Cloud(store, ha_config(server_config, max_l3_agents_per_router=2))
    first_server = await cloud.start_server()
    try:
        for host in ("network1", "network2", "network3"):
            await cloud.register(host)
        router = await cloud.router(name="demo-router")

        async def led() -> bool:
            return await store.get("/operational/default/leaders/l3-scheduler") is not None

        await eventually(led, "the only server leads")
        first = await store.get("/operational/default/leaders/l3-scheduler")
        assert first is not None
        await cloud.start_server()
        # The leading server stops: the other takes over and does the work.
        cloud.apis.remove(first_server)
        await first_server.client.close()

        async def taken_over() -> bool:
            kv = await store.get("/operational/default/leaders/l3-scheduler")
            return kv is not None and kv.create_revision > first.create_revision

        await eventually(taken_over, "the other server leads")
        hosting = set(await cloud.hosts_of(router["id"]))
        victim = sorted(hosting)[0]
        await cloud.kill(victim)

        async def moved() -> bool:
            return victim not in await cloud.hosts_of(router["id"])

        await eventually(moved, "router moved by the new leader")
    finally:
        await cloud.close()


async def test_convert_ha_and_back(cloud: Cloud) -> None:
    for host in ("network1", "network2"):
        await cloud.register(host)
    router = await cloud.router(project=None, name="legacy", ha=False)
    assert len(await cloud.hosts_of(router["id"])) == 1
    assert await cloud.ha_networks() == []
    path = f"/v2.0/routers/{router['id']}"
    status, body = await cloud.api.call("PUT", path, {"router": {"ha": True}})
    assert status == 400, body  # only while administratively down
    status, _ = await cloud.api.call("PUT", path, {"router": {"admin_state_up": False}})
    assert status == 200
    status, body = await cloud.api.call("PUT", path, {"router": {"ha": True}})
    assert status == 200, body
    assert (await cloud.stored_router(router["id"]))["ha_vr_id"] == 1
    assert len(await cloud.ha_networks()) == 1
    assert set(await cloud.hosts_of(router["id"])) == {"network1", "network2"}
    assert set(await cloud.ha_ports(router["id"])) == {"network1", "network2"}
    status, body = await cloud.api.call("PUT", path, {"router": {"ha": False}})
    assert status == 200, body
    assert len(await cloud.hosts_of(router["id"])) == 1
    assert await cloud.ha_ports(router["id"]) == {}
    assert await cloud.ha_networks() == []
    assert "ha_vr_id" not in await cloud.stored_router(router["id"])


async def test_split_brain_shows_in_router_status(cloud: Cloud) -> None:
    for host in ("network1", "network2"):
        await cloud.register(host)
    router = await cloud.router(name="demo-router")

    async def report(host: str, state: str) -> None:
        status, body = await cloud.api.call("PUT", f"/v1/agent/routers/{router['id']}"
                                                   "/ha_state", {"host": host, "state": state})
        assert status == 200, body

    async def status_is(value: str) -> bool:
        body = await cloud.get(f"/v2.0/routers/{router['id']}")
        return bool(body["router"]["status"] == value)

    await report("network1", "active")
    await report("network2", "standby")
    assert await cloud.hosts_of(router["id"]) == {"network1": "active",
                                                  "network2": "standby"}
    await report("network2", "active")
    # The hosting list shows the latest transition to active only (the other
    # is a replaced master); the router's status tells of the split.
    assert await cloud.hosts_of(router["id"]) == {"network1": "standby",
                                                  "network2": "active"}
    await eventually(lambda: status_is("ERROR"), "router status ERROR on split brain")
    await report("network1", "standby")
    await eventually(lambda: status_is("ACTIVE"), "router status ACTIVE again")


def _put(server: Server, path: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(server.url + path, method="PUT",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200


def test_openstack_cli_shows_ha_router_hosting(tmp_path: Path) -> None:
    """Seed 002 through the ``openstack`` CLI on the real server process:
    the router is placed at create on both L3 hosts, with HA ports and the
    HA network; ``agent list --router --long`` shows the HA states."""
    server = Server(tmp_path, "sqlite:///kumonet.db")
    server.start()
    try:
        for host in ("network1", "network2"):
            # Heartbeat interval long enough for the test: no heartbeats needed.
            _put(server, f"/v1/agent/hosts/{host}", {"agent_types": [OVS, L3],
                                                     "heartbeat_interval": 300})
        _put(server, "/v1/agent/hosts/compute1", {"agent_types": [OVS],
                                                  "heartbeat_interval": 300})
        router = _cli(server, "router", "create", "--ha", "demo-router")
        hosting = _cli(server, "network", "agent", "list", "--router", "demo-router",
                       "--long")
        assert sorted((r["Host"], r["HA State"]) for r in hosting) == [
            ("network1", "standby"), ("network2", "standby")]
        _put(server, f"/v1/agent/routers/{router['id']}/ha_state",
             {"host": "network2", "state": "active"})
        hosting = _cli(server, "network", "agent", "list", "--router", "demo-router",
                       "--long")
        assert sorted((r["Host"], r["HA State"]) for r in hosting) == [
            ("network1", "standby"), ("network2", "active")]
        names = [n["Name"] for n in _cli(server, "network", "list")]
        assert [n for n in names if n.startswith("HA network tenant")] == \
            ["HA network tenant "]
        ports = _cli(server, "port", "list", "--router", "demo-router", "--long")
        assert len(ports) == 2
        for port in ports:
            assert port["Device Owner"] == HA_OWNER
            assert port["Fixed IP Addresses"][0]["ip_address"].startswith("169.254.192.")
        assert _cli(server, "router", "show", "demo-router")["ha"] is True
    finally:
        server.stop()


async def test_sweep_removes_orphans(store: Store, server_config: ServerConfig) -> None:
    """What a crash between two steps leaves (an HA network whose record is
    gone, an HA port whose placement never committed) is swept by the leader;
    an HA port without placement on a lost host only once the host is back."""
    cloud = Cloud(store, ha_config(server_config))
    await cloud.start_server(dataclasses.replace(FAST, sweep_seconds=1))
    try:
        await cloud.register("network1")
        router = await cloud.router(name="r1")
        (ha_net,) = await cloud.ha_networks()
        orphan_net = await cloud.api.create("networks", "network", tenant_id="",
                                            name="HA network tenant gone")
        port = await cloud.api.create("ports", "port", network_id=ha_net["id"],
                                      tenant_id="", device_owner=HA_OWNER,
                                      device_id=router["id"],
                                      **{"binding:host_id": "nowhere"})

        async def swept() -> bool:
            names = [n["name"] for n in await cloud.ha_networks()]
            return names == [f"HA network tenant {P1}"] and \
                "nowhere" not in await cloud.ha_ports(router["id"])

        async def net_swept() -> bool:
            return [n["name"] for n in await cloud.ha_networks()] == [f"HA network tenant {P1}"]

        await eventually(net_swept, "orphan HA network swept")
        await asyncio.sleep(2)  # a sweep period and more: "nowhere" is not alive
        assert "nowhere" in await cloud.ha_ports(router["id"])
        await cloud.register("nowhere", types=(OVS,))  # back (not an L3 host)
        await eventually(swept, "orphans swept")
        status, _ = await cloud.api.call("GET", f"/v2.0/networks/{orphan_net['id']}")
        assert status == 404
        status, _ = await cloud.api.call("GET", f"/v2.0/ports/{port['id']}")
        assert status == 404
        # What is in use stays.
        assert set(await cloud.ha_ports(router["id"])) == {"network1"}
    finally:
        await cloud.close()
