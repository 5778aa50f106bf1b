from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kumonet.agent.ovsdb import (
    OWNER_KEY,
    BridgeSpec,
    Ovsdb,
    OvsdbConfig,
    OvsdbError,
    PortEvent,
    PortEventKind,
    PortState,
    TunnelPortSpec,
    patch_pair,
    plan_ports,
    tunnel_port_name,
)

from .conftest import OvsSandbox

OWNED = {OWNER_KEY: "true"}


def _tunnel_state(bridge: str, spec: TunnelPortSpec, *, owned: bool = True) -> PortState:
    return PortState(
        bridge=bridge,
        name=spec.name,
        type=spec.kind,
        ofport=7,
        external_ids=OWNED if owned else {},
        options=spec.options,
    )


# -- pure planning ---------------------------------------------------------------


def test_tunnel_port_name_follows_the_seeds() -> None:
    assert tunnel_port_name("vxlan", "192.0.2.7") == "vxlan-192.0.2.7"
    assert tunnel_port_name("gre", "2001:db8::1") == "gre-2001:db8::1"
    with pytest.raises(ValueError):
        tunnel_port_name("vxlan", "not-an-ip")


def test_plan_adds_missing_and_removes_only_owned_extras() -> None:
    keep = TunnelPortSpec("br-int", "vxlan", "192.0.2.1", "192.0.2.2")
    new = TunnelPortSpec("br-int", "vxlan", "192.0.2.1", "192.0.2.3")
    stale = TunnelPortSpec("br-int", "vxlan", "192.0.2.1", "192.0.2.9")
    foreign = TunnelPortSpec("br-int", "gre", "192.0.2.1", "192.0.2.8")
    vif = PortState("br-int", "tapabc", "system", 3, {"iface-id": "abc"})
    present = [
        _tunnel_state("br-int", keep),
        _tunnel_state("br-int", stale),
        _tunnel_state("br-int", foreign, owned=False),
        vif,
    ]
    plan = plan_ports([keep, new], present, bridges=["br-int"], kinds=["vxlan", "gre"])
    assert plan.add == (new,)
    assert plan.update == ()
    assert [p.name for p in plan.remove] == [stale.name]


def test_plan_of_what_is_present_is_empty() -> None:
    specs = [TunnelPortSpec("br-int", "gre", "192.0.2.1", f"192.0.2.{i}") for i in range(2, 6)]
    present = [_tunnel_state("br-int", s) for s in specs]
    assert plan_ports(specs, present, bridges=["br-int"], kinds=["gre"]).empty


def test_plan_updates_owned_port_whose_options_changed() -> None:
    old = TunnelPortSpec("br-int", "vxlan", "192.0.2.1", "192.0.2.2")
    moved_local = TunnelPortSpec("br-int", "vxlan", "192.0.2.100", "192.0.2.2")
    plan = plan_ports(
        [moved_local], [_tunnel_state("br-int", old)], bridges=["br-int"], kinds=["vxlan"]
    )
    assert plan.update == (moved_local,)
    assert plan.add == () and plan.remove == ()


def test_plan_never_touches_a_foreign_port_with_a_wanted_name() -> None:
    spec = TunnelPortSpec("br-int", "vxlan", "192.0.2.1", "192.0.2.2")
    foreign = PortState("br-int", spec.name, "vxlan", 4, {}, {"remote_ip": "198.51.100.1"})
    assert plan_ports([spec], [foreign], bridges=["br-int"], kinds=["vxlan"]).empty


def test_plan_is_limited_to_the_bridges_in_scope() -> None:
    other = TunnelPortSpec("br-tun2", "vxlan", "192.0.2.1", "192.0.2.2")
    plan = plan_ports([], [_tunnel_state("br-tun2", other)], bridges=["br-int"], kinds=["vxlan"])
    assert plan.empty


def test_bridge_spec_refuses_unknown_datapath_types() -> None:
    with pytest.raises(ValueError, match="datapath_type"):
        BridgeSpec("br-int", datapath_type="dpdk")


def test_patch_pair_names_and_peers() -> None:
    int_end, phy_end = patch_pair("br-int", "br-ex")
    assert (int_end.bridge, int_end.name, int_end.options) == (
        "br-int",
        "int-br-ex",
        {"peer": "phy-br-ex"},
    )
    assert (phy_end.bridge, phy_end.name, phy_end.options) == (
        "br-ex",
        "phy-br-ex",
        {"peer": "int-br-ex"},
    )


# -- real OVS --------------------------------------------------------------------


@pytest.fixture
async def ovsdb(ovs: OvsSandbox) -> AsyncIterator[Ovsdb]:
    async with await Ovsdb.connect(OvsdbConfig(remote=ovs.db_remote)) as db:
        yield db


async def _next_event(db: Ovsdb, name: str, kind: PortEventKind) -> PortEvent:
    """The next event for interface ``name`` of ``kind``, skipping others."""
    while True:
        event = await asyncio.wait_for(db.port_events.get(), 10)
        if event.port.name == name and event.kind is kind:
            return event


