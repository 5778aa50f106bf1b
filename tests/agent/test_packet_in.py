from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kumonet.agent.openflow import COOKIE_MARKER_VALUE, OpenFlowBridge
from kumonet.agent.packet_in import (
    OFP_NO_BUFFER,
    OFPT_PACKET_IN,
    Backoff,
    OpenFlowProtocolError,
    PacketChannelDown,
    PacketIn,
    PacketInChannel,
    PacketInReason,
    decode_packet_in,
    encode_message,
    encode_packet_out,
    encode_set_config,
    socket_path,
)

from .conftest import OvsSandbox

VM_MAC = "02:00:00:6b:00:05"
VM_OFPORT = 5
DHCP_COOKIE = COOKIE_MARKER_VALUE | 0xD1C0


def _dhcp_discover_like_frame(src_mac: str) -> bytes:
    """Ethernet/IPv4/UDP 68->67 broadcast; the payload only has to be recognisable."""
    payload = b"kumonet-packet-in-test".ljust(64, b"\0")
    udp_len = 8 + len(payload)
    udp = udp_len.to_bytes(2, "big")
    udp = (68).to_bytes(2, "big") + (67).to_bytes(2, "big") + udp + b"\0\0" + payload
    total = 20 + len(udp)
    ip = bytes.fromhex("4500") + total.to_bytes(2, "big") + bytes.fromhex("00004000 4011 0000")
    ip += bytes(4) + bytes([255, 255, 255, 255])
    checksum = _ip_checksum(ip)
    ip = ip[:10] + checksum.to_bytes(2, "big") + ip[12:]
    eth = bytes.fromhex("ffffffffffff") + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
    return eth + ip + udp


