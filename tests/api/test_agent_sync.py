"""The internal agent API on a real server over a real SQLite store file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from kumonet.api.auth import NoAuth
from kumonet.api.config import ServerConfig
from kumonet.api.main import make_app
from kumonet.model.agent import agent_id
from kumonet.store.contract import Store
from kumonet.store.url import open_store
from tests.api.conftest import Api, start_api

OVS, DHCP, L3 = "Open vSwitch agent", "DHCP agent", "L3 agent"


class CountingStore:
    """The real store, counting the watches opened on it."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.watches: list[str] = []
        self.ranges: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def watch(self, prefix: str, start_revision: int) -> Any:
        self.watches.append(prefix)
        return self.inner.watch(prefix, start_revision)

    async def range(self, prefix: str) -> Any:
        self.ranges.append(prefix)
        return await self.inner.range(prefix)


class Cloud:
    def __init__(self, api: Api, store: Store) -> None:
        self.api = api
        self.store = store

    async def register(self, host: str, types: list[str] | None = None,
                       interval: int = 30, **facts: Any) -> dict[str, Any]:
        body = {"host": host, "agent_types": types or [OVS], "tunnel_ip": "192.0.2.10",
                "tunnel_types": ["vxlan"], "bridge_mappings": {"extnet": "br-ex"},
                "heartbeat_interval": interval, "datapath_type": "netdev", **facts}
        status, answer = await self.api.call("PUT", f"/v1/agent/hosts/{host}", body)
        assert status == 200, answer
        result: dict[str, Any] = answer
        return result

    async def watch(self, prefix: str, revision: int, wait: float = 60,
                    limit: int | None = None) -> tuple[int, Any]:
        query = f"prefix={prefix}&revision={revision}&timeout={wait}"
        if limit is not None:
            query += f"&limit={limit}"
        return await self.api.call("GET", f"/v1/agent/watch?{query}")

    async def snapshot(self, prefix: str) -> dict[str, Any]:
        status, body = await self.api.call("GET", f"/v1/agent/snapshot?prefix={prefix}")
        assert status == 200, body
        result: dict[str, Any] = body
        return result

    async def agents(self, query: str = "") -> list[dict[str, Any]]:
        status, body = await self.api.call("GET", f"/v2.0/agents{query}")
        assert status == 200, body
        result: list[dict[str, Any]] = body["agents"]
        return result


async def _open(tmp_path: Path, config: ServerConfig) -> AsyncIterator[Cloud]:
    api, store = await start_api(f"sqlite:///{tmp_path}/store.db", config)
    try:
        yield Cloud(api, store)
    finally:
        await api.client.close()
        await store.close()


@pytest.fixture
async def cloud(tmp_path: Path, server_config: ServerConfig) -> AsyncIterator[Cloud]:
    async for c in _open(tmp_path, server_config):
        yield c


async def _network(api: Api, name: str = "net") -> dict[str, Any]:
    return await api.create("networks", "network", name=name)


async def test_register_lists_one_alive_agent_per_role(cloud: Cloud) -> None:
    answer = await cloud.register("network1", [OVS, DHCP, L3])
    assert answer["lease_ttl"] == 90
    assert {a["id"] for a in answer["agents"]} == {agent_id("network1", t)
                                                   for t in (OVS, DHCP, L3)}
    agents = await cloud.agents()
    assert sorted(a["agent_type"] for a in agents) == [DHCP, L3, OVS]
    assert all(a["alive"] and a["admin_state_up"] and a["host"] == "network1" for a in agents)
    ovs = next(a for a in agents if a["agent_type"] == OVS)
    assert ovs["binary"] == "neutron-openvswitch-agent"
    assert ovs["configurations"]["tunneling_ip"] == "192.0.2.10"
    assert ovs["configurations"]["bridge_mappings"] == {"extnet": "br-ex"}
    assert ovs["availability_zone"] is None
    l3 = next(a for a in agents if a["agent_type"] == L3)
    assert l3["binary"] == "neutron-l3-agent" and l3["topic"] == "l3_agent"
    assert l3["availability_zone"] == "nova"
    # The host's record and its liveness marker are in the operational tree.
    snap = await cloud.snapshot("/operational/topology/")
    keys = {item["key"]: item["value"] for item in snap["items"]}
    assert keys["/operational/topology/hosts/network1"]["tunnel_ip"] == "192.0.2.10"
    assert "/operational/topology/alive/network1" in keys


