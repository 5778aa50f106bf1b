"""kumonet's flow lines as OpenFlow 1.4 FLOW_MOD messages (pure, no I/O).

The compiler renders each flow as the exact text ``ovs-ofctl add-flows`` takes
(`kumonet.dataplane.flow`). Sending them over a persistent OpenFlow connection
instead of one ``ovs-ofctl`` process per bundle saves the process start and the
switch handshake, which made up most of an agent pass. This module reads that text
back, in the small grammar the compiler writes, and encodes it:

- match fields as OXM TLVs (OpenFlow basic class, or Nicira's NXM_0/NXM_1 classes
  for registers, ``tun_id``, ``ct_state``, ``ct_mark``, ``conj_id``, ``tcp_flags``,
  ``vlan_tci``), in prerequisite order;
- actions in one APPLY_ACTIONS instruction (``output``, ``set_field`` — a masked one
  as Nicira's ``reg_load2`` since OpenFlow 1.4 cannot mask it —, ``push_vlan``,
  ``pop_vlan``, ``NORMAL``, ``controller``, Nicira ``resubmit``, ``output_reg``,
  ``clone``, ``ct`` with ``exec``, ``ct_clear``, ``conjunction``), ``goto_table``
  as its own instruction.

Anything else raises `UnsupportedFlow`: the caller then sends that change through
``ovs-ofctl`` as before, so a new action in the compiler is never mis-encoded, at
worst slower. A test installs whole compiled plans both ways on a real switch and
compares the dumps.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Iterable

from kumonet.agent.packet_in import encode_message

OFP14_VERSION = 0x05

OFPT_FLOW_MOD = 14
OFPT_BARRIER_REQUEST = 20
OFPT_BARRIER_REPLY = 21
OFPT_BUNDLE_CONTROL = 33
OFPT_BUNDLE_ADD_MESSAGE = 34
OFPFC_ADD = 0
OFPFC_DELETE = 3
OFPTT_ALL = 0xFF
OFPP_ANY = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFP_NO_BUFFER = 0xFFFFFFFF
OFPP_NORMAL = 0xFFFFFFFA
OFPP_CONTROLLER = 0xFFFFFFFD
OFPP_IN_PORT_16 = 0xFFF8  # Nicira resubmit's "the packet's own in_port"

OFPBCT_OPEN_REQUEST = 0
OFPBCT_OPEN_REPLY = 1
OFPBCT_COMMIT_REQUEST = 4
OFPBCT_COMMIT_REPLY = 5
OFPBCT_DISCARD_REQUEST = 6
OFPBF_ATOMIC = 1
OFPBF_ORDERED = 2

OFPIT_GOTO_TABLE = 1
OFPIT_APPLY_ACTIONS = 4
OFPAT_OUTPUT = 0
OFPAT_PUSH_VLAN = 17
OFPAT_POP_VLAN = 18
OFPAT_SET_FIELD = 25
OFPAT_EXPERIMENTER = 0xFFFF
NX_VENDOR_ID = 0x00002320
NXAST_RESUBMIT_TABLE = 14
NXAST_OUTPUT_REG = 15
NXAST_REG_LOAD2 = 33
NXAST_CONJUNCTION = 34
NXAST_CT = 35
NXAST_CLONE = 42
NXAST_CT_CLEAR = 43
NX_CT_F_COMMIT = 1
NX_CT_RECIRC_NONE = 0xFF

# cookie, cookie_mask, table_id, command, idle, hard, priority, buffer_id, out_port,
# out_group, flags, importance
_FLOW_MOD = struct.Struct("!QQBBHHHIIIHH")
_BUNDLE_CTRL = struct.Struct("!IHH")  # bundle_id, type, flags
_BUNDLE_ADD = struct.Struct("!IHH")  # bundle_id, pad, flags
_OFP_HEADER_SIZE = 8
#: The longest message a BUNDLE_ADD can carry: the wrapper (a header and its own
#: 8 bytes) and the message together stay within OpenFlow's 16-bit length.
MAX_BUNDLED_MESSAGE = 0xFFFF - _OFP_HEADER_SIZE - _BUNDLE_ADD.size

OXM_BASIC = 0x8000
NXM_0 = 0x0000
NXM_1 = 0x0001


class UnsupportedFlow(ValueError):
    """The line uses something this encoder does not know: use ``ovs-ofctl``."""


# name -> (OXM class, field, bytes, value kind); kinds: int, mac, ipv4, ipv6, flags
_FIELDS: dict[str, tuple[int, int, int, str]] = {
    "in_port": (OXM_BASIC, 0, 4, "int"),
    "metadata": (OXM_BASIC, 2, 8, "int"),
    "dl_dst": (OXM_BASIC, 3, 6, "mac"),
    "dl_src": (OXM_BASIC, 4, 6, "mac"),
    "dl_type": (OXM_BASIC, 5, 2, "int"),
    "vlan_vid": (OXM_BASIC, 6, 2, "int"),
    "nw_proto": (OXM_BASIC, 10, 1, "int"),
    "nw_src": (OXM_BASIC, 11, 4, "ipv4"),
    "nw_dst": (OXM_BASIC, 12, 4, "ipv4"),
    "icmp_type": (OXM_BASIC, 19, 1, "int"),
    "icmp_code": (OXM_BASIC, 20, 1, "int"),
    "arp_op": (OXM_BASIC, 21, 2, "int"),
    "arp_spa": (OXM_BASIC, 22, 4, "ipv4"),
    "arp_tpa": (OXM_BASIC, 23, 4, "ipv4"),
    "arp_sha": (OXM_BASIC, 24, 6, "mac"),
    "arp_tha": (OXM_BASIC, 25, 6, "mac"),
    "ipv6_src": (OXM_BASIC, 26, 16, "ipv6"),
    "ipv6_dst": (OXM_BASIC, 27, 16, "ipv6"),
    "icmpv6_type": (OXM_BASIC, 29, 1, "int"),
    "icmpv6_code": (OXM_BASIC, 30, 1, "int"),
    "nd_target": (OXM_BASIC, 31, 16, "ipv6"),
    "tun_id": (OXM_BASIC, 38, 8, "int"),
    "vlan_tci": (NXM_0, 4, 2, "int"),
    "tcp_flags": (NXM_1, 34, 2, "flags"),
    "conj_id": (NXM_1, 37, 4, "int"),
    "ct_state": (NXM_1, 105, 4, "flags"),
    "ct_mark": (NXM_1, 107, 4, "int"),
    **{f"reg{n}": (NXM_1, n, 4, "int") for n in range(16)},
}
# tp_src/tp_dst are TCP, UDP or SCTP ports, as nw_proto says: (src field, dst field).
_L4_PORT_FIELDS = {6: (13, 14), 17: (15, 16), 132: (17, 18)}
# The switch checks each field's prerequisites as it reads the match: a field goes
# after those it depends on (rank: how deep its prerequisites are; 0 for none).
_RANK = {
    **dict.fromkeys(("nw_proto", "nw_src", "nw_dst", "ipv6_src", "ipv6_dst"), 1),
    **dict.fromkeys(("arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha"), 1),
    **dict.fromkeys(("tp_src", "tp_dst", "tcp_flags", "icmp_type", "icmp_code"), 2),
    **dict.fromkeys(("icmpv6_type", "icmpv6_code"), 2),
    "nd_target": 3,
}
_FLAGS = {
    "ct_state": {"new": 0x01, "est": 0x02, "rel": 0x04, "rpl": 0x08,
                 "inv": 0x10, "trk": 0x20, "snat": 0x40, "dnat": 0x80},
    "tcp_flags": {"fin": 0x001, "syn": 0x002, "rst": 0x004, "psh": 0x008, "ack": 0x010,
                  "urg": 0x020, "ece": 0x040, "cwr": 0x080, "ns": 0x100},
}  # fmt: skip
_NXM_REG = re.compile(r"NXM_NX_REG(\d+)\[(?:(\d+)\.\.(\d+))?\]$")


# -- messages ----------------------------------------------------------------------


def message(msg_type: int, xid: int, body: bytes = b"") -> bytes:
    return encode_message(msg_type, xid, body, version=OFP14_VERSION)


def bundle_control(xid: int, bundle_id: int, ctrl_type: int) -> bytes:
    body = _BUNDLE_CTRL.pack(bundle_id, ctrl_type, OFPBF_ATOMIC | OFPBF_ORDERED)
    return message(OFPT_BUNDLE_CONTROL, xid, body)


def bundle_add(xid: int, bundle_id: int, inner: bytes) -> bytes:
    """Wrap ``inner`` (a whole message) into the bundle; the switch wants both to carry
    the same xid, so ``inner`` must have been built with ``xid``."""
    body = _BUNDLE_ADD.pack(bundle_id, 0, OFPBF_ATOMIC | OFPBF_ORDERED) + inner
    return message(OFPT_BUNDLE_ADD_MESSAGE, xid, body)


def delete_cookie(xid: int, cookie: int) -> bytes:
    """The FLOW_MOD deleting the flows (of every table) carrying exactly ``cookie``."""
    body = _FLOW_MOD.pack(
        cookie, 0xFFFFFFFFFFFFFFFF, OFPTT_ALL, OFPFC_DELETE, 0, 0, 0,
        OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0, 0,
    ) + _match([])  # fmt: skip
    return message(OFPT_FLOW_MOD, xid, body)


def add_flow(xid: int, line: str) -> bytes:
    """The FLOW_MOD adding the flow ``line`` (``ovs-ofctl add-flows`` text)."""
    try:
        msg = _add_flow(xid, line)
    except (ValueError, OverflowError, struct.error) as error:
        if isinstance(error, UnsupportedFlow):
            raise
        # A port name (LOCAL), a value out of range, a message beyond OpenFlow's 64 kB.
        raise UnsupportedFlow(f"{_short(line)}: {error}") from None
    if len(msg) > MAX_BUNDLED_MESSAGE:
        # It fits alone but not inside its BUNDLE_ADD wrapper.
        raise UnsupportedFlow(f"{_short(line)}: {len(msg)} bytes, too long to bundle")
    return msg


def _short(line: str) -> str:
    """``line`` for an error message: a flow near 64 kB would flood the log."""
    return repr(line) if len(line) <= 200 else f"{line[:200]!r}... ({len(line)} characters)"


def _add_flow(xid: int, line: str) -> bytes:
    head, sep, actions = line.partition(" actions=")
    if not sep:
        raise UnsupportedFlow(f"no actions: {line!r}")
    table, priority, cookie = 0, 0x8000, 0  # ovs-ofctl's defaults
    fields: list[tuple[str, str]] = []
    for token in head.split(","):
        name, eq, value = token.partition("=")
        if not eq:
            raise UnsupportedFlow(f"match token {token!r} in {line!r}")
        if name == "table":
            table = int(value, 0)
        elif name == "priority":
            priority = int(value, 0)
        elif name == "cookie":
            cookie = int(value, 0)
        else:
            fields.append((name, value))
    body = _FLOW_MOD.pack(
        cookie, 0, table, OFPFC_ADD, 0, 0, priority, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0, 0
    )
    return message(OFPT_FLOW_MOD, xid, body + _match(fields) + _instructions(actions))


# -- match -------------------------------------------------------------------------


def _match(fields: list[tuple[str, str]]) -> bytes:
    values = dict(fields)
    fields = sorted(fields, key=lambda item: _RANK.get(item[0], 0))
    tlvs = b"".join(_oxm(name, text, values) for name, text in fields)
    length = 4 + len(tlvs)
    return struct.pack("!HH", 1, length) + tlvs + bytes(-length % 8)


def _oxm(name: str, text: str, values: dict[str, str]) -> bytes:
    oxm_class, oxm_field, size, kind = _field(name, values)
    value, mask = _value(name, kind, size, text)
    if mask is None:
        return struct.pack("!I", oxm_class << 16 | oxm_field << 9 | size) + value
    header = oxm_class << 16 | oxm_field << 9 | 1 << 8 | 2 * size
    return struct.pack("!I", header) + value + mask


def _field(name: str, values: dict[str, str]) -> tuple[int, int, int, str]:
    if name in ("tp_src", "tp_dst"):
        proto = values.get("nw_proto")
        pair = _L4_PORT_FIELDS.get(int(proto, 0)) if proto is not None else None
        if pair is None:
            raise UnsupportedFlow(f"{name} without a TCP/UDP/SCTP nw_proto")
        return OXM_BASIC, pair[name == "tp_dst"], 2, "int"
    try:
        return _FIELDS[name]
    except KeyError:
        raise UnsupportedFlow(f"match field {name!r}") from None


def _value(name: str, kind: str, size: int, text: str) -> tuple[bytes, bytes | None]:
    """(value, mask or None) as the field's bytes."""
    try:
        if kind == "flags":
            value = mask = 0
            rest = text
            for sign, flag in re.findall(r"([+-])([a-z]+)", text):
                bit = _FLAGS[name][flag]
                mask |= bit
                if sign == "+":
                    value |= bit
                rest = rest.replace(f"{sign}{flag}", "", 1)
            if rest:
                raise UnsupportedFlow(f"{name}={text}")
            return value.to_bytes(size, "big"), mask.to_bytes(size, "big")
        plain, slash, masked = text.partition("/")
        if kind == "int":
            number = int(plain, 0).to_bytes(size, "big")
            return number, int(masked, 0).to_bytes(size, "big") if slash else None
        if kind == "mac":
            return _mac(plain), _mac(masked) if slash else None
        if kind in ("ipv4", "ipv6"):
            net = ipaddress.ip_network(text, strict=False)
            if net.prefixlen == net.max_prefixlen and "/" not in text:
                return net.network_address.packed, None
            return net.network_address.packed, net.netmask.packed
    except (ValueError, KeyError, OverflowError) as error:
        raise UnsupportedFlow(f"{name}={text}: {error}") from None
    raise UnsupportedFlow(f"{name}={text}")