def _ip_checksum(header: bytes) -> int:
    total = sum(int.from_bytes(header[i : i + 2], "big") for i in range(0, len(header), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# -- pure: cross-checked against os-ken's OpenFlow 1.3 parser -----------------------


def test_packet_out_and_set_config_match_os_ken_bytes() -> None:
    from os_ken.ofproto import ofproto_protocol
    from os_ken.ofproto import ofproto_v1_3 as ofp
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    dp = ofproto_protocol.ProtocolDesc(version=ofp.OFP_VERSION)
    frame = _dhcp_discover_like_frame(VM_MAC)
    theirs = parser.OFPPacketOut(
        dp, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
        actions=[parser.OFPActionOutput(5, 0)], data=frame,
    )  # fmt: skip
    theirs.set_xid(77)
    theirs.serialize()
    assert encode_packet_out(77, 5, frame) == bytes(theirs.buf)

    config = parser.OFPSetConfig(dp, ofp.OFPC_FRAG_NORMAL, 0xFFFF)
    config.set_xid(3)
    config.serialize()
    assert encode_set_config(3) == bytes(config.buf)


def test_packet_in_from_os_ken_decodes() -> None:
    from os_ken.ofproto import ofproto_protocol
    from os_ken.ofproto import ofproto_v1_3 as ofp
    from os_ken.ofproto import ofproto_v1_3_parser as parser

    dp = ofproto_protocol.ProtocolDesc(version=ofp.OFP_VERSION)
    frame = _dhcp_discover_like_frame(VM_MAC)
    match = parser.OFPMatch(in_port=7, metadata=0x1234, reg6=42, tunnel_id=99)
    msg = parser.OFPPacketIn(
        dp, buffer_id=ofp.OFP_NO_BUFFER, total_len=len(frame), reason=ofp.OFPR_ACTION,
        table_id=20, cookie=DHCP_COOKIE, match=match, data=frame,
    )  # fmt: skip
    # os-ken only parses PACKET_IN; build the wire form the way the switch lays it out.
    buf = bytearray()
    match_len = match.serialize(buf, 0)
    body = (
        ofp.OFP_NO_BUFFER.to_bytes(4, "big") + len(frame).to_bytes(2, "big")
        + bytes([ofp.OFPR_ACTION, 20]) + DHCP_COOKIE.to_bytes(8, "big")
        + bytes(buf) + b"\0\0" + frame
    )  # fmt: skip
    assert match_len % 8 == 0 and msg.data == frame
    packet_in = decode_packet_in(body)
    assert packet_in.in_port == 7
    assert packet_in.table_id == 20 and packet_in.cookie == DHCP_COOKIE
    assert packet_in.reason is PacketInReason.ACTION
    assert packet_in.register(6) == 42 and packet_in.register(7) == 0
    assert packet_in.match["metadata"] == 0x1234 and packet_in.match["tunnel_id"] == 99
    assert packet_in.data == frame
    assert encode_message(OFPT_PACKET_IN, 1, body)[1] == OFPT_PACKET_IN


def test_truncated_packet_in_is_a_protocol_error() -> None:
    with pytest.raises(OpenFlowProtocolError, match="truncated"):
        decode_packet_in(bytes(10))


def test_socket_path_accepts_both_forms() -> None:
    assert socket_path("unix:/run/x/br-int.mgmt") == "/run/x/br-int.mgmt"
    assert socket_path("/run/x/br-int.mgmt") == "/run/x/br-int.mgmt"


# -- real OVS: a VM namespace on a veth, DHCP-like traffic to the controller --------


@dataclass(frozen=True)
class Vm:
    netns: str
    ofport: int

    def run_python(self, code: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.netns, sys.executable, "-c", code],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def send(self, frame: bytes) -> None:
        code = (
            "import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); "
            f"s.bind(('eth0', 0)); s.send(bytes.fromhex('{frame.hex()}'))"
        )
        proc = self.run_python(code)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err

    def capture(self, ethertype: int) -> subprocess.Popen[str]:
        """A raw-socket listener printing the first frame of ``ethertype`` it sees; it
        prints ``ready`` once bound, so the caller sends only after that."""
        code = (
            "import socket, sys\n"
            f"s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons({ethertype}))\n"
            "s.bind(('eth0', 0)); s.settimeout(20); print('ready', flush=True)\n"
            "print(s.recv(65535).hex(), flush=True)\n"
        )
        proc = self.run_python(code)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return proc


@pytest.fixture
def vm(ovs: OvsSandbox) -> Iterator[Vm]:
    """A namespace with eth0, whose peer is port VM_OFPORT on bridge <prefix>int."""
    bridge, netns, tap = ovs.name("int"), ovs.name("vm"), ovs.name("tap")
    ovs.vsctl("--may-exist", "add-br", bridge, "--", "set", "bridge", bridge,
              "datapath_type=netdev", "fail_mode=secure")  # fmt: skip
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(
            ["ip", "link", "add", tap, "netns", ovs.netns, "type", "veth",
             "peer", "name", "eth0", "netns", netns],
            check=True,
        )  # fmt: skip
        for ns, dev in ((netns, "eth0"), (ovs.netns, tap)):
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
            # checksum offload off: the userspace datapath forwards partial checksums
            subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"],
                           check=True, capture_output=True)  # fmt: skip
        subprocess.run(["ip", "-n", netns, "link", "set", "eth0", "address", VM_MAC], check=True)
        ovs.vsctl("add-port", bridge, tap, "--", "set", "interface", tap,
                  f"ofport_request={VM_OFPORT}", "external_ids:iface-id=vm-port")  # fmt: skip
        yield Vm(netns=netns, ofport=int(ovs.vsctl("get", "interface", tap, "ofport")))
    finally:
        subprocess.run(["ip", "netns", "delete", netns], check=False, capture_output=True)
        subprocess.run(["ip", "-n", ovs.netns, "link", "del", tap], check=False,
                       capture_output=True)  # fmt: skip


@pytest.fixture
async def dhcp_flows(ovs: OvsSandbox, vm: Vm) -> OpenFlowBridge:
    bridge = OpenFlowBridge(target=ovs.mgmt(ovs.name("int")))
    await bridge.reconcile({DHCP_COOKIE: _dhcp_flow_line(vm)})
    return bridge


class Received:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[PacketIn] = asyncio.Queue()

    async def __call__(self, packet_in: PacketIn) -> None:
        await self.queue.put(packet_in)

    async def next(self) -> PacketIn:
        return await asyncio.wait_for(self.queue.get(), 20)


@pytest.fixture
async def channel(ovs: OvsSandbox) -> AsyncIterator[tuple[PacketInChannel, Received]]:
    received = Received()
    async with PacketInChannel(ovs.mgmt(ovs.name("int")), received) as chan:
        yield chan, received


async def test_packet_in_arrives_with_in_port_cookie_and_registers(
    vm: Vm, dhcp_flows: OpenFlowBridge, channel: tuple[PacketInChannel, Received]
) -> None:
    chan, received = channel
    await asyncio.wait_for(chan.wait_ready(), 20)
    frame = _dhcp_discover_like_frame(VM_MAC)
    await asyncio.to_thread(vm.send, frame)
    packet_in = await received.next()
    assert packet_in.in_port == vm.ofport == VM_OFPORT
    assert packet_in.cookie == DHCP_COOKIE
    assert packet_in.table_id == 0
    assert packet_in.reason is PacketInReason.ACTION
    assert packet_in.register(6) == 0x2A
    assert packet_in.data == frame


async def test_packet_out_reaches_the_vm(
    vm: Vm, dhcp_flows: OpenFlowBridge, channel: tuple[PacketInChannel, Received]
) -> None:
    chan, _ = channel
    await asyncio.wait_for(chan.wait_ready(), 20)
    reply = (
        bytes.fromhex(VM_MAC.replace(":", "")) + bytes.fromhex("02000000fe01") + b"\x88\xb5"
        + b"kumonet-packet-out".ljust(46, b"\0")
    )  # fmt: skip
    listener = await asyncio.to_thread(vm.capture, 0x88B5)
    await chan.send_packet_out(vm.ofport, reply)
    out, err = await asyncio.to_thread(listener.communicate, timeout=30)
    assert listener.returncode == 0, err
    assert bytes.fromhex(out.strip()) == reply


async def test_channel_reconnects_after_vswitchd_restart(
    ovs: OvsSandbox, vm: Vm, dhcp_flows: OpenFlowBridge, channel: tuple[PacketInChannel, Received]
) -> None:
    chan, received = channel
    await asyncio.wait_for(chan.wait_ready(), 20)
    assert chan.generation == 1
    await asyncio.to_thread(ovs.stop_vswitchd)
    await asyncio.wait_for(_until_not_ready(chan), 20)
    with pytest.raises(PacketChannelDown):
        await chan.send_packet_out(vm.ofport, b"\0" * 60)
    await asyncio.to_thread(ovs.start_vswitchd)
    await asyncio.wait_for(chan.wait_ready(generation=2), 30)
    # vswitchd keeps flows in memory only: the agent re-pushes them after a restart
    await dhcp_flows.reconcile({DHCP_COOKIE: _dhcp_flow_line(vm)})
    frame = _dhcp_discover_like_frame(VM_MAC)
    await asyncio.to_thread(vm.send, frame)
    packet_in = await received.next()
    assert packet_in.in_port == vm.ofport and packet_in.data == frame


def _dhcp_flow_line(vm: Vm) -> str:
    return (
        f"table=0,priority=100,cookie={DHCP_COOKIE:#x},in_port={vm.ofport},udp,"
        "tp_src=68,tp_dst=67 actions=set_field:0x2a->reg6,controller"
    )


async def _until_not_ready(chan: PacketInChannel) -> None:
    # Polling a test-only condition; the channel has no "went down" event to offer.
    while chan.ready:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


# -- protocol corners a real OVS will not show on demand: a scripted switch ---------


class ScriptedSwitch:
    """A unix-socket peer that plays the switch's side of the handshake, then whatever
    the test sends; it records every message the channel sends."""

    def __init__(self, path: str, hello_version: int = 0x06) -> None:
        self.path = path
        self.hello_version = hello_version
        self.received: asyncio.Queue[tuple[int, int, bytes]] = asyncio.Queue()
        self.connections = 0
        self._writer: asyncio.StreamWriter | None = None
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedSwitch:
        self._server = await asyncio.start_unix_server(self._serve, self.path)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        if self._writer is not None:
            self._writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writer = writer
        writer.write(bytes([self.hello_version, 0]) + (8).to_bytes(2, "big") + bytes(4))
        try:
            while True:
                header = await reader.readexactly(8)
                length = int.from_bytes(header[2:4], "big")
                body = await reader.readexactly(length - 8)
                xid = int.from_bytes(header[4:8], "big")
                await self.received.put((header[1], xid, body))
                if header[1] == 20:  # BARRIER_REQUEST -> BARRIER_REPLY
                    writer.write(encode_message(21, xid))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the channel hung up, which is what some tests want
        finally:
            writer.close()

    def send(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)

    async def next_of_type(self, msg_type: int) -> tuple[int, bytes]:
        while True:
            got_type, xid, body = await asyncio.wait_for(self.received.get(), 10)
            if got_type == msg_type:
                return xid, body


def _packet_in_body(in_port: int, data: bytes) -> bytes:
    oxm = (0x80000004).to_bytes(4, "big") + in_port.to_bytes(4, "big")
    match = (1).to_bytes(2, "big") + (4 + len(oxm)).to_bytes(2, "big") + oxm
    match += bytes(-len(match) % 8)
    return (
        OFP_NO_BUFFER.to_bytes(4, "big") + len(data).to_bytes(2, "big") + bytes([1, 0])
        + DHCP_COOKIE.to_bytes(8, "big") + match + b"\0\0" + data
    )  # fmt: skip


async def test_echo_is_answered_and_a_failing_handler_does_not_stop_the_channel() -> None:
    path = str(Path(tempfile.mkdtemp(prefix="kn6s-", dir="/tmp")) / "sw.mgmt")
    seen: list[int] = []

    async def handler(packet_in: PacketIn) -> None:
        seen.append(packet_in.in_port)
        if packet_in.in_port == 1:
            raise RuntimeError("handler bug")

    async with ScriptedSwitch(path) as switch, PacketInChannel(path, handler) as chan:
        await asyncio.wait_for(chan.wait_ready(), 10)
        _, body = await switch.next_of_type(9)  # SET_CONFIG
        assert body == bytes.fromhex("0000ffff")
        switch.send(encode_message(2, 0xABCD, b"probe"))  # ECHO_REQUEST
        assert await switch.next_of_type(3) == (0xABCD, b"probe")  # ECHO_REPLY
        switch.send(encode_message(OFPT_PACKET_IN, 6, b"\0" * 10))  # malformed: skipped
        switch.send(encode_message(OFPT_PACKET_IN, 7, _packet_in_body(1, b"first")))
        switch.send(encode_message(OFPT_PACKET_IN, 8, _packet_in_body(2, b"second")))
        switch.send(encode_message(2, 0xABCE, b""))  # a marker: both packet-ins handled
        assert await switch.next_of_type(3) == (0xABCE, b"")
        assert seen == [1, 2]
        assert chan.ready and switch.connections == 1
    shutil.rmtree(Path(path).parent)


async def test_a_switch_below_openflow_13_is_refused_and_retried() -> None:
    path = str(Path(tempfile.mkdtemp(prefix="kn6s-", dir="/tmp")) / "sw.mgmt")

    async def handler(packet_in: PacketIn) -> None:
        raise AssertionError("no packet-in expected")

    async with ScriptedSwitch(path, hello_version=0x01) as switch:
        chan = PacketInChannel(path, handler, backoff=Backoff(initial=0.01, maximum=0.02))
        async with chan:
            while switch.connections < 2:  # noqa: ASYNC110 - test-only polling
                await asyncio.sleep(0.01)
            assert not chan.ready and chan.generation == 0
    shutil.rmtree(Path(path).parent)