async def test_registration_refusals(cloud: Cloud) -> None:
    bodies: list[Any] = [{"host": "other"}, {"agent_types": ["Bogus agent"]},
                         {"heartbeat_interval": 0}, {"tunnel_ip": "not-an-ip"},
                         {"bridge_mappings": ["br-ex"]}, []]
    for body in bodies:
        status, answer = await cloud.api.call("PUT", "/v1/agent/hosts/h1", body)
        assert status == 400, (body, answer)
    assert await cloud.agents() == []


async def test_missed_heartbeats_make_the_host_dead_and_it_registers_again(
        cloud: Cloud) -> None:
    await cloud.register("compute1", interval=1)
    status, answer = await cloud.api.call("POST", "/v1/agent/hosts/compute1/heartbeat")
    assert (status, answer) == (200, {"lease_ttl": 3})
    revision = (await cloud.snapshot("/operational/topology/alive/"))["revision"] + 1
    # Stop heartbeating: the lease (3 intervals) expires and the store
    # deletes the liveness key, which the watch reports.
    deleted = False
    for _ in range(20):
        status, batch = await cloud.watch("/operational/topology/alive/", revision, wait=5)
        assert status == 200, batch
        revision = batch["revision"] + 1
        if any(e["type"] == "delete" and e["key"].endswith("/compute1")
               for e in batch["events"]):
            deleted = True
            break
    assert deleted
    [agent] = await cloud.agents()
    assert agent["alive"] is False and agent["id"] == agent_id("compute1", OVS)
    assert await cloud.agents("?alive=True") == []
    status, answer = await cloud.api.call("POST", "/v1/agent/hosts/compute1/heartbeat")
    assert status == 404 and answer["NeutronError"]["type"] == "HostNotRegistered"
    await cloud.register("compute1", interval=1)
    [agent] = await cloud.agents()
    assert agent["alive"] is True and agent["id"] == agent_id("compute1", OVS)
    status, _ = await cloud.api.call("POST", "/v1/agent/hosts/compute1/heartbeat")
    assert status == 200


async def test_agent_ids_survive_a_server_restart(tmp_path: Path,
                                                  server_config: ServerConfig) -> None:
    async for first in _open(tmp_path, server_config):
        await first.register("network1", [OVS, L3])
        before = sorted(a["id"] for a in await first.agents())
    async for second in _open(tmp_path, server_config):
        # Persistent registration: listed before the host comes back.
        assert sorted(a["id"] for a in await second.agents()) == before
        await second.register("network1", [OVS, L3])
        assert sorted(a["id"] for a in await second.agents()) == before
    assert before == sorted([agent_id("network1", OVS), agent_id("network1", L3)])


async def test_watch_answers_an_api_write_without_waiting_for_the_timeout(
        cloud: Cloud) -> None:
    snap = await cloud.snapshot("/config/neutron/")
    poll = asyncio.create_task(cloud.watch("/config/neutron/", snap["revision"] + 1,
                                           wait=120))
    await asyncio.sleep(0)
    net = await _network(cloud.api)
    status, batch = await poll
    # A timed-out poll would answer no events: these came from the write.
    assert status == 200
    [event] = batch["events"]
    assert event["type"] == "put"
    assert event["key"] == f"/config/neutron/networks/{net['id']}"
    assert event["value"]["name"] == "net"
    assert batch["revision"] == event["mod_revision"]


