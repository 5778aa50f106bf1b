"""The flow-line encoder, pure: byte-compared with os-ken's OpenFlow 1.4 serializer
where os-ken has the message, refusing what it does not know. Whole compiled plans
are checked against ovs-ofctl on a real switch in ``test_flow_channel.py``."""

from __future__ import annotations

import struct

import pytest

from kumonet.agent.flow_mod import (
    MAX_BUNDLED_MESSAGE,
    OFPBCT_COMMIT_REQUEST,
    OFPBCT_OPEN_REQUEST,
    UnsupportedFlow,
    add_flow,
    bundle_control,
    bundle_messages,
    delete_cookie,
    split_actions,
)


def test_flow_mod_matches_os_ken_bytes() -> None:
    from os_ken.ofproto import ofproto_protocol
    from os_ken.ofproto import ofproto_v1_4 as ofp
    from os_ken.ofproto import ofproto_v1_4_parser as parser

    dp = ofproto_protocol.ProtocolDesc(version=ofp.OFP_VERSION)
    match = parser.OFPMatch(
        in_port=5, eth_type=0x0800, ipv4_src=("10.0.0.0", "255.255.255.0"), reg6=7
    )
    actions = [
        parser.OFPActionSetField(reg5=9),
        parser.OFPActionPushVlan(0x8100),
        parser.OFPActionSetField(vlan_vid=0x1000 | 100),
        parser.OFPActionOutput(3, 0),
        parser.OFPActionOutput(ofp.OFPP_CONTROLLER, 0xFFFF),
    ]
    theirs = parser.OFPFlowMod(
        dp, cookie=0x6B6E000000000042, table_id=10, command=ofp.OFPFC_ADD, priority=100,
        buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        match=match,
        instructions=[
            parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions),
            parser.OFPInstructionGotoTable(20),
        ],
    )  # fmt: skip
    theirs.set_xid(9)
    theirs.serialize()
    # os-ken writes the match in its own field order (reg6, in_port, eth_type,
    # ipv4_src): so does this line, so the bytes compare.
    line = (
        "table=10,priority=100,cookie=0x6b6e000000000042,reg6=7,in_port=5,dl_type=0x0800,"
        "nw_src=10.0.0.0/24 actions=set_field:9->reg5,"
        "push_vlan:0x8100,set_field:4196->vlan_vid,output:3,"
        "controller(reason=action,max_len=65535),goto_table:20"
    )
    assert add_flow(9, line) == bytes(theirs.buf)

    delete = parser.OFPFlowMod(
        dp, cookie=0x6B6E000000000042, cookie_mask=0xFFFFFFFFFFFFFFFF, table_id=ofp.OFPTT_ALL,
        command=ofp.OFPFC_DELETE, priority=0, buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=parser.OFPMatch(),
    )  # fmt: skip
    delete.set_xid(4)
    delete.serialize()
    assert delete_cookie(4, 0x6B6E000000000042) == bytes(delete.buf)


def test_bundle_control_matches_os_ken_bytes() -> None:
    from os_ken.ofproto import ofproto_protocol
    from os_ken.ofproto import ofproto_v1_4 as ofp
    from os_ken.ofproto import ofproto_v1_4_parser as parser

    dp = ofproto_protocol.ProtocolDesc(version=ofp.OFP_VERSION)
    flags = ofp.OFPBF_ATOMIC | ofp.OFPBF_ORDERED
    for ctrl, xid in ((OFPBCT_OPEN_REQUEST, 1), (OFPBCT_COMMIT_REQUEST, 5)):
        theirs = parser.OFPBundleCtrlMsg(dp, 3, ctrl, flags, [])
        theirs.set_xid(xid)
        theirs.serialize()
        assert bundle_control(xid, 3, ctrl) == bytes(theirs.buf)