def _mac(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC: {text}")
    return raw


# -- actions -----------------------------------------------------------------------


def _instructions(text: str) -> bytes:
    if text == "drop":
        return b""
    actions: list[bytes] = []
    goto = b""
    for action in split_actions(text):
        if action.startswith("goto_table:"):
            goto = struct.pack("!HHB3x", OFPIT_GOTO_TABLE, 8, int(action[11:], 0))
        elif goto:
            raise UnsupportedFlow(f"action after goto_table: {text!r}")
        else:
            actions.append(_action(action))
    body = b"".join(actions)
    apply = struct.pack("!HH4x", OFPIT_APPLY_ACTIONS, 8 + len(body)) + body if actions else b""
    return apply + goto


def split_actions(text: str) -> list[str]:
    """Split at the commas outside parentheses."""
    parts: list[str] = []
    depth = start = 0
    for at, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:at])
            start = at + 1
    parts.append(text[start:])
    if depth:
        raise UnsupportedFlow(f"unbalanced parentheses: {text!r}")
    return parts


def _nx(subtype: int, body: bytes) -> bytes:
    """A Nicira action: experimenter header, then ``body``, padded to 8 bytes."""
    length = 10 + len(body)
    length += -length % 8
    head = struct.pack("!HHIH", OFPAT_EXPERIMENTER, length, NX_VENDOR_ID, subtype)
    return (head + body).ljust(length, b"\0")


