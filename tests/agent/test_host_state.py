from __future__ import annotations

import pytest

from kumonet.agent.host_state import desired_flows, host_facts, patch_specs, tunnel_specs
from kumonet.agent.openflow import OpenFlowBridge
from kumonet.agent.ovsdb import BridgeSpec, Ovsdb, OvsdbConfig, PortState, patch_pair
from kumonet.dataplane.compiler import HostPlan, PatchPort, TunnelPort, compile_host
from kumonet.dataplane.intent import FixedIp, Host, Intent, Network, Port, Subnet

from .conftest import OvsSandbox

NET = "11111111-1111-4111-8111-111111111111"
PHYSNET_NET = "22222222-2222-4222-8222-222222222222"
LOCAL = "aaaaaaaa-0000-4000-8000-000000000001"
REMOTE = "aaaaaaaa-0000-4000-8000-000000000002"
LOCAL_ON_PHYSNET = "aaaaaaaa-0000-4000-8000-000000000003"


def _intent() -> Intent:
    return Intent(
        networks={
            NET: Network(NET, "vxlan", segmentation_id=1001),
            PHYSNET_NET: Network(
                PHYSNET_NET, "vlan", segmentation_id=42, physical_network="physnet1"
            ),
        },
        subnets={"s1": Subnet("s1", NET, "10.0.0.0/24", gateway_ip="10.0.0.1")},
        ports={
            LOCAL: Port(
                LOCAL, NET, "fa:16:3e:00:00:01", (FixedIp("s1", "10.0.0.5"),), host="host1"
            ),
            REMOTE: Port(
                REMOTE, NET, "fa:16:3e:00:00:02", (FixedIp("s1", "10.0.0.6"),), host="host2"
            ),
            LOCAL_ON_PHYSNET: Port(
                LOCAL_ON_PHYSNET, PHYSNET_NET, "fa:16:3e:00:00:03", host="host1"
            ),
        },
        hosts={"host1": Host("host1", "192.0.2.1"), "host2": Host("host2", "192.0.2.2")},
    )


def test_plan_ports_become_ovsdb_specs() -> None:
    plan = HostPlan(
        flows={},
        tunnel_ports=frozenset({TunnelPort("vxlan-192.0.2.2", "vxlan", "192.0.2.1", "192.0.2.2")}),
        patch_ports=frozenset({PatchPort("physnet1", "br-ex", "int-br-ex", "phy-br-ex")}),
    )
    [tunnel] = tunnel_specs(plan, "br-int")
    assert (tunnel.bridge, tunnel.name, tunnel.options) == (
        "br-int", "vxlan-192.0.2.2",
        {"key": "flow", "local_ip": "192.0.2.1", "remote_ip": "192.0.2.2"},
    )  # fmt: skip
    assert tuple(patch_specs(plan, "br-int")) == patch_pair("br-int", "br-ex")


def test_a_compiler_tunnel_name_ovsdb_would_not_find_is_refused() -> None:
    plan = HostPlan(
        flows={},
        tunnel_ports=frozenset({TunnelPort("tun-2", "vxlan", "192.0.2.1", "192.0.2.2")}),
        patch_ports=frozenset(),
    )
    with pytest.raises(ValueError, match="tun-2"):
        tunnel_specs(plan, "br-int")


def test_facts_from_a_snapshot() -> None:
    ports = [
        PortState("br-int", "tapaaaa", "", 3, {"iface-id": LOCAL}),
        PortState("br-int", "tapnoofport", "", None, {"iface-id": "not-yet"}),
        PortState("br-int", "vxlan-192.0.2.2", "vxlan", 4),
        PortState("br-int", "int-br-ex", "patch", 5, options={"peer": "phy-br-ex"}),
        PortState("br-ex", "phy-br-ex", "patch", 1, options={"peer": "int-br-ex"}),
        PortState("br-other", "tapother", "", 9, {"iface-id": "elsewhere"}),
    ]
    facts = host_facts(ports, host="host1", tunnel_ip="192.0.2.1", integration_bridge="br-int",
                       bridge_mappings={"physnet1": "br-ex"})  # fmt: skip
    assert facts.local_ofports == {LOCAL: 3}
    assert facts.tunnel_ofports == {"vxlan-192.0.2.2": 4}
    assert facts.patch_ofports == {"physnet1": 5}


async def test_compile_reconcile_recompile_on_real_ovs(ovs: OvsSandbox) -> None:
    """The agent's loop in miniature: facts -> plan -> ports -> facts -> plan -> flows.
    A second pass changes nothing."""
    br_int, br_ex = ovs.name("int"), ovs.name("ex")
    tap = ovs.name("tap")
    async with await Ovsdb.connect(OvsdbConfig(remote=ovs.db_remote)) as ovsdb:
        await ovsdb.ensure_bridge(BridgeSpec(br_int))
        await ovsdb.ensure_bridge(BridgeSpec(br_ex))
        ovs.vsctl("add-port", br_int, tap, "--", "set", "interface", tap, "type=internal",
                  f"external_ids:iface-id={LOCAL}")  # fmt: skip
        await ovsdb.wait_for_ofport(br_int, tap)
        mappings = {"physnet1": br_ex}

        async def one_pass() -> tuple[int, int]:
            """Returns (ports changed, flow mods applied)."""
            changed = 0
            for _ in range(2):  # ports first; their new ofports feed the flows
                facts = host_facts(ovsdb.ports(), host="host1", tunnel_ip="192.0.2.1",
                                   integration_bridge=br_int, bridge_mappings=mappings)  # fmt: skip
                plan = compile_host(_intent(), facts)
                tunnels = await ovsdb.reconcile_tunnels(br_int, tunnel_specs(plan, br_int))
                patches = await ovsdb.reconcile_patch_ports(
                    patch_specs(plan, br_int), bridges=[br_int, br_ex]
                )
                changed += len(tunnels.add) + len(patches.add)
            mods = 0
            for bridge in plan.flows:
                change = await OpenFlowBridge(ovs.mgmt(bridge)).reconcile(
                    desired_flows(plan, bridge)
                )
                mods += len(change.delete_cookies) + len(change.add)
            return changed, mods

        ports_changed, flow_mods = await one_pass()
        assert ports_changed == 3  # the tunnel to host2 and both patch ends
        assert flow_mods > 0
        facts = host_facts(ovsdb.ports(), host="host1", tunnel_ip="192.0.2.1",
                           integration_bridge=br_int, bridge_mappings=mappings)  # fmt: skip
        assert facts.local_ofports.keys() == {LOCAL}
        assert facts.tunnel_ofports.keys() == {"vxlan-192.0.2.2"}
        assert facts.patch_ofports.keys() == {"physnet1"}
        plan = compile_host(_intent(), facts)
        installed = await OpenFlowBridge(ovs.mgmt(br_int)).dump_cookies()
        assert installed == dict.fromkeys(plan.cookies(br_int), 1)
        # flows use the tunnel's real ofport
        tunnel_ofport = facts.tunnel_ofports["vxlan-192.0.2.2"]
        assert f"output:{tunnel_ofport}" in "".join(plan.lines(br_int))

        assert await one_pass() == (0, 0)