async def test_resume_from_revision_misses_and_repeats_nothing(cloud: Cloud) -> None:
    start = (await cloud.snapshot("/config/neutron/"))["revision"] + 1
    names = [f"n{i}" for i in range(7)]
    for name in names:
        await _network(cloud.api, name)
    seen: list[str] = []
    revision = start
    while len(seen) < len(names):
        status, batch = await cloud.watch("/config/neutron/networks/", revision, wait=10,
                                          limit=2)
        assert status == 200 and batch["events"], batch
        assert len(batch["events"]) <= 2
        seen += [e["value"]["name"] for e in batch["events"]]
        revision = batch["revision"] + 1
    assert seen == names
    status, batch = await cloud.watch("/config/neutron/networks/", revision, wait=0)
    assert batch == {"revision": revision - 1, "events": []}
    # A snapshot plus the watch from its revision gives the same state.
    snap = await cloud.snapshot("/config/neutron/networks/")
    assert sorted(i["value"]["name"] for i in snap["items"]) == names
    assert snap["revision"] == revision - 1


async def test_bookkeeping_keys_are_not_shown_to_agents(cloud: Cloud) -> None:
    net = await _network(cloud.api)
    await cloud.api.create("subnets", "subnet", network_id=net["id"], ip_version=4,
                           cidr="10.0.0.0/24")
    snap = await cloud.snapshot("/config/neutron/")
    await cloud.api.create("ports", "port", network_id=net["id"])
    bookkeeping = {"ipam", "macs", "segments", "deleting"}
    kinds = {i["key"].split("/")[3] for i in snap["items"]}
    assert {"networks", "subnets"} <= kinds and not kinds & bookkeeping
    status, batch = await cloud.watch("/config/neutron/", snap["revision"] + 1, wait=10)
    assert status == 200
    kinds = {e["key"].split("/")[3] for e in batch["events"]}
    assert "ports" in kinds and not kinds & bookkeeping


async def test_compacted_revision_is_gone(cloud: Cloud) -> None:
    for name in ("a", "b", "c"):
        await _network(cloud.api, name)
    compacted = await cloud.store.revision()
    await cloud.store.compact(compacted)
    snap = await cloud.snapshot("/config/neutron/")
    # The feed finds the compaction as it starts; the poll is told at once.
    status, body = await cloud.watch("/config/neutron/", 1, wait=60)
    assert status == 410
    assert body["compact_revision"] == compacted
    status, body = await cloud.watch("/config/neutron/", snap["revision"] + 1, wait=0)
    assert (status, body) == (200, {"revision": snap["revision"], "events": []})


async def test_a_poll_from_before_the_servers_start_resumes(
        tmp_path: Path, server_config: ServerConfig) -> None:
    async for first in _open(tmp_path, server_config):
        revision = (await first.snapshot("/config/neutron/"))["revision"] + 1
        await _network(first.api, "before-restart")
    async for second in _open(tmp_path, server_config):
        await _network(second.api, "after-restart")
        names: list[str] = []
        while len(names) < 2:
            # The new server's feed replays history as it starts: a poll
            # waits for it rather than answering 410.
            status, batch = await second.watch("/config/neutron/networks/", revision,
                                               wait=10)
            assert status == 200 and batch["events"], batch
            names += [e["value"]["name"] for e in batch["events"]]
            revision = batch["revision"] + 1
        assert names == ["before-restart", "after-restart"]