def test_a_bundle_wraps_deletes_then_adds_with_shared_xids() -> None:
    data, barrier_xid = bundle_messages(
        10, 2, [0x6B6E000000000001], ["table=0,priority=1 actions=drop"]
    )
    assert barrier_xid == 13
    xids, types = [], []
    at = 0
    while at < len(data):
        _, msg_type, length, xid = struct.unpack_from("!BBHI", data, at)
        if msg_type == 34:  # BUNDLE_ADD_MESSAGE: the inner message carries the same xid
            inner_type, inner_xid = struct.unpack_from("!xBxxI", data, at + 16)
            assert (inner_type, inner_xid) == (14, xid)
            command = data[at + 16 + 8 + 17]
            types.append(("delete", "add")[command == 0])
        else:
            types.append(msg_type)
        xids.append(xid)
        at += length
    assert xids == [10, 11, 12, 13]
    assert types == [33, "delete", "add", 20]  # OPEN, flow mods, BARRIER


def test_prerequisites_go_first_whatever_the_text_order() -> None:
    ordered = add_flow(1, "table=0,priority=1,dl_type=0x0800,nw_proto=6,tp_dst=22 actions=drop")
    shuffled = add_flow(1, "table=0,priority=1,tp_dst=22,nw_proto=6,dl_type=0x0800 actions=drop")
    assert ordered == shuffled


def test_tp_ports_follow_the_protocol() -> None:
    tcp = add_flow(1, "table=0,dl_type=0x0800,nw_proto=6,tp_dst=53 actions=drop")
    udp = add_flow(1, "table=0,dl_type=0x0800,nw_proto=17,tp_dst=53 actions=drop")
    assert tcp != udp
    with pytest.raises(UnsupportedFlow):
        add_flow(1, "table=0,dl_type=0x0800,tp_dst=53 actions=drop")


@pytest.mark.parametrize(
    "line",
    [
        "table=0 actions=note:01",
        "table=0 actions=group:7",
        "table=0,priority=1,ip actions=drop",
        "table=0,nw_ttl=3 actions=drop",
        "table=0,ct_state=+trk+bogus actions=drop",
        "table=0 actions=ct(commit,zone=5)",
        "table=0 actions=learn(table=1)",
        "table=0 actions=goto_table:3,output:1",
        "table=0 drop",
        "table=0 actions=output:LOCAL",
        "table=0,priority=70000 actions=drop",
        "table=0 actions=" + ",".join(["set_field:1->reg5,resubmit(,3)"] * 3000),
    ],
)
def test_what_it_does_not_know_is_refused(line: str) -> None:
    with pytest.raises(UnsupportedFlow):
        add_flow(1, line)


def _outputs(n: int) -> str:
    return "table=0,priority=1 actions=" + ",".join(["output:1"] * n)


def _outputs(n: int) -> str:
    return "table=0,priority=1 actions=" + ",".join(["output:1"] * n)


def test_a_flow_too_long_to_bundle_is_refused_before_anything_is_sent() -> None:
    # 16 bytes an output: 4090 make a 65,504-byte FLOW_MOD, 4091 one of 65,520: within
    # OpenFlow's 16-bit length alone, not with the 16 bytes of its BUNDLE_ADD wrapper.
    assert len(add_flow(1, _outputs(4090))) == 65504 <= MAX_BUNDLED_MESSAGE
    data, _ = bundle_messages(1, 1, [], [_outputs(4090)])
    assert struct.unpack_from("!H", data, 18)[0] == 65520  # the wrapper's length
    with pytest.raises(UnsupportedFlow, match="too long to bundle"):
        add_flow(1, _outputs(4091))
    with pytest.raises(UnsupportedFlow):
        bundle_messages(1, 1, [], [_outputs(4091)])


def test_split_actions_respects_parentheses() -> None:
    text = "ct(commit,zone=NXM_NX_REG6[0..15],exec(set_field:0x1/0x1->ct_mark)),goto_table:5"
    assert split_actions(text) == [
        "ct(commit,zone=NXM_NX_REG6[0..15],exec(set_field:0x1/0x1->ct_mark))",
        "goto_table:5",
    ]


def test_every_match_field_of_the_dataplane_is_encoded() -> None:
    """A field the compiler may match on but the encoder lacks would send every change
    touching it through ovs-ofctl (correct, but slow): extend ``flow_mod._FIELDS``."""
    from kumonet.agent import flow_mod
    from kumonet.dataplane.flow import FIELDS

    missing = set(FIELDS) - set(flow_mod._FIELDS) - {"tp_src", "tp_dst"}
    assert not missing