async def test_ensure_bridge_sets_columns_and_is_idempotent(ovs: OvsSandbox, ovsdb: Ovsdb) -> None:
    br = ovs.name("int")
    spec = BridgeSpec(br, datapath_type="netdev", hwaddr="02:00:00:00:aa:01")
    await ovsdb.ensure_bridge(spec)
    first = ovs.vsctl("list", "bridge", br)
    await ovsdb.ensure_bridge(spec)
    assert ovs.vsctl("list", "bridge", br).split("_uuid")[1] == first.split("_uuid")[1]
    config = await ovsdb.bridge_config(br)
    assert config["datapath_type"] == "netdev"
    assert config["fail_mode"] == ["secure"] or config["fail_mode"] == "secure"
    assert sorted(config["protocols"]) == ["OpenFlow13", "OpenFlow14", "OpenFlow15"]
    assert config["other_config"]["hwaddr"] == "02:00:00:00:aa:01"
    assert ovs.bridges() == [br]
    # the bridge's mgmt socket is what the OpenFlow adapters connect to
    assert ovs.mgmt_path(br).exists()


async def test_tunnel_ports_reconcile_to_exactly_the_desired_set(
    ovs: OvsSandbox, ovsdb: Ovsdb
) -> None:
    br = ovs.name("int")
    await ovsdb.ensure_bridge(BridgeSpec(br))
    ovs.vsctl(
        "add-port",
        br,
        ovs.name("op"),
        "--",
        "set",
        "interface",
        ovs.name("op"),
        "type=vxlan",
        "options:remote_ip=198.51.100.1",
    )  # an operator's port
    a = TunnelPortSpec(br, "vxlan", "192.0.2.1", "192.0.2.2")
    b = TunnelPortSpec(br, "gre", "192.0.2.1", "192.0.2.3")
    c = TunnelPortSpec(br, "vxlan", "192.0.2.1", "192.0.2.4")

    plan = await ovsdb.reconcile_tunnels(br, [a, b])
    assert {s.name for s in plan.add} == {a.name, b.name}
    assert sorted(ovs.vsctl("list-ports", br).split()) == sorted([ovs.name("op"), a.name, b.name])
    assert ovs.vsctl("get", "interface", a.name, "options").strip() == (
        '{key=flow, local_ip="192.0.2.1", remote_ip="192.0.2.2"}'
    )
    assert ovs.vsctl("get", "interface", b.name, "type").strip() == "gre"
    # ofports are known once reconcile returns: the transaction waits for vswitchd
    assert ovsdb.ofport(br, a.name) is not None
    assert int(ovs.vsctl("get", "interface", a.name, "ofport")) == ovsdb.ofport(br, a.name)

    assert (await ovsdb.reconcile_tunnels(br, [a, b])).empty

    plan = await ovsdb.reconcile_tunnels(br, [b, c])
    assert [s.name for s in plan.add] == [c.name]
    assert [p.name for p in plan.remove] == [a.name]
    assert sorted(ovs.vsctl("list-ports", br).split()) == sorted([ovs.name("op"), b.name, c.name])

    await ovsdb.reconcile_tunnels(br, [])
    assert ovs.vsctl("list-ports", br).split() == [ovs.name("op")]


async def test_patch_ports_join_bridges_and_are_removed(ovs: OvsSandbox, ovsdb: Ovsdb) -> None:
    br_int, br_ex = ovs.name("int"), ovs.name("ex")
    await ovsdb.ensure_bridge(BridgeSpec(br_int))
    await ovsdb.ensure_bridge(BridgeSpec(br_ex))
    pair = patch_pair(br_int, br_ex)
    await ovsdb.reconcile_patch_ports(pair, bridges=[br_int, br_ex])
    assert ovs.vsctl("list-ports", br_int).split() == [f"int-{br_ex}"]
    assert ovs.vsctl("list-ports", br_ex).split() == [f"phy-{br_ex}"]
    assert ovs.vsctl("get", "interface", f"int-{br_ex}", "options:peer").strip('"\n') == (
        f"phy-{br_ex}"
    )
    assert ovsdb.ofport(br_int, f"int-{br_ex}") is not None
    assert (await ovsdb.reconcile_patch_ports(pair, bridges=[br_int, br_ex])).empty
    await ovsdb.reconcile_patch_ports([], bridges=[br_int, br_ex])
    assert ovs.vsctl("list-ports", br_int).split() == []
    assert ovs.vsctl("list-ports", br_ex).split() == []


