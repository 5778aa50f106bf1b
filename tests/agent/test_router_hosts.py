"""Where router ports live for the L2 compiler: the active host of an HA
router (latest transition wins, this host's own knowledge first), the
placement of a legacy one."""

from kumonet.agent.mirror import HaReport
from kumonet.agent.router_hosts import active_host, lost_master, router_port_hosts

HA = {"r1": {"id": "r1", "ha": True}}
LEGACY = {"r2": {"id": "r2", "ha": False}}


def port(port_id: str, router: str, owner: str, host: str = "") -> dict[str, object]:
    return {
        "id": port_id,
        "device_id": router,
        "device_owner": owner,
        "binding:host_id": host,
    }


PORTS = {
    "qr": port("qr", "r1", "network:router_interface", "host1"),
    "qg": port("qg", "r1", "network:router_gateway", "host1"),
    "ha1": port("ha1", "r1", "network:router_ha_interface", "host1"),
    "ha2": port("ha2", "r1", "network:router_ha_interface", "host2"),
    "vm": port("vm", "x", "compute:nova", "host3"),
}


def test_latest_transition_to_active_wins() -> None:
    assert active_host(None) is None
    assert active_host({"h1": HaReport("standby", 9)}) is None
    states = {
        "h1": HaReport("active", 5),
        "h2": HaReport("active", 7),
        "h3": HaReport("standby", 9),
    }
    assert active_host(states) == "h2"
    assert active_host(states, excluding="h2") == "h1"


def test_ha_router_ports_follow_the_active_host() -> None:
    states = {"r1": {"host1": HaReport("standby", 8), "host2": HaReport("active", 6)}}
    where = router_port_hosts(PORTS, HA, {"r1": frozenset({"host1", "host2"})}, states)
    # qr-/qg- follow the master; the per-host HA ports and VMs are not touched.
    assert where == {"qr": "host2", "qg": "host2"}


def test_no_active_host_leaves_the_binding() -> None:
    states = {"r1": {"host1": HaReport("standby", 3)}}
    assert router_port_hosts(PORTS, HA, {}, states) == {}


def test_this_hosts_own_transition_comes_first() -> None:
    states = {"r1": {"host1": HaReport("active", 4), "host2": HaReport("standby", 6)}}
    # host2's keepalived just became master: local before the servers echo it.
    where = router_port_hosts(PORTS, HA, {}, states, here="host2", local_active={"r1": True})
    assert where["qr"] == "host2"
    # host1's just left master: not local there even though the servers still say so.
    states = {"r1": {"host1": HaReport("active", 4), "host2": HaReport("active", 3)}}
    where = router_port_hosts(PORTS, HA, {}, states, here="host1", local_active={"r1": False})
    assert where["qr"] == "host2"


def test_legacy_router_ports_live_on_the_placement_host() -> None:
    ports = {
        "qr2": port("qr2", "r2", "network:router_interface"),
        "qg2": port("qg2", "r2", "network:router_gateway"),
    }
    where = router_port_hosts(ports, LEGACY, {"r2": frozenset({"host2"})}, {})
    assert where == {"qr2": "host2", "qg2": "host2"}
    assert router_port_hosts(ports, LEGACY, {}, {}) == {}
    assert router_port_hosts(ports, {}, {"r2": frozenset({"host2"})}, {}) == {}


def test_a_master_whose_report_went_with_its_lease_keeps_the_ports() -> None:
    placed = {"r1": frozenset({"host1", "host2"})}
    # host1's agent lost the servers (its report expired); host2 still hears
    # its adverts, so stays standby: host1 is the master.
    standby = {"r1": {"host2": HaReport("standby", 4)}}
    elsewhere = {**PORTS, "qr": port("qr", "r1", "network:router_interface", "host2")}
    assert router_port_hosts(elsewhere, HA, placed, standby) == {"qr": "host1", "qg": "host1"}
    assert lost_master(standby["r1"], placed["r1"]) == "host1"
    # Not when nobody reports (a new router) or two are silent.
    assert lost_master({}, placed["r1"]) is None
    three = frozenset({"host1", "host2", "host3"})
    assert lost_master(standby["r1"], three) is None
    # Nor when host1 is this host and knows it is standby.
    assert lost_master(standby["r1"], placed["r1"], excluding="host1") is None
    assert lost_master({"host2": HaReport("fault", 4)}, placed["r1"]) is None