def _action(text: str) -> bytes:
    if text.startswith("output:"):
        port = text[7:]
        if port.startswith("NXM_"):
            src, ofs, nbits = _register(port)
            return _nx(NXAST_OUTPUT_REG, struct.pack("!HIH6x", ofs << 6 | nbits - 1, src, 0))
        return struct.pack("!HHIH6x", OFPAT_OUTPUT, 16, int(port, 0), 0)
    if text == "NORMAL":
        return struct.pack("!HHIH6x", OFPAT_OUTPUT, 16, OFPP_NORMAL, 0)
    if text == "controller(reason=action,max_len=65535)":
        return struct.pack("!HHIH6x", OFPAT_OUTPUT, 16, OFPP_CONTROLLER, 0xFFFF)
    if text.startswith("set_field:"):
        value, arrow, name = text[10:].partition("->")
        if not arrow:
            raise UnsupportedFlow(text)
        return _set_field(name, value)
    if text.startswith("push_vlan:"):
        return struct.pack("!HHH2x", OFPAT_PUSH_VLAN, 8, int(text[10:], 0))
    if text == "pop_vlan":
        return struct.pack("!HH4x", OFPAT_POP_VLAN, 8)
    if text.startswith("resubmit(,") and text.endswith(")"):
        table = int(text[10:-1], 0)
        return _nx(NXAST_RESUBMIT_TABLE, struct.pack("!HB3x", OFPP_IN_PORT_16, table))
    if text.startswith("clone(") and text.endswith(")"):
        nested = b"".join(_action(part) for part in split_actions(text[6:-1]))
        return _nx(NXAST_CLONE, bytes(6) + nested)
    if text.startswith("ct(") and text.endswith(")"):
        return _conntrack(text[3:-1])
    if text == "ct_clear":
        return _nx(NXAST_CT_CLEAR, bytes(6))
    if text.startswith("conjunction(") and text.endswith(")"):
        match = re.fullmatch(r"(\d+),(\d+)/(\d+)", text[12:-1])
        if match is None:
            raise UnsupportedFlow(text)
        conj, clause, n_clauses = (int(g) for g in match.groups())
        return _nx(NXAST_CONJUNCTION, struct.pack("!BBI", clause - 1, n_clauses, conj))
    raise UnsupportedFlow(f"action {text!r}")


