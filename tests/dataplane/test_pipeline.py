"""The pipeline declaration: numbers derive from order, flows are checked when built."""

from __future__ import annotations

import pytest

from kumonet.dataplane.flow import (
    Clone,
    Conjunction,
    Conntrack,
    Controller,
    CtClear,
    Goto,
    Output,
    PipelineError,
    PushVlan,
    SetField,
)
from kumonet.dataplane.pipeline import (
    CT_MARK_CUT,
    KUMONET_PIPELINE,
    TABLE_STRIDE,
    Pipeline,
    TableSpec,
    describe_pipeline,
)

P = KUMONET_PIPELINE


def test_table_numbers_derive_from_the_declaration_order() -> None:
    numbers = [table.number for table in P.tables]
    assert numbers == [i * TABLE_STRIDE for i in range(len(P.tables))]
    assert P.table("classify").number == 0
    names = [table.name for table in P.tables]
    # The ACL tables, in the order a packet meets them.
    assert names.index("port_security") < names.index("egress_acl") < names.index("l2_lookup")
    assert names.index("l2_lookup") < names.index("ingress_acl") < names.index("output")


def test_a_match_on_an_undeclared_field_raises() -> None:
    with pytest.raises(PipelineError, match="may not match dl_type"):
        P.table("classify").flow(10, {"dl_type": "0x0800", "nw_src": "10.0.0.1"})
    with pytest.raises(PipelineError, match="unknown match field"):
        P.table("classify").flow(10, {"no_such_field": 1})


def test_a_jump_to_a_table_not_declared_next_raises() -> None:
    classify = P.table("classify")
    with pytest.raises(PipelineError, match="may not go to output"):
        classify.flow(10, {"in_port": 1}, [Goto(P.table("output"))])
    lookup = P.table("l2_lookup")
    with pytest.raises(PipelineError, match="may not go to"):
        lookup.flow(10, {"dl_dst": "ff:ff:ff:ff:ff:ff"}, [Clone((Goto(P.table("dhcp")),))])


def test_goto_must_go_forward_and_be_last() -> None:
    backwards = Pipeline(
        (
            TableSpec("a", "first", frozenset({"in_port"}), next_tables=("b",)),
            TableSpec("b", "second", frozenset({"in_port"}), next_tables=("a",)),
        ),
        (),
    )
    with pytest.raises(PipelineError, match="forward"):
        backwards.table("b").flow(1, actions=[Goto(backwards.table("a"))])
    classify = P.table("classify")
    with pytest.raises(PipelineError, match="last action"):
        classify.flow(1, actions=[classify.goto("dhcp"), SetField("reg5", "1")])


def test_writes_outputs_controller_and_vlan_are_declared_per_table() -> None:
    with pytest.raises(PipelineError, match="may not write reg7"):
        P.table("classify").flow(1, actions=[SetField("reg7", "1")])
    with pytest.raises(PipelineError, match="may not output"):
        P.table("classify").flow(1, actions=[Output(1)])
    with pytest.raises(PipelineError, match="controller"):
        P.table("l2_lookup").flow(1, actions=[Controller()])
    with pytest.raises(PipelineError, match="VLAN"):
        P.table("port_security").flow(1, actions=[PushVlan(5)])


def test_prerequisites_are_checked() -> None:
    security = P.table("port_security")
    with pytest.raises(PipelineError, match="nw_src needs dl_type"):
        security.flow(1, {"nw_src": "10.0.0.1"})
    with pytest.raises(PipelineError, match="tp_src needs nw_proto"):
        security.flow(1, {"dl_type": "0x0800", "tp_src": 67})
    with pytest.raises(PipelineError, match="nd_target needs icmpv6_type"):
        security.flow(1, {"dl_type": "0x86dd", "nw_proto": 58, "icmpv6_type": 128,
                          "nd_target": "fe80::1"})  # fmt: skip
    security.flow(1, {"dl_type": "0x0800", "nw_proto": 17, "tp_src": 67})


def test_declaration_refers_only_to_declared_tables_and_fields() -> None:
    with pytest.raises(PipelineError, match="undeclared table"):
        Pipeline((TableSpec("a", "x", frozenset(), next_tables=("nowhere",)),), ())
    with pytest.raises(PipelineError, match="unknown fields"):
        Pipeline((TableSpec("a", "x", frozenset({"bogus"})),), ())
    with pytest.raises(PipelineError, match="unique"):
        Pipeline((TableSpec("a", "x", frozenset()), TableSpec("a", "y", frozenset())), ())


