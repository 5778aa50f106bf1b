"""The packet-in channel: a minimal asyncio OpenFlow 1.3 client on a bridge's service socket.

OVS accepts OpenFlow clients on ``unix:RUNDIR/<bridge>.mgmt`` without any controller
configured on the bridge. Such a client receives PACKET_INs only after it sends
SET_CONFIG with a non-zero ``miss_send_len``, must answer ECHO_REQUEST (OVS drops a
silent client after two idle minutes), and gets its own copy of every packet-in: run
exactly one channel per host.

The four message types are encoded by hand with ``struct`` rather than with os-ken's
parser: they are a few dozen bytes of fixed layout, and doing it here keeps
eventlet-era os-ken out of the agent's import graph, keeps the code typed, and
costs microseconds per message instead of os-ken's class machinery.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

LOG = logging.getLogger(__name__)

OFP_VERSION = 0x04  # OpenFlow 1.3

OFPT_HELLO = 0
OFPT_ERROR = 1
OFPT_ECHO_REQUEST = 2
OFPT_ECHO_REPLY = 3
OFPT_SET_CONFIG = 9
OFPT_PACKET_IN = 10
OFPT_PACKET_OUT = 13
OFPT_BARRIER_REQUEST = 20
OFPT_BARRIER_REPLY = 21

OFPP_CONTROLLER = 0xFFFFFFFD
OFPP_IN_PORT = 0xFFFFFFF8
OFP_NO_BUFFER = 0xFFFFFFFF
OFPC_FRAG_NORMAL = 0
MISS_SEND_LEN_FULL = 0xFFFF  # OFPCML_NO_BUFFER: whole packets, never buffered in the switch
OFPAT_OUTPUT = 0

_HEADER = struct.Struct("!BBHI")
_PACKET_IN = struct.Struct("!IHBBQ")  # buffer_id, total_len, reason, table_id, cookie
_MATCH_HEADER = struct.Struct("!HH")  # type (OFPMT_OXM = 1), length without padding
_PACKET_OUT = struct.Struct("!IIH6x")  # buffer_id, in_port, actions_len
_ACTION_OUTPUT = struct.Struct("!HHIH6x")  # type, len, port, max_len

_OXM_BASIC = 0x8000
_NXM_1 = 0x0001
_OXM_EXPERIMENTER = 0xFFFF
_BASIC_FIELDS = {0: "in_port", 1: "in_phy_port", 2: "metadata", 38: "tunnel_id"}


class PacketInReason(enum.IntEnum):
    NO_MATCH = 0
    ACTION = 1  # an ``actions=controller`` flow
    INVALID_TTL = 2


@dataclass(frozen=True, slots=True)
class PacketIn:
    """One packet sent to the controller, with the pipeline metadata OVS attaches.

    ``match`` holds the OXM fields of the packet-in: ``in_port``, ``metadata``,
    ``tunnel_id`` and registers ``reg0``…``reg15`` when non-zero, so a flow can hand
    the agent a network or port id in a register.
    """

    in_port: int
    table_id: int
    cookie: int
    reason: PacketInReason | int
    data: bytes
    total_len: int
    buffer_id: int = OFP_NO_BUFFER
    match: Mapping[str, int] = field(default_factory=dict)

    def register(self, index: int) -> int:
        return self.match.get(f"reg{index}", 0)


PacketInHandler = Callable[[PacketIn], Awaitable[None]]


class OpenFlowProtocolError(RuntimeError):
    """The switch sent something this client cannot work with."""


class PacketChannelDown(ConnectionError):
    """No switch connection at the moment (it restarted; the channel is reconnecting)."""


# -- encoding (pure) -------------------------------------------------------------


def encode_message(
    msg_type: int, xid: int, body: bytes = b"", *, version: int = OFP_VERSION
) -> bytes:
    """One OpenFlow message (header + ``body``); 1.3 unless ``version`` says otherwise
    (the flow channel speaks 1.4)."""
    return _HEADER.pack(version, msg_type, _HEADER.size + len(body), xid & 0xFFFFFFFF) + body


async def read_message(reader: asyncio.StreamReader) -> tuple[int, int, int, bytes]:
    """The next OpenFlow message from the switch: (version, type, xid, body)."""
    header = await reader.readexactly(_HEADER.size)
    version, msg_type, length, xid = _HEADER.unpack(header)
    if length < _HEADER.size:
        raise OpenFlowProtocolError(f"message length {length}")
    return version, msg_type, xid, await reader.readexactly(length - _HEADER.size)


def encode_set_config(xid: int, miss_send_len: int = MISS_SEND_LEN_FULL) -> bytes:
    return encode_message(OFPT_SET_CONFIG, xid, struct.pack("!HH", OFPC_FRAG_NORMAL, miss_send_len))


def encode_packet_out(xid: int, port: int, data: bytes, *, in_port: int = OFPP_CONTROLLER) -> bytes:
    """A PACKET_OUT sending ``data`` out of ``port`` (``OFPP_IN_PORT`` to go back
    where ``in_port`` says it came from)."""
    action = _ACTION_OUTPUT.pack(OFPAT_OUTPUT, _ACTION_OUTPUT.size, port, 0)
    body = _PACKET_OUT.pack(OFP_NO_BUFFER, in_port, len(action)) + action + data
    return encode_message(OFPT_PACKET_OUT, xid, body)


def decode_oxm_fields(fields: bytes) -> dict[str, int]:
    match: dict[str, int] = {}
    offset = 0
    while offset + 4 <= len(fields):
        (header,) = struct.unpack_from("!I", fields, offset)
        oxm_class, oxm_field, has_mask, length = (
            header >> 16,
            (header >> 9) & 0x7F,
            (header >> 8) & 1,
            header & 0xFF,
        )
        payload = fields[offset + 4 : offset + 4 + length]
        offset += 4 + length
        if oxm_class == _OXM_EXPERIMENTER:
            experimenter, payload = int.from_bytes(payload[:4], "big"), payload[4:]
            name = f"experimenter_{experimenter:#x}_{oxm_field}"
        elif oxm_class == _OXM_BASIC:
            name = _BASIC_FIELDS.get(oxm_field, f"oxm_{oxm_field}")
        elif oxm_class == _NXM_1 and oxm_field < 16:
            name = f"reg{oxm_field}"
        else:
            name = f"oxm_{oxm_class:#06x}_{oxm_field}"
        if has_mask:
            payload = payload[: len(payload) // 2]  # value only; the mask is not needed here
        match[name] = int.from_bytes(payload, "big")
    return match


def decode_packet_in(body: bytes) -> PacketIn:
    """Decode a PACKET_IN body (the bytes after the 8-byte OpenFlow header)."""
    try:
        buffer_id, total_len, reason, table_id, cookie = _PACKET_IN.unpack_from(body, 0)
        at = _PACKET_IN.size
        match_type, match_len = _MATCH_HEADER.unpack_from(body, at)
        if match_type != 1:
            raise OpenFlowProtocolError(f"PACKET_IN match type {match_type}, expected OXM")
        match = decode_oxm_fields(body[at + _MATCH_HEADER.size : at + match_len])
    except struct.error as error:
        raise OpenFlowProtocolError(f"truncated PACKET_IN ({len(body)} bytes): {error}") from None
    padded = (match_len + 7) // 8 * 8
    data = body[at + padded + 2 :]  # 2 bytes of padding follow the match
    try:
        why: PacketInReason | int = PacketInReason(reason)
    except ValueError:
        why = reason
    return PacketIn(
        in_port=match.get("in_port", 0),
        table_id=table_id,
        cookie=cookie,
        reason=why,
        data=data,
        total_len=total_len,
        buffer_id=buffer_id,
        match=match,
    )


# -- the channel -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: ``initial`` doubled after each failure, capped at ``maximum``."""

    initial: float = 0.05
    maximum: float = 2.0