def _set_field(name: str, text: str) -> bytes:
    if name == "vlan_vid":
        value, mask = int(text, 0).to_bytes(2, "big"), None
        oxm_class, oxm_field, size = OXM_BASIC, 6, 2
    else:
        oxm_class, oxm_field, size, kind = _field(name, {})
        value, mask = _value(name, kind, size, text)
    if mask is None:
        tlv = struct.pack("!I", oxm_class << 16 | oxm_field << 9 | size) + value
        length = 4 + len(tlv)
        return struct.pack("!HH", OFPAT_SET_FIELD, length + -length % 8) + tlv + bytes(-length % 8)
    # OpenFlow 1.4's set_field cannot carry a mask: Nicira's reg_load2 can.
    tlv = struct.pack("!I", oxm_class << 16 | oxm_field << 9 | 1 << 8 | 2 * size) + value + mask
    return _nx(NXAST_REG_LOAD2, tlv)


def _register(text: str) -> tuple[int, int, int]:
    """``NXM_NX_REG6[0..15]`` -> (NXM header, offset, bits)."""
    match = _NXM_REG.match(text)
    if match is None:
        raise UnsupportedFlow(f"field reference {text!r}")
    reg, low, high = match.groups()
    ofs, last = (int(low), int(high)) if low is not None else (0, 31)
    return NXM_1 << 16 | int(reg) << 9 | 4, ofs, last - ofs + 1


