from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kumonet.agent.openflow import (
    COOKIE_MARKER,
    COOKIE_MARKER_VALUE,
    InstalledFlows,
    OpenFlowBridge,
    OpenFlowError,
    check_flow_lines,
    desired_from_lines,
    is_kumonet_cookie,
    parse_dump_flows,
)
from kumonet.agent.ovsdb import BridgeSpec, Ovsdb, OvsdbConfig
from kumonet.dataplane import flow as dataplane_flow
from kumonet.dataplane.compiler import FlowDiff, diff_flows

from .conftest import OvsSandbox


def _cookie(n: int) -> int:
    return COOKIE_MARKER_VALUE | n


def _flow(n: int, *, table: int = 10, actions: str = "drop") -> tuple[int, str]:
    """A distinct flow (per ``n``) with a kumonet cookie, in compiler output form."""
    cookie = _cookie(n if actions == "drop" else n | 1 << 40)
    return cookie, (
        f"table={table},priority=100,cookie={cookie:#x},reg6={n},"
        f"dl_src=fa:16:3e:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x} actions={actions}"
    )


# -- pure ------------------------------------------------------------------------


def test_marker_agrees_with_the_compiler() -> None:
    assert COOKIE_MARKER == dataplane_flow.COOKIE_MARKER == 0x6B6E
    assert is_kumonet_cookie(_cookie(5))
    assert not is_kumonet_cookie(0x1234)


def test_diff_of_text_deletes_unwanted_and_adds_missing_only() -> None:
    a, b, c = _flow(1), _flow(2), _flow(3)
    change = diff_flows(dict([b, c]), {a[0]: 1, b[0]: 1})
    assert change.delete_cookies == (a[0],)
    assert change.add == (c[1],)


def test_diff_of_installed_text_is_empty() -> None:
    flows = dict(_flow(n) for n in range(50))
    assert diff_flows(flows, dict.fromkeys(flows, 1)).empty


def test_diff_repairs_a_cookie_carried_by_two_flows() -> None:
    a = _flow(1)
    change = diff_flows(dict([a]), {a[0]: 2})
    assert change.delete_cookies == (a[0],)
    assert change.add == (a[1],)


def test_flow_lines_refuse_unmarked_cookies_and_multi_line_input() -> None:
    check_flow_lines(dict([_flow(1)]))
    with pytest.raises(ValueError, match="marker"):
        check_flow_lines({0x1: "table=0 actions=drop"})
    with pytest.raises(ValueError, match="single flow"):
        check_flow_lines({_cookie(1): "table=0 actions=drop\ntable=1 actions=drop"})
    with pytest.raises(ValueError, match="single flow"):
        check_flow_lines({_cookie(1): "delete table=0"})


def test_bundle_text_deletes_before_adding() -> None:
    change = FlowDiff(delete_cookies=(_cookie(2),), add=("table=0 actions=drop",))
    assert change.bundle_text() == (f"delete cookie={_cookie(2):#x}/-1\nadd table=0 actions=drop\n")


def test_desired_from_lines_refuses_two_flows_with_one_cookie() -> None:
    assert desired_from_lines([_flow(1), _flow(1)]) == dict([_flow(1)])
    with pytest.raises(ValueError, match="two flows"):
        desired_from_lines(
            [(_cookie(1), "table=0 actions=drop"), (_cookie(1), "table=1 actions=drop")]
        )


def test_parse_dump_flows() -> None:
    output = (
        "OFPST_FLOW reply (OF1.5) (xid=0x2):\n"
        " cookie=0x6b6e000000000001, duration=12.5s, table=10, n_packets=3, n_bytes=180,"
        " priority=100,reg6=0x1 actions=drop\n"
        " cookie=0x6b6e000000000002, duration=0.02s, n_packets=0, n_bytes=0,"
        " in_port=1 actions=goto_table:10\n"
    )
    first, second = parse_dump_flows(output)
    assert (first.cookie, first.table, first.priority) == (_cookie(1), 10, 100)
    assert (first.duration, first.n_packets, first.n_bytes) == (12.5, 3, 180)
    assert (second.cookie, second.table, second.priority) == (_cookie(2), 0, 32768)


# -- real OVS --------------------------------------------------------------------


@pytest.fixture
async def bridge(ovs: OvsSandbox) -> AsyncIterator[OpenFlowBridge]:
    name = ovs.name("int")
    async with await Ovsdb.connect(OvsdbConfig(remote=ovs.db_remote)) as db:
        await db.ensure_bridge(BridgeSpec(name))
    yield OpenFlowBridge(target=ovs.mgmt(name))


