"""The in-memory switch model itself: priorities, ambiguity, clone, in_port."""

from __future__ import annotations

import pytest

from kumonet.dataplane.flow import (
    Clone,
    Conjunction,
    Conntrack,
    Output,
    OutputToField,
    PipelineError,
    SetField,
)
from kumonet.dataplane.oftable import (
    ConnectionTable,
    ModelError,
    OpenFlowTables,
    ct_states,
    make_packet,
)
from kumonet.dataplane.pipeline import KUMONET_PIPELINE

P = KUMONET_PIPELINE
LOOKUP = P.table("l2_lookup")


def test_highest_priority_wins_and_masks_apply() -> None:
    switch = OpenFlowTables([
        P.table("classify").flow(10, {"in_port": 1}, [P.table("classify").goto("l2_lookup")]),
        LOOKUP.flow(5, {"dl_dst": "01:00:00:00:00:00/01:00:00:00:00:00"}, [Output(7)]),
        LOOKUP.flow(9, {"dl_dst": "ff:ff:ff:ff:ff:ff"}, [Output(8)]),
    ])  # fmt: skip
    assert switch.send(in_port=1, dl_dst="ff:ff:ff:ff:ff:ff").ports() == {8}
    assert switch.send(in_port=1, dl_dst="33:33:00:00:00:01").ports() == {7}
    assert switch.send(in_port=1, dl_dst="fa:16:3e:00:00:01").dropped
    assert switch.send(in_port=2, dl_dst="ff:ff:ff:ff:ff:ff").dropped


def test_equal_priority_overlap_is_an_error() -> None:
    switch = OpenFlowTables([
        P.table("classify").flow(10, {"in_port": 1}),
        P.table("classify").flow(10, {"dl_src": "fa:16:3e:00:00:01"},
                                 [P.table("classify").goto("dhcp")]),
    ])  # fmt: skip
    with pytest.raises(ModelError, match="ambiguous"):
        switch.send(in_port=1, dl_src="fa:16:3e:00:00:01")


def test_clone_isolates_and_output_to_in_port_is_dropped() -> None:
    classify = P.table("classify")
    switch = OpenFlowTables([
        classify.flow(10, {}, [classify.goto("l2_lookup")]),
        LOOKUP.flow(1, {}, [Clone((SetField("tun_id", "0x5"), Output(3))), Output(1), Output(4)]),
    ])  # fmt: skip
    verdict = switch.send(in_port=1)
    assert verdict.ports() == {3, 4}
    assert verdict.is_output(3, tun_id=5) and verdict.is_output(4, tun_id=0)


def test_registers_start_at_zero_and_are_not_on_the_wire() -> None:
    classify = P.table("classify")
    switch = OpenFlowTables([
        classify.flow(10, {}, [SetField("reg5", "9"), classify.goto("dhcp")]),
        P.table("dhcp").miss_flow(),
        P.table("egress_ct").flow(1, {"reg3": 0}, [P.table("egress_ct").goto("l2_lookup")]),
        LOOKUP.flow(1, {"reg4": 0}, [SetField("reg7", "6"), LOOKUP.goto("ingress_ct")]),
        P.table("ingress_ct").flow(1, {}, [P.table("ingress_ct").goto("output")]),
        P.table("output").flow(1, {}, [OutputToField("reg7")]),
    ])  # fmt: skip
    delivery = switch.send(in_port=2).output(6)
    assert "reg5" not in delivery.packet and "reg7" not in delivery.packet


RULES = P.table("egress_rules")
ALLOW = SetField("reg3", "0x4/0x4")


def conjunctive_switch() -> OpenFlowTables:
    """conj 7 = tcp/22 ∧ dst ∈ {10.0.0.1, 10.0.0.2}; a lower flow catches the rest."""
    tcp = {"dl_type": "0x800", "nw_proto": 6}
    return OpenFlowTables([
        RULES.flow(90, {**tcp, "tp_dst": 22}, [Conjunction(7, 1, 2)]),
        RULES.flow(90, {"dl_type": "0x800", "nw_dst": "10.0.0.1"}, [Conjunction(7, 2, 2)]),
        RULES.flow(90, {"dl_type": "0x800", "nw_dst": "10.0.0.2"},
                   [Conjunction(7, 2, 2), Conjunction(8, 2, 2)]),
        RULES.flow(200, {"conj_id": 7}, [ALLOW]),
        RULES.flow(10, {"dl_type": "0x800"}, [SetField("reg3", "0x1/0x1")]),
    ])  # fmt: skip


def test_conjunctions_need_every_dimension_then_look_up_conj_id() -> None:
    switch = conjunctive_switch()
    ip = {"dl_type": 0x0800, "nw_proto": 6}
    assert switch.lookup(RULES.number, make_packet(**ip, tp_dst=22, nw_dst="10.0.0.2")).body \
        .endswith("actions=set_field:0x4/0x4->reg3")  # fmt: skip
    # One dimension alone: the conjunction does not match; the lower flow does.
    for packet in ({"tp_dst": 22, "nw_dst": "10.0.0.3"}, {"tp_dst": 23, "nw_dst": "10.0.0.1"}):
        found = switch.lookup(RULES.number, make_packet(**ip, **packet))
        assert found is not None and found.priority == 10
    # Conjunction 8 has only its second dimension here: never complete.
    found = switch.lookup(RULES.number, make_packet(**ip, tp_dst=80, nw_dst="10.0.0.2"))
    assert found is not None and found.priority == 10