def test_every_table_has_a_miss_flow_with_its_declared_action() -> None:
    misses = {flow.table.name: flow for flow in P.miss_flows()}
    assert set(misses) == {table.name for table in P.tables}
    assert misses["dhcp"].body.endswith(f"actions=goto_table:{P.table('egress_ct').number}")
    assert misses["port_security"].body.endswith("actions=drop")


def test_registers_are_declared() -> None:
    assert P.register("network") == "metadata"
    assert P.register("out_port") == "reg7"
    with pytest.raises(PipelineError):
        P.register("nothing")


def test_the_diagram_lists_every_table_and_register() -> None:
    text = describe_pipeline()
    for table in P.tables:
        assert f"| {table.number} | {table.name} |" in text
    for register in P.registers:
        assert f"| {register.name} | {register.field} |" in text


def test_conntrack_and_conjunctions_are_declared_per_table() -> None:
    egress_ct = P.table("egress_ct")
    ip: dict[str, str | int] = {"dl_type": "0x800"}
    to_acl = Conntrack("reg5", table=P.table("egress_acl"))
    assert egress_ct.flow(1, ip, [to_acl]).body.endswith(
        f"actions=ct(table={P.table('egress_acl').number},zone=NXM_NX_REG5[0..15])"
    )
    # The zone is the declared register of the table: the sender's port in egress.
    with pytest.raises(PipelineError, match="zone"):
        egress_ct.flow(1, ip, [Conntrack("reg7", table=P.table("egress_acl"))])
    with pytest.raises(PipelineError, match="may not use ct zone"):
        P.table("egress_rules").flow(1, ip, [Conntrack("reg5")])
    with pytest.raises(PipelineError, match="IPv4 or IPv6"):
        egress_ct.flow(1, {}, [to_acl])
    with pytest.raises(PipelineError, match="ct\\(table"):
        egress_ct.flow(1, ip, [Conntrack("reg5", table=P.table("ingress_acl"))])
    with pytest.raises(PipelineError, match="conntrack"):
        P.table("egress_rules").flow(1, ip, [CtClear()])
    rules = P.table("egress_rules")
    assert rules.flow(1, ip, [Conjunction(7, 1, 2)]).body.endswith("conjunction(7,1/2)")
    with pytest.raises(PipelineError, match="no other actions"):
        rules.flow(1, ip, [Conjunction(7, 1, 2), SetField("reg3", "0x4/0x4")])
    with pytest.raises(PipelineError, match="conjunctive"):
        P.table("egress_acl").flow(1, ip, [Conjunction(7, 1, 2)])


def test_flag_fields_render_and_need_their_prerequisites() -> None:
    acl = P.table("egress_acl")
    flow = acl.flow(5, {"ct_state": "+new+trk", "dl_type": "0x800", "nw_proto": 6,
                        "tcp_flags": "-syn"})  # fmt: skip
    assert "ct_state=+new+trk,dl_type=0x800,nw_proto=6,tcp_flags=-syn" in flow.body
    with pytest.raises(PipelineError, match="tcp_flags needs nw_proto"):
        acl.flow(5, {"dl_type": "0x800", "nw_proto": 17, "tcp_flags": "-syn"})


def test_the_cut_mark_is_matched_and_written_only_where_the_acl_runs() -> None:
    verdict = P.table("ingress_verdict")
    ip: dict[str, str | int] = {"dl_type": "0x800", "ct_state": "-new+est+trk"}
    cut = Conntrack("reg7", commit=True, mark=f"{CT_MARK_CUT:#x}/{CT_MARK_CUT:#x}")
    assert verdict.flow(50, {**ip, "ct_mark": "0/0x1"}, [cut]).body.endswith(
        "actions=ct(commit,zone=NXM_NX_REG7[0..15],exec(set_field:0x1/0x1->ct_mark))"
    )
    assert P.table("egress_acl").flow(190, {"ct_mark": "0x1/0x1"}).body
    with pytest.raises(PipelineError, match="may not match ct_mark"):
        P.table("l2_lookup").flow(1, {"ct_mark": "0x1/0x1"})