async def test_many_long_polls_share_one_store_watch(tmp_path: Path,
                                                     server_config: ServerConfig) -> None:
    counting = CountingStore(await open_store(f"sqlite:///{tmp_path}/store.db"))
    app = make_app(cast(Store, counting), server_config, NoAuth())
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    api = Api(client)
    cloud = Cloud(api, counting.inner)
    try:
        revision = (await cloud.snapshot("/config/neutron/"))["revision"] + 1
        prefixes = ["/config/neutron/", "/config/neutron/networks/"]
        polls = [asyncio.create_task(cloud.watch(prefixes[i % 2], revision, wait=120))
                 for i in range(60)]
        await asyncio.sleep(0.2)  # let them park; correctness does not depend on it
        net = await _network(cloud.api)
        answers = await asyncio.gather(*polls)
        for status, batch in answers:
            assert status == 200
            assert [e["key"] for e in batch["events"]] == [
                f"/config/neutron/networks/{net['id']}"]
        # One watch for all the polls (the other is the IPAM hints' own, per server).
        assert sorted(counting.watches) == ["/config/neutron/", "/config/neutron/ipam/"]
        # Snapshots are served from the feed's state, not from the store.
        snaps = await asyncio.gather(*(cloud.snapshot(prefixes[i % 2]) for i in range(40)))
        assert all(s["items"][-1]["key"].endswith(net["id"]) for s in snaps)
        assert counting.ranges.count("/config/neutron/") == 1
        assert sorted(counting.watches) == ["/config/neutron/", "/config/neutron/ipam/"]
    finally:
        await api.client.close()
        await counting.inner.close()


async def _port(cloud: Cloud) -> dict[str, Any]:
    net = await _network(cloud.api)
    await cloud.api.create("subnets", "subnet", network_id=net["id"], ip_version=4,
                           cidr="10.0.0.0/24")
    return await cloud.api.create("ports", "port", network_id=net["id"])


async def test_port_status_binds_the_port_as_the_ovs_agent_does(cloud: Cloud) -> None:
    port = await _port(cloud)
    await cloud.register("compute1", integration_bridge="br-int")
    status, answer = await cloud.api.call("PUT", f"/v1/agent/ports/{port['id']}/status",
                                          {"status": "ACTIVE", "host": "compute1"})
    assert status == 200, answer
    assert answer["port"]["revision_number"] == port["revision_number"] + 1
    status, body = await cloud.api.call("GET", f"/v2.0/ports/{port['id']}")
    shown = body["port"]
    assert shown["status"] == "ACTIVE"
    assert shown["binding:host_id"] == "compute1"
    assert shown["binding:vif_type"] == "ovs"
    assert shown["binding:vif_details"] == {
        "port_filter": True, "connectivity": "l2", "ovs_hybrid_plug": False,
        "datapath_type": "netdev", "bridge_name": "br-int"}
    assert shown["revision_number"] == port["revision_number"] + 1
    # The same report again writes nothing.
    status, answer = await cloud.api.call("PUT", f"/v1/agent/ports/{port['id']}/status",
                                          {"status": "ACTIVE", "host": "compute1"})
    assert answer["port"]["revision_number"] == port["revision_number"] + 1
    # Another host may not claim it; DOWN keeps the binding.
    await cloud.register("compute2")
    status, answer = await cloud.api.call("PUT", f"/v1/agent/ports/{port['id']}/status",
                                          {"status": "DOWN", "host": "compute2"})
    assert status == 409 and answer["NeutronError"]["type"] == "PortBoundToOtherHost"
    status, answer = await cloud.api.call("PUT", f"/v1/agent/ports/{port['id']}/status",
                                          {"status": "DOWN", "host": "compute1"})
    status, body = await cloud.api.call("GET", f"/v2.0/ports/{port['id']}")
    assert body["port"]["status"] == "DOWN"
    assert body["port"]["binding:host_id"] == "compute1"
    for report, expected in (({"status": "UP", "host": "compute1"}, 400),
                             ({"status": "ACTIVE"}, 400),
                             ({"status": "ACTIVE", "host": "ghost"}, 404)):
        status, _ = await cloud.api.call("PUT", f"/v1/agent/ports/{port['id']}/status",
                                         report)
        assert status == expected, report


