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
