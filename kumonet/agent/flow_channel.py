"""A persistent OpenFlow 1.4 connection to a bridge's service socket, for flow bundles.

``ovs-ofctl --bundle`` costs a process start, a connection and a version handshake
for every change (15-35 ms on this class of machine, most of an agent pass); this
channel keeps one connection per bridge and sends each change as one atomic bundle
(OPEN, the flow mods and a BARRIER; then COMMIT if the switch refused none of them,
DISCARD otherwise, as ``ovs-ofctl --bundle`` does) encoded by
`kumonet.agent.flow_mod`. The switch applies a committed bundle atomically: every
flow mod of it or none.

It speaks OpenFlow 1.4 (native bundles) where the packet-in channel speaks 1.3; the
socket path and the error type are that module's. The connection is opened on first
use and again after the switch closed it (an ovs-vswitchd restart); a reader task
answers the switch's echo requests between changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kumonet.agent.flow_mod import (
    OFP14_VERSION,
    OFPBCT_COMMIT_REQUEST,
    OFPBCT_DISCARD_REQUEST,
    bundle_control,
    bundle_messages,
    message,
)
from kumonet.agent.packet_in import (
    OFPT_ECHO_REPLY,
    OFPT_ECHO_REQUEST,
    OFPT_ERROR,
    OFPT_HELLO,
    OpenFlowProtocolError,
    read_message,
    socket_path,
)

LOG = logging.getLogger(__name__)


class BundleFailed(RuntimeError):
    """The switch refused the bundle (nothing of it applied) or the connection broke."""


@dataclass
class _Pending:
    """Messages in flight (xids ``first_xid``..``last_xid``): done when the switch
    answers ``last_xid``, with the errors it sent for any of them."""

    first_xid: int
    last_xid: int
    done: asyncio.Future[None]
    errors: list[str] = field(default_factory=list)


class FlowChannel:
    """Usage::

        channel = FlowChannel("unix:/run/openvswitch/br-int.mgmt")
        await channel.apply(delete_cookies=[0x6B6E...], add_lines=["table=0,... actions=drop"])
        await channel.close()

    `apply` raises `kumonet.agent.flow_mod.UnsupportedFlow` before sending anything
    if a line cannot be encoded, and `BundleFailed` if the switch refused the bundle
    or could not be reached.
    """

    def __init__(self, target: str | Path, *, timeout: float = 60.0) -> None:
        self._path = socket_path(target)
        self._timeout = timeout
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one bundle at a time: xids and replies stay simple
        self._xids = itertools.count(1)
        self._bundle_ids = itertools.count(1)
        self._pending: _Pending | None = None
        self.connections = 0  # how many times a connection was made (tests, logs)

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def apply(self, delete_cookies: Sequence[int], add_lines: Sequence[str]) -> None:
        """Delete the flows carrying ``delete_cookies``, then add ``add_lines``, as one
        atomic bundle; returns once the switch has committed it."""
        async with self._lock:
            bundle_id = next(self._bundle_ids) & 0xFFFFFFFF
            first = next(self._xids)
            data, barrier_xid = bundle_messages(first, bundle_id, delete_cookies, add_lines)
            self._xids = itertools.count(barrier_xid + 1)
            if self._writer is None:
                await self._connect()
            errors = await self._exchange(data, first, barrier_xid)
            xid = next(self._xids)
            if errors:
                # A refused flow mod left the bundle open without it: throw it away.
                await self._exchange(bundle_control(xid, bundle_id, OFPBCT_DISCARD_REQUEST), xid)
                raise BundleFailed(f"{self._path}: bundle refused: {'; '.join(errors)}")
            errors = await self._exchange(
                bundle_control(xid, bundle_id, OFPBCT_COMMIT_REQUEST), xid
            )
            if errors:
                raise BundleFailed(f"{self._path}: commit refused: {'; '.join(errors)}")

    async def _exchange(
        self, data: bytes, first_xid: int, last_xid: int | None = None
    ) -> list[str]:
        """Send ``data`` and wait for the switch to answer its last message; returns the
        errors the switch sent for any of its messages."""
        writer = self._writer
        if writer is None:
            raise BundleFailed(f"{self._path}: connection lost")
        last = first_xid if last_xid is None else last_xid
        pending = _Pending(first_xid, last, asyncio.get_running_loop().create_future())
        self._pending = pending
        try:
            writer.write(data)
            await writer.drain()
            await asyncio.wait_for(asyncio.shield(pending.done), self._timeout)
        except (OSError, ConnectionError) as error:
            await self._drop(f"write failed: {error}")
            raise BundleFailed(f"{self._path}: {error}") from None
        except TimeoutError:
            await self._drop("no answer")
            raise BundleFailed(f"{self._path}: no answer in {self._timeout} s") from None
        finally:
            self._pending = None
        return pending.errors

    async def close(self) -> None:
        await self._drop(None)

    async def _connect(self) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self._path), self._timeout
            )
        except (OSError, TimeoutError) as error:
            raise BundleFailed(f"cannot connect to {self._path}: {error}") from None
        try:
            writer.write(message(OFPT_HELLO, next(self._xids)))
            await writer.drain()
            version, msg_type, _, _ = await asyncio.wait_for(read_message(reader), self._timeout)
            if msg_type != OFPT_HELLO or version < OFP14_VERSION:
                raise OpenFlowProtocolError(f"HELLO version {version} type {msg_type}")
        except (OSError, asyncio.IncompleteReadError, TimeoutError, OpenFlowProtocolError) as error:
            writer.close()
            raise BundleFailed(f"{self._path}: no OpenFlow 1.4 handshake: {error}") from None
        self._writer = writer
        self.connections += 1
        self._reader_task = asyncio.create_task(self._read_loop(reader, writer))

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                _, msg_type, xid, body = await read_message(reader)
                if msg_type == OFPT_ECHO_REQUEST:
                    writer.write(message(OFPT_ECHO_REPLY, xid, body))
                else:
                    self._answer(msg_type, xid, body)
        except (OSError, asyncio.IncompleteReadError, OpenFlowProtocolError) as error:
            reason = str(error) or type(error).__name__
            if self._writer is writer:
                LOG.info("flow channel to %s closed: %s", self._path, reason)
                self._writer = None
                writer.close()
            self._fail_pending(f"connection lost: {reason}")

    def _answer(self, msg_type: int, xid: int, body: bytes) -> None:
        pending = self._pending
        if pending is None or not pending.first_xid <= xid <= pending.last_xid:
            return  # e.g. an answer to an exchange that already timed out
        if msg_type == OFPT_ERROR:
            err_type, err_code = struct.unpack_from("!HH", body, 0)
            which = "commit" if xid == pending.last_xid else f"message {xid - pending.first_xid}"
            pending.errors.append(f"{which}: error type {err_type} code {err_code}")
        if xid == pending.last_xid and not pending.done.done():
            pending.done.set_result(None)

    def _fail_pending(self, reason: str) -> None:
        pending = self._pending
        if pending is not None and not pending.done.done():
            pending.done.set_exception(BundleFailed(f"{self._path}: {reason}"))

    async def _drop(self, reason: str | None) -> None:
        writer, self._writer = self._writer, None
        task, self._reader_task = self._reader_task, None
        if reason is not None:
            LOG.warning("flow channel to %s dropped: %s", self._path, reason)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