def _conntrack(text: str) -> bytes:
    flags, zone_src, zone_bits, table = 0, 0, 0, NX_CT_RECIRC_NONE
    nested = b""
    for part in split_actions(text):
        if part == "commit":
            flags |= NX_CT_F_COMMIT
        elif part.startswith("table="):
            table = int(part[6:], 0)
        elif part.startswith("zone="):
            zone_src, ofs, nbits = _register(part[5:])
            zone_bits = ofs << 6 | nbits - 1
        elif part.startswith("exec(") and part.endswith(")"):
            nested = b"".join(_action(inner) for inner in split_actions(part[5:-1]))
        else:
            raise UnsupportedFlow(f"ct argument {part!r}")
    if not zone_src:
        raise UnsupportedFlow("ct without a zone register")
    body = struct.pack("!HIHB3xH", flags, zone_src, zone_bits, table, 0) + nested
    return _nx(NXAST_CT, body)


def bundle_messages(
    first_xid: int, bundle_id: int, deletes: Iterable[int], adds: Iterable[str]
) -> tuple[bytes, int]:
    """The start of one atomic bundle: OPEN, the deletes of the ``deletes`` cookies,
    the adds of ``adds``, then a BARRIER (xids ``first_xid`` onwards).

    The switch answers a flow mod it refuses with an error but keeps the bundle open
    and would commit the rest: so the caller waits for the barrier's reply, then
    sends `bundle_control` COMMIT only if no error came, DISCARD otherwise (what
    ``ovs-ofctl --bundle`` does). Returns (the bytes, the barrier's xid). Raises
    `UnsupportedFlow` before anything is sent if some line cannot be encoded.
    """
    xid = first_xid
    parts = [bundle_control(xid, bundle_id, OFPBCT_OPEN_REQUEST)]
    for cookie in deletes:
        xid += 1
        parts.append(bundle_add(xid, bundle_id, delete_cookie(xid, cookie)))
    for line in adds:
        xid += 1
        inner = add_flow(xid, line)
        try:
            parts.append(bundle_add(xid, bundle_id, inner))
        except struct.error as error:  # a backstop: add_flow checks the length
            raise UnsupportedFlow(f"{_short(line)}: {error}") from None
    xid += 1
    parts.append(message(OFPT_BARRIER_REQUEST, xid))
    return b"".join(parts), xid
