"""The agent's decisions about when to reconcile (pure: no switch, no server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kumonet.agent.config import AgentConfig
from kumonet.agent.daemon import Agent
from kumonet.agent.ovsdb import Ovsdb
from kumonet.agent.server_client import ServerClient

PORT = "/config/neutron/ports/p1"


def _agent(tmp_path: Path) -> Agent:
    config = AgentConfig(
        host="host1",
        server_urls=("http://127.0.0.1:1",),
        ovsdb_connection="unix:/nonexistent",
        ovs_rundir=tmp_path,
        local_ip="192.0.2.1",
    )
    # Neither is used by the decisions under test (nothing connects before run()).
    client: ServerClient = None  # type: ignore[assignment]
    ovsdb: Ovsdb = None  # type: ignore[assignment]
    return Agent(config, client, ovsdb)


def _port(**changes: Any) -> dict[str, Any]:
    return {
        "id": "p1",
        "network_id": "n1",
        "mac_address": "fa:16:3e:00:00:01",
        "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.5"}],
        "binding:host_id": "host2",
        "device_owner": "compute:nova",
        "status": "DOWN",
        **changes,
    }


async def test_a_status_change_is_reported_on_without_a_reconciliation(tmp_path: Path) -> None:
    agent = _agent(tmp_path)
    agent._changed(agent.mirror.apply_config([(PORT, _port())]))
    assert agent._dirty.is_set()  # a new port: compile

    agent._dirty.clear()
    agent._report_due.clear()
    # Another host's agent reported the port ACTIVE: nothing to compile, but the report
    # loop looks again (it settles what it reported against what the servers hold).
    agent._changed(agent.mirror.apply_config([(PORT, _port(status="ACTIVE"))]))
    assert not agent._dirty.is_set()
    assert agent._report_due.is_set()

    # The port moved here: that is intent.
    agent._changed(agent.mirror.apply_config([(PORT, _port(**{"binding:host_id": "host1"}))]))
    assert agent._dirty.is_set()
    for channel in (bridge.channel for bridge in agent.bridges.values()):
        assert channel is not None and not channel.connected  # flows go over a channel