def test_a_complete_conjunction_without_a_conj_id_flow_falls_through() -> None:
    switch = OpenFlowTables([
        RULES.flow(90, {"dl_type": "0x800", "nw_proto": 6}, [Conjunction(9, 1, 2)]),
        RULES.flow(90, {"dl_type": "0x800", "nw_dst": "10.0.0.1"}, [Conjunction(9, 2, 2)]),
        RULES.flow(5, {}, [SetField("reg3", "0x1/0x1")]),
    ])  # fmt: skip
    found = switch.lookup(RULES.number, make_packet(dl_type=0x0800, nw_proto=6, nw_dst="10.0.0.1"))
    assert found is not None and found.priority == 5


def test_masked_set_field_keeps_the_other_bits() -> None:
    classify = P.table("classify")
    switch = OpenFlowTables([
        classify.flow(1, {}, [SetField("reg3", "0x1/0x1"), SetField("reg3", "0x4/0x4"),
                              classify.goto("dhcp")]),
        P.table("dhcp").flow(1, {}, [P.table("dhcp").goto("egress_ct")]),
        P.table("egress_ct").flow(1, {"reg3": "0x5"}, [P.table("egress_ct").goto("l2_lookup")]),
        LOOKUP.flow(1, {}, [Output(3)]),
    ])  # fmt: skip
    assert switch.send(in_port=1).ports() == {3}


def test_connection_table_new_established_reply_invalid() -> None:
    table = ConnectionTable()
    syn = make_packet(dl_type=0x0800, nw_proto=6, nw_src="10.0.0.1", nw_dst="10.0.0.2",
                      tp_src=1000, tp_dst=22, tcp_flags="syn")  # fmt: skip
    synack = make_packet(dl_type=0x0800, nw_proto=6, nw_src="10.0.0.2", nw_dst="10.0.0.1",
                         tp_src=22, tp_dst=1000, tcp_flags="syn|ack")  # fmt: skip
    trk, new, est, rpl, inv = 0x20, 0x01, 0x02, 0x08, 0x10
    assert table.state(5, syn) == trk | new
    assert table.state(5, synack) == trk | inv  # nothing opened it
    table.commit(5, syn)
    assert table.state(5, syn) == trk | new  # committed, no reply seen yet
    assert table.state(6, synack) == trk | inv  # another zone knows nothing
    assert table.state(5, synack) == trk | est | rpl
    assert table.state(5, syn) == trk | est
    ack = {**synack, "tcp_flags": 0x10, "tp_src": 23}
    assert table.state(5, ack) == trk | new  # a bare ACK is picked up as new
    assert table.zones() == {5}
    assert ct_states("trk,est", "trk,inv") == [trk | est, trk | inv]


def test_connection_table_keeps_the_mark_a_commit_writes_for_both_directions() -> None:
    table = ConnectionTable()
    syn = make_packet(dl_type=0x0800, nw_proto=17, nw_src="10.0.0.1", nw_dst="10.0.0.2",
                      tp_src=1000, tp_dst=53)  # fmt: skip
    back = make_packet(dl_type=0x0800, nw_proto=17, nw_src="10.0.0.2", nw_dst="10.0.0.1",
                       tp_src=53, tp_dst=1000)  # fmt: skip
    assert table.mark_of(5, syn) is None
    table.commit(5, syn, "0x1/0x1")
    assert table.mark_of(5, syn) == table.mark_of(5, back) == 1
    table.commit(5, back, "0x6/0x6")  # a commit from the reply side marks the same entry
    assert table.mark_of(5, syn) == 7
    table.commit(5, syn, "0/0x1")  # masked: the other bits stay
    assert table.mark_of(5, back) == 6
    assert table.mark_of(6, syn) is None
    assert len(table.connections) == 1


def test_ct_gives_later_packets_the_mark_their_connection_was_committed_with() -> None:
    egress_ct, acl, verdict = P.table("egress_ct"), P.table("egress_acl"), P.table("egress_verdict")
    ip4 = {"dl_type": "0x800"}
    classify, dhcp = P.table("classify"), P.table("dhcp")
    flows = [
        classify.flow(1, {}, [classify.goto("dhcp")]),
        dhcp.flow(1, {}, [dhcp.goto("egress_ct")]),
        egress_ct.flow(1, ip4, [Conntrack("reg5", table=acl)]),
        acl.flow(2, {"ct_mark": "0x1/0x1"}),
        acl.flow(1, {}, [acl.goto("egress_verdict")]),
        verdict.flow(1, ip4, [Conntrack("reg5", commit=True, mark="0x1/0x1"),
                              verdict.goto("l2_lookup")]),
        LOOKUP.flow(1, {}, [Output(3)]),
    ]  # fmt: skip
    switch = OpenFlowTables(flows)
    udp = {"in_port": 1, "dl_type": 0x0800, "nw_proto": 17, "nw_src": "10.0.0.1",
           "nw_dst": "10.0.0.2", "tp_src": 1, "tp_dst": 2}  # fmt: skip
    reply = {**udp, "nw_src": "10.0.0.2", "nw_dst": "10.0.0.1", "tp_src": 2, "tp_dst": 1}
    assert switch.send(**udp).ports() == {3}  # not committed before: no mark
    assert switch.send(**udp).dropped
    assert switch.send(**reply).dropped  # the mark is the connection's, both ways
    # Dictated states keep the mark the packet was given, as ofproto/trace does.
    fresh = OpenFlowTables(flows)
    assert fresh.send(ct_states("trk,est"), **udp).ports() == {3}
    assert fresh.send(ct_states("trk,est"), ct_mark=1, **udp).dropped


def test_only_a_committing_ct_sets_a_mark() -> None:
    with pytest.raises(PipelineError):
        Conntrack("reg5", mark="0x1/0x1")
