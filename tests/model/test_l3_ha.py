"""The pure part of L3 HA: VRRP ids, how many hosts, which hosts."""

from __future__ import annotations

from kumonet.model.l3_ha import (
    AgentCount,
    HANetwork,
    RouterSchedule,
    agent_count,
    choose_hosts,
    ha_network_name,
    ha_port_name,
    ha_subnet_name,
    hosts_to_add,
    lowest_free_vr_id,
    split_brain,
    vr_ids_exhausted,
)


def test_names_as_neutron_shows_them() -> None:
    assert ha_network_name("p1") == "HA network tenant p1"
    assert ha_subnet_name("p1") == "HA subnet tenant p1"
    assert ha_port_name("p1") == "HA port tenant p1"


def test_vr_ids_lowest_free_then_exhausted() -> None:
    assert lowest_free_vr_id([]) == 1
    assert lowest_free_vr_id([1, 2, 4]) == 3
    assert lowest_free_vr_id(range(1, 255)) == 255
    assert lowest_free_vr_id(range(1, 256)) is None
    error = vr_ids_exhausted("net")
    assert error.status == 409 and "net" in str(error)


def test_agent_count() -> None:
    assert agent_count(False, 2, 3) == AgentCount(1, 1)
    assert agent_count(True, 2, 3) == AgentCount(2, 3)
    # A maximum below the minimum is raised to it; nothing goes below one.
    assert agent_count(True, 2, 1) == AgentCount(2, 2)
    assert agent_count(True, 0, 0) == AgentCount(1, 1)


def test_choose_hosts_least_loaded_never_twice() -> None:
    loads = {"a": 3, "b": 0, "c": 1, "d": 0}
    assert choose_hosts(loads, [], 2) == ["b", "d"]
    assert choose_hosts(loads, ["b"], 2) == ["d", "c"]
    assert choose_hosts(loads, ["a", "b", "c", "d"], 2) == []
    assert choose_hosts(loads, [], 0) == [] and choose_hosts(loads, [], -1) == []
    assert hosts_to_add(loads, ["b"], AgentCount(2, 3)) == ["d", "c"]
    assert hosts_to_add(loads, ["a", "b", "c"], AgentCount(2, 3)) == []


def test_records_round_trip() -> None:
    network = HANetwork("p1", "n", "s").with_router("r2").with_router("r1")
    assert network.routers == ("r1", "r2")
    assert HANetwork.from_json(network.to_json()) == network
    assert network.without_router("r1").without_router("r2").routers == ()
    schedule = RouterSchedule("r", "p1", True).with_hosts(["h2", "h1", "h2"])
    assert schedule.hosts == ("h1", "h2")
    assert RouterSchedule.from_json(schedule.to_json()) == schedule


def test_split_brain_counts_live_hosts_only() -> None:
    states = {"a": "active", "b": "active", "c": "standby"}
    assert split_brain(states, ["a", "b", "c"])
    assert not split_brain(states, ["a", "c"])
    assert not split_brain({"a": "active", "b": "standby"}, ["a", "b"])