def socket_path(target: str | Path) -> str:
    """``unix:/run/x/br-int.mgmt`` or a plain path -> the path."""
    text = str(target)
    return text.removeprefix("unix:")


class PacketInChannel:
    """Keeps one OpenFlow 1.3 connection to a bridge's service socket, reconnecting with
    backoff, and feeds every PACKET_IN to ``handler``.

    The handler is awaited in arrival order before the next message is read, so a
    slow handler slows the channel rather than reordering packets; handlers that do
    real work should hand it to their own task. A handler's exception is logged and
    the channel carries on.

    Usage::

        channel = PacketInChannel("unix:/run/openvswitch/br-int.mgmt", on_packet_in)
        async with channel:            # starts the connection task
            await channel.wait_ready()
            await channel.send_packet_out(port=5, data=frame)
    """

    def __init__(
        self, target: str | Path, handler: PacketInHandler, *, backoff: Backoff | None = None
    ) -> None:
        self._path = socket_path(target)
        self._handler = handler
        self._backoff = backoff or Backoff()
        self._writer: asyncio.StreamWriter | None = None
        self._ready = asyncio.Event()
        self._generation = 0  # connections that completed the handshake so far
        self._changed = asyncio.Condition()
        self._xid = 0
        self._barrier_xid: int | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Connected, and the switch has acknowledged SET_CONFIG."""
        return self._ready.is_set()

    @property
    def generation(self) -> int:
        """How many connections have become ready (1 after the first, 2 after a reconnect)."""
        return self._generation

    async def __aenter__(self) -> PacketInChannel:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"packet-in {self._path}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise

    async def wait_ready(self, generation: int = 1) -> None:
        """Wait until the ``generation``-th connection is ready (and still is)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.ready and self._generation >= generation)

    async def send_packet_out(
        self, port: int, data: bytes, *, in_port: int = OFPP_CONTROLLER
    ) -> None:
        """Send ``data`` out of OpenFlow port ``port``; raises ``PacketChannelDown``
        while there is no connection."""
        writer = self._writer
        if writer is None or not self.ready:
            raise PacketChannelDown(f"no OpenFlow connection to {self._path}")
        writer.write(encode_packet_out(self._next_xid(), port, data, in_port=in_port))
        await writer.drain()

    async def run(self) -> None:
        """Connect, serve, and reconnect forever (until cancelled)."""
        delay = self._backoff.initial
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(self._path)
            except OSError as error:
                LOG.debug("packet-in: cannot connect to %s: %s", self._path, error)
            else:
                generation = self._generation
                try:
                    await self._serve(reader, writer)
                except (OSError, asyncio.IncompleteReadError, OpenFlowProtocolError) as error:
                    LOG.warning("packet-in: connection to %s lost: %s", self._path, error)
                finally:
                    await self._disconnected(writer)
                if self._generation > generation:
                    # This connection worked: the switch restarted, so retry promptly.
                    delay = self._backoff.initial
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff.maximum)

    async def _disconnected(self, writer: asyncio.StreamWriter) -> None:
        self._writer = None
        self._ready.clear()
        writer.close()
        # The peer may already be gone; there is nothing left to flush then.
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    def _next_xid(self) -> int:
        self._xid = (self._xid + 1) & 0xFFFFFFFF
        return self._xid

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # HELLO (we speak 1.3; OVS answers with its highest version and both settle on
        # the lower), then SET_CONFIG to be sent packet-ins, then a barrier whose reply
        # tells us the switch has applied SET_CONFIG: from then on we are ready.
        hello_xid, config_xid, barrier_xid = (self._next_xid() for _ in range(3))
        self._barrier_xid = barrier_xid
        writer.write(
            encode_message(OFPT_HELLO, hello_xid)
            + encode_set_config(config_xid)
            + encode_message(OFPT_BARRIER_REQUEST, barrier_xid)
        )
        await writer.drain()
        self._writer = writer
        hello_seen = False
        while True:
            version, msg_type, xid, body = await read_message(reader)
            if msg_type == OFPT_HELLO:
                if version < OFP_VERSION:
                    raise OpenFlowProtocolError(f"switch speaks OpenFlow version {version}")
                hello_seen = True
                continue
            if not hello_seen:
                raise OpenFlowProtocolError(f"message type {msg_type} before HELLO")
            if version != OFP_VERSION:
                raise OpenFlowProtocolError(f"version {version} after negotiating 1.3")
            if msg_type == OFPT_ECHO_REQUEST:
                writer.write(encode_message(OFPT_ECHO_REPLY, xid, body))
                await writer.drain()
            elif msg_type == OFPT_BARRIER_REPLY and xid == self._barrier_xid:
                self._generation += 1
                self._ready.set()
                async with self._changed:
                    self._changed.notify_all()
            elif msg_type == OFPT_PACKET_IN:
                try:
                    packet_in = decode_packet_in(body)
                except OpenFlowProtocolError as error:
                    LOG.error("packet-in: undecodable PACKET_IN skipped: %s", error)
                    continue
                await self._deliver(packet_in)
            elif msg_type == OFPT_ERROR:
                err_type, err_code = struct.unpack_from("!HH", body, 0)
                LOG.error(
                    "packet-in: switch error type=%d code=%d (xid %d)", err_type, err_code, xid
                )
            # PORT_STATUS and the rest are not this channel's business (OVSDB events
            # tell the agent about ports).

    async def _deliver(self, packet_in: PacketIn) -> None:
        try:
            await self._handler(packet_in)
        except Exception:
            LOG.exception("packet-in handler failed on %s", packet_in)
