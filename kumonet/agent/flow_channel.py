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
answers the switch's echo requests between changes. A change is computed against
the flows the caller believes installed: after a reconnection the switch may be a
new ovs-vswitchd with no flows, so `apply` then sends nothing and raises
`SwitchReconnected`, and the caller reads the switch again.

Transaction ids wrap at 32 bits as on the wire; an error the switch sends is
reported with what it answers (the OPEN, a delete, the flow line, the barrier, the
COMMIT), including the errors a failed COMMIT sends with its flow mods' xids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable, Sequence
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


_XID_MASK = 0xFFFFFFFF  # xids are 32 bits on the wire


class BundleFailed(RuntimeError):
    """The switch refused the bundle (nothing of it applied) or the connection broke."""


class SwitchReconnected(BundleFailed):
    """The connection was made again (the switch may have restarted, without flows):
    nothing of the change was sent, since it was computed against the old switch."""


@dataclass(frozen=True)
class _Bundle:
    """What each xid of a bundle carries (``first_xid`` the OPEN, then the deletes,
    the adds and the barrier), to say which message the switch refused."""

    first_xid: int
    deletes: Sequence[int]
    adds: Sequence[str]

    def label(self, xid: int) -> str | None:
        offset = (xid - self.first_xid) & _XID_MASK
        deletes, adds = len(self.deletes), len(self.adds)
        if offset == 0:
            return "open"
        if offset <= deletes:
            return f"delete of cookie {self.deletes[offset - 1]:#x}"
        if offset <= deletes + adds:
            line = self.adds[offset - deletes - 1]
            return f"flow {line if len(line) <= 200 else line[:200] + '...'!r}"
        if offset == deletes + adds + 1:
            return "barrier"
        return None  # not of this bundle


@dataclass
class _Pending:
    """Messages in flight: done when the switch answers ``last_xid``, with the
    errors it sent for any xid ``label`` knows (None: not ours)."""

    label: Callable[[int], str | None]
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

    def __init__(self, target: str | Path, *, timeout: float = 60.0, first_xid: int = 1) -> None:
        self._path = socket_path(target)
        self._timeout = timeout
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one bundle at a time: xids and replies stay simple
        self._xid = first_xid & _XID_MASK  # the next one (tests start near the wrap)
        self._bundle_id = 0
        self._pending: _Pending | None = None
        self.connections = 0  # how many times a connection was made (tests, logs)

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def apply(self, delete_cookies: Sequence[int], add_lines: Sequence[str]) -> None:
        """Delete the flows carrying ``delete_cookies``, then add ``add_lines``, as one
        atomic bundle; returns once the switch has committed it."""
        async with self._lock:
            self._bundle_id = (self._bundle_id + 1) & _XID_MASK
            bundle_id, first = self._bundle_id, self._xid
            data, barrier_xid = bundle_messages(first, bundle_id, delete_cookies, add_lines)
            barrier_xid &= _XID_MASK
            self._xid = (barrier_xid + 1) & _XID_MASK
            bundle = _Bundle(first, delete_cookies, add_lines)
            if self._writer is None:
                await self._connect()
                if self.connections > 1:
                    raise SwitchReconnected(
                        f"{self._path}: connected again: the change is not sent"
                    )
            errors = await self._exchange(data, bundle.label, barrier_xid)
            xid = self._next_xid()
            if errors:
                # A refused flow mod left the bundle open without it: throw it away.
                await self._exchange(
                    bundle_control(xid, bundle_id, OFPBCT_DISCARD_REQUEST),
                    _only(xid, "discard"),
                    xid,
                )
                raise BundleFailed(f"{self._path}: bundle refused: {'; '.join(errors)}")

            def commit_label(answered: int) -> str | None:
                # A failed COMMIT is answered by an error with the xid of the flow mod
                # that failed, then one with the COMMIT's.
                return "commit" if answered == xid else bundle.label(answered)

            errors = await self._exchange(
                bundle_control(xid, bundle_id, OFPBCT_COMMIT_REQUEST), commit_label, xid
            )
            if errors:
                raise BundleFailed(f"{self._path}: commit refused: {'; '.join(errors)}")

    def _next_xid(self) -> int:
        xid, self._xid = self._xid, (self._xid + 1) & _XID_MASK
        return xid

    async def _exchange(
        self, data: bytes, label: Callable[[int], str | None], last_xid: int
    ) -> list[str]:
        """Send ``data`` and wait for the switch to answer ``last_xid``; returns the
        errors the switch sent for the xids ``label`` knows."""
        writer = self._writer
        if writer is None:
            raise BundleFailed(f"{self._path}: connection lost")
        pending = _Pending(label, last_xid, asyncio.get_running_loop().create_future())
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
            writer.write(message(OFPT_HELLO, self._next_xid()))
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
        if pending is None:
            return  # e.g. an answer to an exchange that already timed out
        if msg_type == OFPT_ERROR:
            which = pending.label(xid)
            if which is None:
                return
            err_type, err_code = struct.unpack_from("!HH", body, 0)
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


def _only(xid: int, what: str) -> Callable[[int], str | None]:
    return lambda answered: what if answered == xid else None
