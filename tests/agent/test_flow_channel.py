"""The persistent flow channel on a real Open vSwitch: whole compiled plans installed
through it leave exactly the flows ``ovs-ofctl`` leaves for the same lines (a
differential test of the encoder), bundles stay atomic, an unknown line falls back
to ``ovs-ofctl``, the channel reconnects after ovs-vswitchd restarts (refusing the
change computed against the old switch), its xids wrap at 32 bits, and a refusal
names the flow refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kumonet.agent.flow_channel import BundleFailed, FlowChannel, SwitchReconnected
from kumonet.agent.openflow import COOKIE_MARKER_VALUE, OpenFlowBridge, OpenFlowError
from kumonet.agent.ovsdb import BridgeSpec, Ovsdb, OvsdbConfig
from kumonet.dataplane.compiler import HostPlan, compile_host
from tests.dataplane.cloud import cloud_intent, h1_facts
from tests.dataplane.test_security_group import facts as sg_facts
from tests.dataplane.test_security_group import sg_intent

from .conftest import OvsSandbox


async def _bridges(ovs: OvsSandbox, *suffixes: str) -> list[str]:
    names = [ovs.name(suffix) for suffix in suffixes]
    async with await Ovsdb.connect(OvsdbConfig(remote=ovs.db_remote)) as db:
        for name in names:
            await db.ensure_bridge(BridgeSpec(name))
    return names


@pytest.fixture
async def channel(ovs: OvsSandbox) -> AsyncIterator[FlowChannel]:
    [name] = await _bridges(ovs, "ch")
    channel = FlowChannel(ovs.mgmt(name), timeout=10)
    yield channel
    await channel.close()


def _dump(ovs: OvsSandbox, bridge: str) -> list[str]:
    out = ovs.ofctl("dump-flows", "--no-stats", "--no-names", ovs.mgmt(bridge))
    return sorted(line.strip() for line in out.splitlines() if "actions=" in line)


def _plans() -> dict[str, HostPlan]:
    return {
        "l2 (tunnels, provider VLAN and flat, DHCP, port security)": compile_host(
            cloud_intent(), h1_facts(bridge_mappings={"physnet1": "br-ex"})
        ),
        "security groups (conntrack, conjunctions, ct_mark)": compile_host(sg_intent(), sg_facts()),
    }


async def test_compiled_plans_install_exactly_as_with_ovs_ofctl(ovs: OvsSandbox) -> None:
    by_ofctl, by_channel = await _bridges(ovs, "of", "ch")
    channel = FlowChannel(ovs.mgmt(by_channel), timeout=10)
    reference = OpenFlowBridge(target=ovs.mgmt(by_ofctl))
    checked = 0
    try:
        for name, plan in _plans().items():
            for bridge in plan.flows:
                lines = {
                    cookie: flow.render() for cookie, flow in plan.bridge_flows(bridge).items()
                }
                await reference.reconcile(lines)
                installed = await OpenFlowBridge(target=ovs.mgmt(by_channel)).dump_cookies()
                # Straight through the channel: no fallback to ovs-ofctl can hide a gap.
                await channel.apply(sorted(installed), list(lines.values()))
                theirs, ours = _dump(ovs, by_ofctl), _dump(ovs, by_channel)
                assert ours == theirs, f"{name}, {bridge}"
                assert len(ours) == len(lines)
                checked += len(lines)
    finally:
        await channel.close()
    assert checked > 300
    assert channel.connections == 1  # one connection for all of it


async def test_a_refused_flow_fails_the_whole_bundle(ovs: OvsSandbox, channel: FlowChannel) -> None:
    bridge = OpenFlowBridge(target=ovs.mgmt(ovs.name("ch")), channel=channel)
    good = {
        COOKIE_MARKER_VALUE | n: f"table=10,priority={n},cookie={COOKIE_MARKER_VALUE | n:#x},"
        f"reg6={n} actions=goto_table:20"
        for n in range(1, 11)
    }
    await bridge.reconcile(good)
    # Encodable, but the switch refuses it (goto_table must go forward).
    bad = COOKIE_MARKER_VALUE | 999
    with pytest.raises(OpenFlowError, match="refused"):
        await bridge.reconcile({bad: f"table=10,cookie={bad:#x},reg6=99 actions=goto_table:3"})
    assert await bridge.dump_cookies() == dict.fromkeys(good, 1)  # nothing deleted, nothing added
    # The connection is still good for the next change.
    assert (await bridge.reconcile({})).delete_cookies
    assert await bridge.dump_cookies() == {}
    assert channel.connections == 1


async def test_a_line_it_cannot_encode_goes_through_ovs_ofctl(
    ovs: OvsSandbox, channel: FlowChannel
) -> None:
    bridge = OpenFlowBridge(target=ovs.mgmt(ovs.name("ch")), channel=channel)
    cookie = COOKIE_MARKER_VALUE | 5
    await bridge.reconcile({cookie: f"table=0,cookie={cookie:#x} actions=note:0102"})
    assert await bridge.dump_cookies() == {cookie: 1}
    assert channel.connections == 0


async def test_the_channel_reconnects_after_the_switch_restarts(
    ovs: OvsSandbox, channel: FlowChannel
) -> None:
    line = f"table=0,priority=5,cookie={COOKIE_MARKER_VALUE | 1:#x} actions=drop"
    await channel.apply([], [line])
    ovs.stop_vswitchd()
    ovs.start_vswitchd()
    for _ in range(100):  # the bridge's socket comes back once vswitchd has read the DB
        try:
            await channel.apply([], [line])
            break
        except BundleFailed:
            await asyncio.sleep(0.1)
    assert channel.connections == 2
    assert len(_dump(ovs, ovs.name("ch"))) == 1


async def test_a_change_computed_before_a_restart_is_not_sent_to_the_new_switch(
    ovs: OvsSandbox, channel: FlowChannel
) -> None:
    bridge = ovs.name("ch")
    first = f"table=0,priority=5,cookie={COOKIE_MARKER_VALUE | 1:#x} actions=drop"
    second = f"table=0,priority=6,cookie={COOKIE_MARKER_VALUE | 2:#x} actions=drop"
    await channel.apply([], [first])
    ovs.stop_vswitchd()
    ovs.start_vswitchd()
    # The delta "add the second" assumed the first installed: the new switch has
    # neither, so sending it would leave the switch with only the delta.
    for _ in range(100):  # the bridge's socket comes back once vswitchd has read the DB
        try:
            await channel.apply([], [second])
        except SwitchReconnected:
            break
        except BundleFailed:
            await asyncio.sleep(0.1)
    else:
        pytest.fail("the change went to the new switch, or it never came back")
    assert _dump(ovs, bridge) == []
    # Recomputed against the new switch, the next change goes through.
    await channel.apply([], [first, second])
    assert len(_dump(ovs, bridge)) == 2
    assert channel.connections == 2


async def test_xids_wrap_at_32_bits(ovs: OvsSandbox) -> None:
    [bridge] = await _bridges(ovs, "xw")
    # Each change takes 4 xids (open, one flow, barrier, commit): the third wraps.
    channel = FlowChannel(ovs.mgmt(bridge), timeout=10, first_xid=0xFFFFFFFF - 8)
    try:
        for n in range(1, 6):
            cookie = COOKIE_MARKER_VALUE | n
            await channel.apply([], [f"table=0,priority={n},cookie={cookie:#x} actions=drop"])
    finally:
        await channel.close()
    assert len(_dump(ovs, bridge)) == 5


async def test_a_refused_commit_names_the_flow_that_failed(
    ovs: OvsSandbox, channel: FlowChannel
) -> None:
    bridge = ovs.name("ch")
    # A full table refuses at COMMIT what a BUNDLE_ADD accepted.
    ovs.vsctl(
        "--", "--id=@ft", "create", "Flow_Table", "flow_limit=1", "overflow_policy=refuse",
        "--", "set", "Bridge", bridge, "flow_tables:7=@ft",
    )  # fmt: skip
    lines = [
        f"table=7,priority={n},cookie={COOKIE_MARKER_VALUE | n:#x} actions=drop" for n in (1, 2)
    ]
    with pytest.raises(BundleFailed, match="commit refused") as refused:
        await channel.apply([], lines)
    assert "table=7,priority=2" in str(refused.value)
    assert "commit: error" in str(refused.value)
    assert _dump(ovs, bridge) == []  # atomic: neither
