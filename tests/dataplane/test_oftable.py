"""The in-memory switch model itself: priorities, ambiguity, clone, in_port."""

from __future__ import annotations

import pytest

from kumonet.dataplane.flow import Clone, Output, OutputToField, SetField
from kumonet.dataplane.oftable import ModelError, OpenFlowTables
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
