"""``/v2.0/agents`` and the L3 scheduling endpoints, on a real server over a
real SQLite store; and ``openstack network agent list`` through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kumonet.api.config import ServerConfig
from kumonet.model.agent import agent_id
from kumonet.store.contract import Store
from tests.api.conftest import Api, start_api
from tests.api.test_main import VENV_BIN, Server, _cli

OVS, DHCP, L3, META = "Open vSwitch agent", "DHCP agent", "L3 agent", "Metadata agent"
ROUTER = "9b7c1a2e-3f4d-4e5f-8a6b-7c8d9e0f1a2b"
# Seed 002's hosts and their roles (`neutron agent-list`).
SEED_HOSTS = {"network1": [OVS, DHCP, L3, META], "network2": [OVS, DHCP, L3, META],
              "compute1": [OVS], "compute2": [OVS]}


@pytest.fixture
async def cloud(tmp_path: Path, server_config: ServerConfig
                ) -> AsyncIterator[tuple[Api, Store]]:
    api, store = await start_api(f"sqlite:///{tmp_path}/store.db", server_config)
    try:
        yield api, store
    finally:
        await api.client.close()
        await store.close()


async def _register(api: Api, host: str, types: list[str]) -> None:
    status, answer = await api.call("PUT", f"/v1/agent/hosts/{host}",
                                    {"agent_types": types, "tunnel_ip": "192.0.2.1"})
    assert status == 200, answer


async def _seed(api: Api) -> None:
    for host, types in SEED_HOSTS.items():
        await _register(api, host, types)


async def _router(store: Store, **attrs: Any) -> None:
    # The routers resource is a colleague's; its stored form is all we read.
    await store.put(f"/config/neutron/routers/{ROUTER}",
                    orjson.dumps({"id": ROUTER, "name": "demo-router", **attrs}))


async def test_list_filters_fields_and_show(cloud: tuple[Api, Store]) -> None:
    api, _ = cloud
    await _seed(api)
    status, body = await api.call("GET", "/v2.0/agents")
    assert status == 200
    assert len(body["agents"]) == 10
    status, body = await api.call("GET", "/v2.0/agents?agent_type=L3+agent&fields=host"
                                         "&fields=id&sort_key=host&sort_dir=asc")
    assert body["agents"] == [{"host": "network1", "id": agent_id("network1", L3)},
                              {"host": "network2", "id": agent_id("network2", L3)}]
    status, body = await api.call("GET", "/v2.0/agents?host=compute1&alive=True")
    assert [a["agent_type"] for a in body["agents"]] == [OVS]
    status, body = await api.call("GET", f"/v2.0/agents/{agent_id('network1', DHCP)}")
    assert status == 200
    agent = body["agent"]
    assert set(agent) == {"id", "agent_type", "binary", "topic", "host", "admin_state_up",
                          "alive", "created_at", "started_at", "heartbeat_timestamp",
                          "configurations", "availability_zone", "description",
                          "resources_synced"}
    assert (agent["binary"], agent["topic"], agent["alive"]) == (
        "neutron-dhcp-agent", "dhcp_agent", True)
    status, body = await api.call("GET", f"/v2.0/agents/{agent_id('nowhere', OVS)}")
    assert status == 404 and body["NeutronError"]["type"] == "AgentNotFound"
    status, body = await api.call("GET", "/v2.0/agents?bogus=1")
    assert status == 400


async def test_update_and_delete(cloud: tuple[Api, Store]) -> None:
    api, _ = cloud
    await _seed(api)
    l3 = agent_id("network1", L3)
    status, body = await api.call("PUT", f"/v2.0/agents/{l3}", {"agent": {
        "admin_state_up": False, "description": "draining"}})
    assert status == 200, body
    assert body["agent"]["admin_state_up"] is False
    assert body["agent"]["description"] == "draining"
    # Operators' settings survive the host registering again.
    await _register(api, "network1", SEED_HOSTS["network1"])
    status, body = await api.call("GET", f"/v2.0/agents/{l3}")
    assert (body["agent"]["admin_state_up"], body["agent"]["description"]) == (False,
                                                                             "draining")
    for change in ({"host": "x"}, {"alive": False}, {"bogus": 1}):
        status, _ = await api.call("PUT", f"/v2.0/agents/{l3}", {"agent": change})
        assert status == 400, change
    status, _ = await api.call("DELETE", f"/v2.0/agents/{l3}")
    assert status == 204
    status, _ = await api.call("GET", f"/v2.0/agents/{l3}")
    assert status == 404
    status, body = await api.call("GET", "/v2.0/agents?host=network1")
    assert sorted(a["agent_type"] for a in body["agents"]) == [DHCP, META, OVS]
    for agent_type in (OVS,):
        status, _ = await api.call("DELETE", f"/v2.0/agents/{agent_id('compute1', agent_type)}")
        assert status == 204
    status, body = await api.call("GET", "/v2.0/agents?host=compute1")
    assert body["agents"] == []
    # The host is still running: its next heartbeat asks it to register
    # again, which brings its agent back (as Neutron's next state report).
    status, _ = await api.call("POST", "/v1/agent/hosts/compute1/heartbeat")
    assert status == 404
    await _register(api, "compute1", SEED_HOSTS["compute1"])
    status, body = await api.call("GET", "/v2.0/agents?host=compute1")
    assert [a["id"] for a in body["agents"]] == [agent_id("compute1", OVS)]
    status, _ = await api.call("POST", "/v2.0/agents", {"agent": {}})
    assert status == 405


async def test_members_see_no_agents(cloud: tuple[Api, Store]) -> None:
    api, store = cloud
    await _seed(api)
    await _router(store)
    l3 = agent_id("network1", L3)
    status, body = await api.call("GET", "/v2.0/agents", project="p1")
    assert (status, body) == (200, {"agents": []})
    status, _ = await api.call("GET", f"/v2.0/agents/{l3}", project="p1")
    assert status == 404
    status, _ = await api.call("PUT", f"/v2.0/agents/{l3}",
                               {"agent": {"admin_state_up": False}}, project="p1")
    assert status in (403, 404)
    status, _ = await api.call("DELETE", f"/v2.0/agents/{l3}", project="p1")
    assert status == 404
    status, _ = await api.call("GET", f"/v2.0/routers/{ROUTER}/l3-agents", project="p1")
    assert status == 403
    status, _ = await api.call("GET", f"/v2.0/agents/{l3}/l3-routers", project="p1")
    assert status == 403
    status, body = await api.call("GET", f"/v2.0/agents/{l3}")
    assert body["agent"]["admin_state_up"] is True


async def test_l3_scheduling(cloud: tuple[Api, Store]) -> None:
    api, store = cloud
    await _seed(api)
    l3_1, l3_2 = agent_id("network1", L3), agent_id("network2", L3)
    status, body = await api.call("GET", f"/v2.0/routers/{ROUTER}/l3-agents")
    assert status == 404 and body["NeutronError"]["type"] == "RouterNotFound"
    await _router(store, ha=True)
    status, body = await api.call("GET", f"/v2.0/routers/{ROUTER}/l3-agents")
    assert (status, body) == (200, {"agents": []})
    status, body = await api.call("GET", f"/v2.0/agents/{l3_1}/l3-routers")
    assert (status, body) == (200, {"routers": []})
    for agent in (l3_1, l3_2):
        status, body = await api.call("POST", f"/v2.0/agents/{agent}/l3-routers",
                                      {"router_id": ROUTER})
        assert status == 201, body
    # Neutron: adding a router to an agent that hosts it already does nothing
    # (a legacy router on another agent is 409 RouterHostedByL3Agent).
    status, body = await api.call("POST", f"/v2.0/agents/{l3_1}/l3-routers",
                                  {"router_id": ROUTER})
    assert status == 201, body
    status, body = await api.call("POST", f"/v2.0/agents/{agent_id('compute1', OVS)}"
                                          "/l3-routers", {"router_id": ROUTER})
    assert status == 404 and body["NeutronError"]["type"] == "InvalidL3Agent"
    status, body = await api.call("POST", f"/v2.0/agents/{l3_1}/l3-routers",
                                  {"router_id": "11111111-2222-4333-8444-555555555555"})
    assert status == 404
    status, answer = await api.call("PUT", f"/v1/agent/routers/{ROUTER}/ha_state",
                                    {"host": "network1", "state": "active"})
    assert status == 200, answer
    status, body = await api.call("GET", f"/v2.0/routers/{ROUTER}/l3-agents")
    hosting = {a["host"]: (a["id"], a["ha_state"], a["alive"]) for a in body["agents"]}
    # As seed 002's `l3-agent-list-hosting-router demo-router`.
    assert hosting == {"network1": (l3_1, "active", True),
                       "network2": (l3_2, "standby", True)}
    status, body = await api.call("GET", f"/v2.0/agents/{l3_2}/l3-routers")
    assert [r["id"] for r in body["routers"]] == [ROUTER]
    status, _ = await api.call("DELETE", f"/v2.0/agents/{l3_2}/l3-routers/{ROUTER}")
    assert status == 204
    status, _ = await api.call("DELETE", f"/v2.0/agents/{l3_2}/l3-routers/{ROUTER}")
    assert status == 409
    status, body = await api.call("GET", f"/v2.0/routers/{ROUTER}/l3-agents")
    assert [a["host"] for a in body["agents"]] == ["network1"]


def _cli_plain(server: Server, *args: str) -> None:
    """A CLI command that prints nothing (no ``-f json``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    subprocess.run([str(VENV_BIN / "openstack"), "--os-auth-type", "none", "--os-endpoint",
                    server.url + "/", *args], capture_output=True, check=True, env=env,
                   timeout=120)


def test_openstack_network_agent_list(tmp_path: Path) -> None:
    server = Server(tmp_path, "sqlite:///kumonet.db")
    server.start()
    try:
        for host, types in SEED_HOSTS.items():
            request = urllib.request.Request(
                f"{server.url}/v1/agent/hosts/{host}", method="PUT",
                data=json.dumps({"agent_types": types}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as resp:
                assert resp.status == 200
        rows = _cli(server, "network", "agent", "list")
        listed = sorted((r["Agent Type"], r["Host"], r["Alive"], r["State"], r["Binary"])
                        for r in rows)
        assert len(listed) == 10
        assert ("L3 agent", "network1", True, True, "neutron-l3-agent") in listed
        assert ("Open vSwitch agent", "compute2", True, True,
                "neutron-openvswitch-agent") in listed
        assert ("Metadata agent", "network2", True, True, "neutron-metadata-agent") in listed
        assert {r["ID"] for r in rows} == {agent_id(h, t) for h, ts in SEED_HOSTS.items()
                                           for t in ts}
        shown = _cli(server, "network", "agent", "show", agent_id("network1", DHCP))
        assert shown["agent_type"] == "DHCP agent" and shown["host"] == "network1"
        # Seed 002's l3-agent-list-hosting-router, by manual scheduling.
        router = _cli(server, "router", "create", "--ha", "demo-router")
        for host in ("network1", "network2"):
            _cli_plain(server, "network", "agent", "add", "router", "--l3",
                       agent_id(host, L3), "demo-router")
        request = urllib.request.Request(
            f"{server.url}/v1/agent/routers/{router['id']}/ha_state", method="PUT",
            data=json.dumps({"host": "network1", "state": "active"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
        hosting = _cli(server, "network", "agent", "list", "--router", "demo-router",
                       "--long")
        assert sorted((r["Host"], r["HA State"]) for r in hosting) == [
            ("network1", "active"), ("network2", "standby")]
        _cli_plain(server, "network", "agent", "remove", "router", "--l3",
                   agent_id("network2", L3), "demo-router")
        hosting = _cli(server, "network", "agent", "list", "--router", "demo-router")
        assert [r["Host"] for r in hosting] == ["network1"]
    finally:
        server.stop()