async def test_port_status_in_one_batch(cloud: Cloud) -> None:
    first = await _port(cloud)
    others = [await cloud.api.create("ports", "port", network_id=first["network_id"])
              for _ in range(4)]
    await cloud.register("compute1")
    ports = [first, *others]
    reports = [{"port_id": p["id"], "status": "ACTIVE"} for p in ports]
    reports.append({"port_id": "0b3a8c5e-0000-4000-8000-000000000000", "status": "ACTIVE"})
    status, answer = await cloud.api.call("PUT", "/v1/agent/ports/status",
                                          {"host": "compute1", "ports": reports})
    assert status == 200, answer
    results = answer["ports"]
    assert [r["id"] for r in results] == [r["port_id"] for r in reports]
    assert all(r["status"] == "ACTIVE" for r in results[:-1])
    assert results[-1]["error"]["type"] == "PortNotFound"
    status, body = await cloud.api.call("GET", "/v2.0/ports?status=ACTIVE")
    assert sorted(p["id"] for p in body["ports"]) == sorted(p["id"] for p in ports)


async def test_router_ha_state_lives_with_the_host_lease(cloud: Cloud) -> None:
    await cloud.register("network1", [OVS, L3], interval=1)
    router_id = "5e0f1a4c-1d2b-4c3d-8e9f-0a1b2c3d4e5f"
    status, answer = await cloud.api.call("PUT", f"/v1/agent/routers/{router_id}/ha_state",
                                          {"host": "network1", "state": "active"})
    assert status == 200, answer
    key = f"/operational/neutron/l3/{router_id}/network1"
    kv = await cloud.store.get(key)
    assert kv is not None and kv.lease != 0
    assert orjson.loads(kv.value)["state"] == "active"
    status, _ = await cloud.api.call("PUT", f"/v1/agent/routers/{router_id}/ha_state",
                                     {"host": "network1", "state": "master"})
    assert status == 400
    # The host dies: its HA state goes with its lease.
    await cloud.store.revoke_lease(kv.lease)
    assert await cloud.store.get(key) is None
    status, answer = await cloud.api.call("PUT", f"/v1/agent/routers/{router_id}/ha_state",
                                          {"host": "network1", "state": "standby"})
    assert status == 404, answer


async def test_members_are_refused(cloud: Cloud) -> None:
    for method, path, body in (
            ("GET", "/v1/agent/snapshot?prefix=/config/neutron/", None),
            ("GET", "/v1/agent/watch?prefix=/config/neutron/&revision=1", None),
            ("PUT", "/v1/agent/hosts/h1", {"host": "h1"}),
            ("POST", "/v1/agent/hosts/h1/heartbeat", None)):
        status, answer = await cloud.api.call(method, path, body, project="p1")
        assert status == 403, (path, answer)


async def test_bad_watch_requests(cloud: Cloud) -> None:
    for query in ("prefix=/config/neutron/", "prefix=/config/neutron/&revision=x",
                  "prefix=/etc/&revision=1", "prefix=/config/neutron&revision=1",
                  "prefix=/config/neutron/&revision=1&timeout=1000",
                  "prefix=/config/neutron/&revision=1&limit=0"):
        status, answer = await cloud.api.call("GET", f"/v1/agent/watch?{query}")
        assert status == 400, (query, answer)
    status, _ = await cloud.api.call("GET", "/v1/agent/snapshot?prefix=/")
    assert status == 400


def test_server_shutdown_answers_parked_polls(tmp_path: Path) -> None:
    import threading
    import time
    import urllib.request

    from tests.api.test_main import Server

    server = Server(tmp_path, "sqlite:///kumonet.db")
    server.start()
    answers: list[Any] = []

    def poll() -> None:
        url = f"{server.url}/v1/agent/watch?prefix=/config/neutron/&revision=2&timeout=300"
        with urllib.request.urlopen(url, timeout=600) as resp:
            answers.append((resp.status, orjson.loads(resp.read())))

    try:
        snap = server.get("/v1/agent/snapshot?prefix=/config/neutron/")
        poller = threading.Thread(target=poll)
        poller.start()
        # Give the poll time to park (setup, not a measurement): it asks for
        # the next revision, and stopping the server must answer it rather
        # than wait out its 300 s.
        time.sleep(0.5)
    finally:
        server.stop()
    poller.join()
    assert snap["items"] == [] and snap["revision"] == 1
    assert answers == [(200, {"revision": 1, "events": []})]
