"""Flows: canonical matches, ovs-ofctl text and content-derived cookies."""

from __future__ import annotations

from kumonet.dataplane.flow import (
    COOKIE_MARKER,
    Clone,
    Output,
    OutputToField,
    PopVlan,
    PushVlan,
    SetField,
    is_kumonet_cookie,
)
from kumonet.dataplane.pipeline import KUMONET_PIPELINE

P = KUMONET_PIPELINE


def test_match_order_does_not_change_the_flow() -> None:
    classify = P.table("classify")
    one = classify.flow(100, {"in_port": 5, "dl_src": "fa:16:3e:00:00:01"})
    two = classify.flow(100, {"dl_src": "fa:16:3e:00:00:01", "in_port": 5})
    assert one == two and one.cookie == two.cookie and one.render() == two.render()


def test_rendered_text_is_what_ovs_ofctl_takes() -> None:
    lookup = P.table("l2_lookup")
    flow = lookup.flow(
        60,
        {"metadata": "0x1", "reg4": 0, "dl_dst": "01:00:00:00:00:00/01:00:00:00:00:00"},
        [Clone((SetField("reg7", "3"), lookup.resubmit("ingress_ct"))),
         SetField("tun_id", "0x64"), Output(20), PushVlan(42), Output(30)],
    )  # fmt: skip
    assert flow.render() == (
        f"table=80,priority=60,cookie={flow.cookie:#x},metadata=0x1,reg4=0,"
        "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=clone(set_field:3->reg7,"
        "resubmit(,90)),set_field:0x64->tun_id,output:20,push_vlan:0x8100,"
        "set_field:4138->vlan_vid,output:30"
    )
    assert (
        P.table("output")
        .flow(1, actions=[OutputToField("reg7")])
        .body.endswith("actions=output:NXM_NX_REG7[]")
    )
    assert P.table("classify").flow(0).body == "table=0,priority=0 actions=drop"
    assert "pop_vlan" in P.table("classify").flow(1, actions=[PopVlan()]).body


def test_cookie_has_the_marker_and_follows_the_content() -> None:
    classify = P.table("classify")
    flow = classify.flow(100, {"in_port": 5}, [SetField("reg5", "5"), classify.goto("dhcp")])
    assert flow.cookie >> 48 == COOKIE_MARKER and is_kumonet_cookie(flow.cookie)
    same = classify.flow(100, {"in_port": 5}, [SetField("reg5", "5"), classify.goto("dhcp")])
    assert same.cookie == flow.cookie
    other_action = classify.flow(
        100, {"in_port": 5}, [SetField("reg5", "6"), classify.goto("dhcp")]
    )
    other_priority = classify.flow(
        99, {"in_port": 5}, [SetField("reg5", "5"), classify.goto("dhcp")]
    )
    assert len({flow.cookie, other_action.cookie, other_priority.cookie}) == 3
    assert other_action.key() == flow.key()  # same OpenFlow entry, different flow
    assert not is_kumonet_cookie(0x1234)