async def test_vif_plug_and_unplug_are_notified(ovs: OvsSandbox, ovsdb: Ovsdb) -> None:
    br = ovs.name("int")
    await ovsdb.ensure_bridge(BridgeSpec(br))
    tap = ovs.name("tap")
    # As os-vif plugs a VIF (here an internal port, which needs no namespace).
    ovs.vsctl(
        "add-port",
        br,
        tap,
        "--",
        "set",
        "interface",
        tap,
        "type=internal",
        "external_ids:iface-id=4e3c1a2b-0000-4000-8000-000000000001",
        "external_ids:attached-mac=fa:16:3e:00:00:01",
        "external_ids:iface-status=active",
    )
    event = await _next_event(ovsdb, tap, PortEventKind.ADDED)
    port = event.port
    if port.ofport is None:  # vswitchd assigns the ofport in a later update
        port = (await _next_event(ovsdb, tap, PortEventKind.CHANGED)).port
    assert port.bridge == br
    assert port.iface_id == "4e3c1a2b-0000-4000-8000-000000000001"
    assert port.attached_mac == "fa:16:3e:00:00:01"
    assert port.ofport == int(ovs.vsctl("get", "interface", tap, "ofport"))
    assert not port.owned and port.error is None
    assert [p.name for p in ovsdb.vif_ports(br)] == [tap]
    assert port in set(ovsdb.ports(br))

    ovs.vsctl("del-port", br, tap)
    gone = await _next_event(ovsdb, tap, PortEventKind.REMOVED)
    assert gone.port.iface_id == "4e3c1a2b-0000-4000-8000-000000000001"
    assert ovsdb.vif_ports(br) == ()


async def test_existing_ports_are_reported_on_connect(ovs: OvsSandbox) -> None:
    br = ovs.name("int")
    ovs.vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
    ovs.vsctl(
        "add-port",
        br,
        ovs.name("tap"),
        "--",
        "set",
        "interface",
        ovs.name("tap"),
        "type=internal",
        "external_ids:iface-id=p1",
    )
    async with await Ovsdb.connect(OvsdbConfig(remote=ovs.db_remote)) as db:
        event = await _next_event(db, ovs.name("tap"), PortEventKind.ADDED)
        assert event.port.iface_id == "p1"
        assert event.port.ofport is not None


async def test_failed_transaction_raises(ovs: OvsSandbox, ovsdb: Ovsdb) -> None:
    with pytest.raises(OvsdbError, match=r"no_such_bridge"):
        await ovsdb.reconcile_tunnels(
            "no_such_bridge", [TunnelPortSpec("no_such_bridge", "vxlan", "192.0.2.1", "192.0.2.2")]
        )


async def test_bridge_exists_and_delete(ovs: OvsSandbox, ovsdb: Ovsdb) -> None:
    br = ovs.name("int")
    assert not ovsdb.bridge_exists(br)
    await ovsdb.ensure_bridge(BridgeSpec(br))
    assert ovsdb.bridge_exists(br)
    await ovsdb.delete_bridge(br)
    assert not ovsdb.bridge_exists(br)
    assert ovs.bridges() == []


async def test_wait_for_ofport_of_a_port_plugged_without_waiting(
    ovs: OvsSandbox, ovsdb: Ovsdb
) -> None:
    br, tap = ovs.name("int"), ovs.name("tap")
    await ovsdb.ensure_bridge(BridgeSpec(br))
    # --no-wait: vsctl returns before vswitchd has assigned the ofport
    ovs.vsctl("--no-wait", "add-port", br, tap, "--", "set", "interface", tap, "type=internal")
    ofport = await asyncio.wait_for(ovsdb.wait_for_ofport(br, tap), 10)
    assert ofport == int(ovs.vsctl("get", "interface", tap, "ofport"))


async def test_events_resume_after_ovsdb_server_restart(ovs: OvsSandbox, ovsdb: Ovsdb) -> None:
    br = ovs.name("int")
    await ovsdb.ensure_bridge(BridgeSpec(br))
    ovs.stop_ovsdb_server()
    ovs.start_ovsdb_server()
    tap = ovs.name("tap")
    # ovs-vsctl retries until the server is back; the IDL reconnects by itself
    ovs.vsctl("add-port", br, tap, "--", "set", "interface", tap, "type=internal",
              "external_ids:iface-id=after-restart")  # fmt: skip
    event = await _next_event(ovsdb, tap, PortEventKind.ADDED)
    assert event.port.iface_id == "after-restart"
    # writes work again too
    tunnel = TunnelPortSpec(br, "vxlan", "192.0.2.1", "192.0.2.2")
    await ovsdb.reconcile_tunnels(br, [tunnel])
    assert tunnel.name in ovs.vsctl("list-ports", br).split()


async def test_a_port_vswitchd_cannot_create_reports_its_error(
    ovs: OvsSandbox, ovsdb: Ovsdb
) -> None:
    br, ghost = ovs.name("int"), ovs.name("nodev")
    await ovsdb.ensure_bridge(BridgeSpec(br))
    ovs.vsctl("--no-wait", "add-port", br, ghost)  # a system port with no such netdev
    while True:  # the error may come with the ADDED event or in a later CHANGED one
        event = await asyncio.wait_for(ovsdb.port_events.get(), 10)
        if event.port.name == ghost and event.port.error:
            break
    assert event.port.ofport is None
    assert "could not open network device" in event.port.error
    with pytest.raises(OvsdbError, match="could not open network device"):
        await asyncio.wait_for(ovsdb.wait_for_ofport(br, ghost), 10)


async def test_connecting_to_no_server_raises(ovs: OvsSandbox) -> None:
    with pytest.raises(OvsdbError, match="cannot reach"):
        await Ovsdb.connect(OvsdbConfig(remote=f"unix:{ovs.rundir}/nothing.sock", timeout=2))