async def test_reconcile_installs_exactly_the_desired_flows(
    ovs: OvsSandbox, bridge: OpenFlowBridge
) -> None:
    # A flow that is not kumonet's (no marker) must survive every reconcile.
    ovs.ofctl("add-flow", bridge.target, "table=0,priority=1,cookie=0x42 actions=drop")
    desired = dict(_flow(n) for n in range(1, 101))
    change = await bridge.reconcile(desired)
    assert len(change.add) == 100 and not change.delete_cookies
    assert await bridge.dump_cookies() == dict.fromkeys(desired, 1)

    # replace 10 flows, drop 10, add 10
    changed = dict(_flow(n, actions="goto_table:20") for n in range(1, 11))
    new = dict(_flow(n) for n in range(101, 111))
    desired2 = {
        **{c: line for c, line in desired.items() if not 11 <= (c & 0xFFFF) <= 20},
        **new,
    }
    for n in range(1, 11):
        del desired2[_flow(n)[0]]
    desired2.update(changed)
    change = await bridge.reconcile(desired2)
    assert len(change.delete_cookies) == 20 and len(change.add) == 20
    assert await bridge.dump_cookies() == dict.fromkeys(desired2, 1)
    dumped = ovs.ofctl("dump-flows", bridge.target, "table=10,reg6=1")
    assert "actions=goto_table:20" in dumped and dumped.count("reg6=0x1,") == 1
    assert "cookie=0x42" in ovs.ofctl("dump-flows", bridge.target)

    await bridge.reconcile({})
    assert await bridge.dump_cookies() == {}
    assert "cookie=0x42" in ovs.ofctl("dump-flows", bridge.target)


async def test_reapplying_the_installed_set_disturbs_nothing(
    ovs: OvsSandbox, bridge: OpenFlowBridge
) -> None:
    """Restart safety: an agent that starts, reads what is installed and re-applies the
    same desired set neither deletes nor re-adds a flow (their counters survive)."""
    desired = dict(_flow(n, table=0) for n in range(1, 21))
    await bridge.reconcile(desired)
    # Count a packet on flow 1 so that a delete+add would be visible as a reset.
    frame = "ffffffffffff" + "fa163e000001" + "88b5" + "00" * 46
    ovs.ofctl(
        "packet-out", bridge.target,
        f"in_port=LOCAL packet={frame} actions=set_field:1->reg6,resubmit(,0)",
    )  # fmt: skip
    before = {f.cookie: f for f in await bridge.dump_flows()}
    assert before[_flow(1, table=0)[0]].n_packets == 1

    restarted = OpenFlowBridge(target=bridge.target)  # a new agent process, same switch
    change = await restarted.reconcile(desired)
    assert change.empty

    after = {f.cookie: f for f in await restarted.dump_flows()}
    assert after.keys() == before.keys()
    assert after[_flow(1, table=0)[0]].n_packets == 1
    for cookie, flow in after.items():
        assert flow.duration >= before[cookie].duration

    # The detector works: a delete + re-add of the same flow does reset its counter.
    cookie, line = _flow(1, table=0)
    await restarted.apply(FlowDiff(delete_cookies=(cookie,), add=(line,)))
    assert {f.cookie: f for f in await restarted.dump_flows()}[cookie].n_packets == 0


async def test_a_bad_flow_fails_the_whole_bundle(ovs: OvsSandbox, bridge: OpenFlowBridge) -> None:
    desired = dict(_flow(n) for n in range(1, 11))
    await bridge.reconcile(desired)
    bad_cookie = _cookie(999)
    broken = {
        **dict(_flow(n) for n in range(11, 21)),
        bad_cookie: f"table=10,priority=1,cookie={bad_cookie:#x} actions=group:77",
    }
    with pytest.raises(OpenFlowError):
        await bridge.reconcile(broken)
    # nothing of the failed bundle happened: no deletes, no adds
    assert await bridge.dump_cookies() == dict.fromkeys(desired, 1)


async def test_unreachable_switch_raises(ovs: OvsSandbox) -> None:
    with pytest.raises(OpenFlowError):
        await OpenFlowBridge(target=ovs.mgmt(ovs.name("none")), timeout=10).dump_cookies()


async def test_installed_flows_reads_once_then_diffs_in_memory(
    ovs: OvsSandbox, bridge: OpenFlowBridge
) -> None:
    desired = dict(_flow(n) for n in range(1, 51))
    await bridge.reconcile(desired)  # a previous agent's flows
    installed = InstalledFlows(bridge)
    assert (await installed.converge(desired)).empty  # restart: nothing touched

    ovs.ofctl("del-flows", bridge.target, f"cookie={_flow(1)[0]:#x}/-1")  # behind our back
    desired[_flow(51)[0]] = _flow(51)[1]
    change = await installed.converge(desired)
    # memory says flow 1 is installed, so only flow 51 is added ...
    assert change.add == (_flow(51)[1],) and not change.delete_cookies
    assert _flow(1)[0] not in await bridge.dump_cookies()
    # ... until the agent says the switch may have changed behind its back
    installed.forget()
    change = await installed.converge(desired)
    assert change.add == (_flow(1)[1],)
    assert await bridge.dump_cookies() == dict.fromkeys(desired, 1)


async def test_installed_flows_rereads_after_a_failed_bundle(
    ovs: OvsSandbox, bridge: OpenFlowBridge
) -> None:
    installed = InstalledFlows(bridge)
    await installed.converge(dict([_flow(1)]))
    bad = _cookie(999)
    with pytest.raises(OpenFlowError):
        await installed.converge({bad: f"table=10,cookie={bad:#x} actions=group:9"})
    ovs.ofctl("del-flows", bridge.target, f"cookie={_flow(1)[0]:#x}/-1")
    assert (await installed.converge(dict([_flow(1)]))).add == (_flow(1)[1],)
