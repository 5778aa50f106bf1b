"""The in-memory switch model itself: priorities, ambiguity, clone, in_port."""

from __future__ import annotations

import pytest

from kumonet.dataplane.flow import Clone, Conjunction, Output, OutputToField, SetField
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
