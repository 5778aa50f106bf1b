"""Agent ids, registration facts and agent bodies (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from kumonet.model.agent import (
    AGENT_TYPES,
    DHCP_AGENT,
    L3_AGENT,
    OVS_AGENT,
    agent_body,
    agent_id,
    parse_host_facts,
)
from kumonet.model.errors import BadRequest


def test_agent_ids_are_stable_and_distinct() -> None:
    assert agent_id("network1", "L3 agent") == agent_id("network1", "L3 agent")
    ids = {agent_id(h, t) for h in ("network1", "network2") for t in AGENT_TYPES}
    assert len(ids) == 2 * len(AGENT_TYPES)


def test_facts_defaults_and_record() -> None:
    facts = parse_host_facts("h1", {"tunnel_ip": "192.0.2.1"})
    assert facts.agent_types == (OVS_AGENT.name,)
    assert facts.heartbeat_interval == 30 and facts.lease_ttl == 90
    record = facts.record()
    assert record["tunnel_ip"] == "192.0.2.1"
    assert record["integration_bridge"] == "br-int"
    # Repeated types count once, in the order given.
    facts = parse_host_facts("h1", {"agent_types": ["L3 agent", "Open vSwitch agent",
                                                    "L3 agent"]})
    assert facts.agent_types == ("L3 agent", "Open vSwitch agent")


@pytest.mark.parametrize("body", [
    None, {"host": "h2"}, {"agent_types": []}, {"agent_types": "L3 agent"},
    {"agent_types": ["L2 agent"]}, {"heartbeat_interval": True},
    {"heartbeat_interval": 301}, {"heartbeat_interval": "5"}, {"tunnel_ip": "x"},
    {"tunnel_types": "vxlan"}, {"bridge_mappings": {"ext": 1}}, {"configurations": []},
    {"availability_zone": ""}, {"datapath_type": 3},
])
def test_bad_facts_are_refused(body: Any) -> None:
    with pytest.raises(BadRequest):
        parse_host_facts("h1", body)


@pytest.mark.parametrize("host", ["", "a/b", "x" * 256, "h 1"])
def test_bad_host_names_are_refused(host: str) -> None:
    with pytest.raises(BadRequest):
        parse_host_facts(host, {})


def test_bodies_per_role() -> None:
    record = {**parse_host_facts("h1", {"bridge_mappings": {"ext": "br-ex"},
                                        "configurations": {"extra": 1}}).record(),
              "created_at": "2026-01-01T00:00:00Z"}
    ovs = agent_body(OVS_AGENT, record, alive=True, admin={})
    assert ovs["configurations"]["bridge_mappings"] == {"ext": "br-ex"}
    assert ovs["configurations"]["extra"] == 1
    assert ovs["availability_zone"] is None and ovs["admin_state_up"] is True
    dhcp = agent_body(DHCP_AGENT, record, alive=False,
                      admin={"admin_state_up": False, "description": "d"})
    assert (dhcp["alive"], dhcp["admin_state_up"], dhcp["description"]) == (False, False, "d")
    assert dhcp["availability_zone"] == "nova" and dhcp["topic"] == "dhcp_agent"
    l3 = agent_body(L3_AGENT, record, alive=True, admin={})
    assert l3["configurations"]["agent_mode"] == "legacy"
    assert l3["id"] == agent_id("h1", "L3 agent")
