"""The agent's intent mirror: Neutron JSON events in, compiler intent out."""

from kumonet.agent.mirror import IntentMirror

NET = "/config/neutron/networks/n1"
SUBNET = "/config/neutron/subnets/s1"
PORT = "/config/neutron/ports/p1"


def network() -> dict[str, object]:
    return {
        "id": "n1",
        "provider:network_type": "vxlan",
        "provider:segmentation_id": 7,
        "mtu": 1450,
    }


def port(**extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": "p1",
        "network_id": "n1",
        "mac_address": "FA:16:3E:00:00:01",
        "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.5"}],
        "binding:host_id": "host1",
        "status": "DOWN",
    }
    body.update(extra)
    return body


def test_snapshot_then_events_build_the_intent() -> None:
    mirror = IntentMirror()
    change = mirror.reset_config(
        [
            (NET, network()),
            (SUBNET, {"id": "s1", "network_id": "n1", "cidr": "10.0.0.0/24"}),
            (PORT, port()),
            ("/config/neutron/ipam/s1/10.0.0.5", "p1"),
            ("/config/neutron/macs/fa:16:3e:00:00:01", "p1"),
        ]
    )
    assert change.intent_changed
    assert change.ports == {"p1"}
    intent = mirror.intent()
    assert intent.networks["n1"].segmentation_id == 7
    assert intent.ports["p1"].mac_address == "fa:16:3e:00:00:01"
    assert intent.ports["p1"].host == "host1"
    assert set(intent.subnets) == {"s1"}

    # A status-only change touches the port but not the compiled intent.
    change = mirror.apply_config([(PORT, port(status="ACTIVE"))])
    assert change.ports == {"p1"}
    assert not change.intent_changed
    assert mirror.port_bodies["p1"]["status"] == "ACTIVE"

    change = mirror.apply_config([(PORT, None)])
    assert change.intent_changed
    assert "p1" not in mirror.intent().ports
    assert "p1" not in mirror.port_bodies


def test_reset_forgets_what_the_new_snapshot_lacks() -> None:
    mirror = IntentMirror()
    mirror.reset_config([(NET, network()), (PORT, port())])
    mirror.reset_config([(NET, network())])
    assert mirror.intent().ports == {}


def test_malformed_stored_objects_are_skipped_not_fatal() -> None:
    mirror = IntentMirror()
    mirror.reset_config([(PORT, {"id": "p1"}), (NET, network())])
    assert "p1" not in mirror.intent().ports
    assert "n1" in mirror.intent().networks


def test_hosts_need_a_tunnel_ip() -> None:
    mirror = IntentMirror()
    change = mirror.reset_hosts(
        [
            ("/operational/topology/hosts/host1", {"host": "host1", "tunnel_ip": "192.0.2.1"}),
            ("/operational/topology/hosts/host2", {"host": "host2"}),
        ]
    )
    assert change.intent_changed
    assert {h.name: h.tunnel_ip for h in mirror.intent().hosts.values()} == {"host1": "192.0.2.1"}
    assert not mirror.apply_hosts(
        [("/operational/topology/hosts/host1", {"host": "host1", "tunnel_ip": "192.0.2.1"})]
    ).intent_changed
    assert mirror.apply_hosts([("/operational/topology/hosts/host1", None)]).intent_changed
    assert mirror.intent().hosts == {}


def test_routers_placements_and_ha_states() -> None:
    mirror = IntentMirror()
    change = mirror.reset_config(
        [
            ("/config/neutron/routers/r1", {"id": "r1", "ha": True}),
            ("/config/neutron/l3_placements/r1/host1", {"router_id": "r1", "host": "host1"}),
            ("/config/neutron/l3_placements/r1/host2", {"router_id": "r1", "host": "host2"}),
            ("/config/neutron/floatingips/f1", {"id": "f1", "router_id": "r1"}),
        ]
    )
    assert change.routers_changed
    assert mirror.placements == {"r1": frozenset({"host1", "host2"})}
    assert mirror.floatingips["f1"]["router_id"] == "r1"
    change = mirror.apply_config([("/config/neutron/l3_placements/r1/host2", None)])
    assert change.routers_changed and change.intent_changed
    assert mirror.placements == {"r1": frozenset({"host1"})}
    # A router port's change is a router change; a VM port's is not.
    change = mirror.apply_config([(PORT, port(device_owner="network:router_interface"))])
    assert change.routers_changed
    change = mirror.apply_config([(PORT, port(device_owner="compute:nova"))])
    assert change.routers_changed  # it was a router port before this event
    change = mirror.apply_config([(PORT, port(device_owner="compute:nova", status="ACTIVE"))])
    assert not change.routers_changed

    key = "/operational/neutron/l3/r1/host1"
    change = mirror.reset_ha_states([(key, {"state": "active"}, 7)])
    assert mirror.ha_states["r1"]["host1"].revision == 7
    # The same state again (a new lease) moves nothing; a new state does.
    assert not mirror.apply_ha_states([(key, {"state": "active"}, 9)]).intent_changed
    assert mirror.apply_ha_states([(key, {"state": "standby"}, 10)]).intent_changed
    assert mirror.apply_ha_states([(key, None, 11)]).intent_changed
    assert mirror.ha_states == {}
