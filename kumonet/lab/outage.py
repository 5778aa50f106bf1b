"""Measuring an outage from outside while a failure is injected: a ping train
every 50 ms and a long-lived TCP connection, both running in the background.

    async with Pinger(ns, "203.0.113.10") as pinger, \\
            EchoServer(vm_ns, port=5301), TcpStream(ns, "203.0.113.10", 5301) as stream:
        await lab.fail_host("host1", "agent")
        await pinger.wait_for_replies(20)          # traffic is back
    pinger.report.outage, stream.report.broken, stream.report.outage

The outage is the longest time without a reply (or an echo), less one
interval: in steady state replies come one interval apart, so a run without
a single loss measures about 0. The edges count too: from the start to the
first reply and from the last reply to the stop, so traffic that never came
back shows as an outage to the end. Times are the machine's wall clock
(``ping -D``, ``time.time()``), the same in every namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kumonet.lab.command import in_netns
from kumonet.lab.errors import LabError

DEFAULT_INTERVAL = 0.05
ECHO_PORT = 5301

_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)")
_NO_ANSWER = re.compile(r"^\[(\d+\.\d+)\] no answer yet for icmp_seq=(\d+)")
_TRANSMITTED = re.compile(r"^(\d+) packets transmitted")


@dataclass(frozen=True)
class Gap:
    """A stretch without replies: from the reply before (or the start) to the
    reply after (or the stop), wall-clock seconds."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def longest_gap(times: Sequence[float], started: float, stopped: float) -> Gap:
    """The longest stretch of ``[started, stopped]`` without an event in ``times``."""
    edges = [started, *sorted(t for t in times if started <= t <= stopped), stopped]
    best = Gap(started, started)
    for before, after in itertools.pairwise(edges):
        if after - before > best.seconds:
            best = Gap(before, after)
    return best


def clock(at: float) -> str:
    """A wall-clock time as ``HH:MM:SS.mmm`` (UTC), for reports."""
    return time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}"


def _outage(gap: Gap, interval: float) -> float:
    return max(0.0, gap.seconds - interval)


# -- ping ------------------------------------------------------------------------


@dataclass(frozen=True)
class PingReply:
    seq: int
    at: float


@dataclass(frozen=True)
class PingReport:
    address: str
    interval: float
    started: float
    stopped: float
    sent: int
    replies: tuple[PingReply, ...]
    unanswered: tuple[PingReply, ...]  # "no answer yet" when the next one left
    running: bool = False  # a snapshot of a pinger still running

    @property
    def received(self) -> int:
        return len({reply.seq for reply in self.replies})

    @property
    def lost(self) -> int:
        return max(0, self.sent - self.received)

    @property
    def gap(self) -> Gap:
        return longest_gap([reply.at for reply in self.replies], self.started, self.stopped)

    @property
    def outage(self) -> float:
        """Seconds: the longest time without a reply, less one interval."""
        return _outage(self.gap, self.interval)

    def replies_after(self, at: float) -> int:
        return sum(1 for reply in self.replies if reply.at > at)

    def describe(self) -> str:
        return (
            f"ping {self.address} every {self.interval * 1000:g} ms: {self.sent} sent,"
            f" {self.received} received, {self.lost} lost; longest gap"
            f" {self.gap.seconds * 1000:.0f} ms from {clock(self.gap.start)},"
            f" outage {self.outage * 1000:.0f} ms"
        )


class Pinger:
    """``ping`` every ``interval`` (50 ms) from a namespace, in the background,
    with every reply's arrival time (``ping -D``) and every unanswered
    request (``-O``). ``start``/``stop`` or ``async with``; ``report`` after
    the stop, ``snapshot()`` while it runs."""

    def __init__(self, netns: str, address: str, *, interval: float = DEFAULT_INTERVAL) -> None:
        self.netns = netns
        self.address = address
        self.interval = interval
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lines: list[str] = []
        self._started = 0.0
        self._report: PingReport | None = None

    async def start(self) -> Pinger:
        self._started = time.time()
        self._proc = await asyncio.create_subprocess_exec(
            *in_netns(self.netns, ["ping", "-n", "-D", "-O", "-i", f"{self.interval:g}",
                                   "-W", "1", self.address]),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while line := await self._proc.stdout.readline():
            self._lines.append(line.decode(errors="replace").rstrip("\n"))

    def _parse(self, stopped: float, running: bool) -> PingReport:
        replies, unanswered = [], []
        sent = None
        for line in list(self._lines):
            if match := _REPLY.match(line):
                replies.append(PingReply(int(match.group(2)), float(match.group(1))))
            elif match := _NO_ANSWER.match(line):
                unanswered.append(PingReply(int(match.group(2)), float(match.group(1))))
            elif match := _TRANSMITTED.match(line):
                sent = int(match.group(1))
        if sent is None:
            sent = max((r.seq for r in (*replies, *unanswered)), default=0)
        return PingReport(self.address, self.interval, self._started, stopped, sent,
                          tuple(replies), tuple(unanswered), running)

    def snapshot(self) -> PingReport:
        """What arrived so far (the last reply counts as if stopped now)."""
        return self._parse(time.time(), running=self._report is None)

    async def wait_for_replies(
        self, count: int, *, after: float | None = None, time_limit: float = 30.0
    ) -> PingReport:
        """Wait until ``count`` replies arrived after ``after`` (default: now),
        e.g. to know traffic resumed after a failure; LabError otherwise."""
        since = time.time() if after is None else after
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while (report := self.snapshot()).replies_after(since) < count:
            if loop.time() > deadline:
                raise LabError(
                    f"ping {self.address}: {report.replies_after(since)} of {count} replies"
                    f" within {time_limit:g} s"
                )
            await asyncio.sleep(self.interval)
        return report

    async def stop(self) -> PingReport:
        if self._report is not None:
            return self._report
        stopped = time.time()
        if self._proc is not None:
            if self._proc.returncode is None:
                # SIGINT: ping prints its summary (packets transmitted) and exits
                with contextlib.suppress(ProcessLookupError):
                    self._proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self._proc.wait(), 5)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._reader is not None:
            await self._reader
        self._report = self._parse(stopped, running=False)
        return self._report

    @property
    def report(self) -> PingReport:
        if self._report is None:
            raise LabError("the pinger is still running: stop it first (or use snapshot())")
        return self._report

    async def __aenter__(self) -> Pinger:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.stop()


# -- TCP -------------------------------------------------------------------------


def _echo_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "kumonet.lab.echo", *args]


async def _terminate(proc: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        proc.kill()
        await proc.wait()


class EchoServer:
    """A TCP line echo server in a namespace (a VM), for ``TcpStream``."""

    def __init__(self, netns: str, *, port: int = ECHO_PORT, address: str = "0.0.0.0") -> None:
        self.netns = netns
        self.port = port
        self.address = address
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self, time_limit: float = 10.0) -> EchoServer:
        self._proc = await asyncio.create_subprocess_exec(
            *in_netns(self.netns, _echo_argv("serve", self.address, str(self.port))),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), time_limit)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            await self.stop()
            raise LabError(f"the echo server in {self.netns} did not start")
        return self

    async def stop(self) -> None:
        if self._proc is not None:
            await _terminate(self._proc)

    async def __aenter__(self) -> EchoServer:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.stop()


@dataclass(frozen=True)
class TcpReport:
    address: str
    port: int
    interval: float
    started: float
    stopped: float
    sent: int
    echo_times: tuple[float, ...]
    error: str | None  # why the connection broke, None if it survived
    error_at: float | None
    local: str  # the client's address:port

    @property
    def echoed(self) -> int:
        return len(self.echo_times)

    @property
    def broken(self) -> bool:
        return self.error is not None

    @property
    def gap(self) -> Gap:
        # a broken connection's client stops at once: the last gap ends at the break
        return longest_gap(self.echo_times, self.started, self.stopped)

    @property
    def outage(self) -> float:
        """Seconds: the longest time without an echo, less one interval."""
        return _outage(self.gap, self.interval)

    def describe(self) -> str:
        state = f"BROKEN ({self.error})" if self.error else "survived"
        return (
            f"tcp {self.address}:{self.port} from {self.local}: {self.sent} lines,"
            f" {self.echoed} echoed, connection {state}; longest gap"
            f" {self.gap.seconds * 1000:.0f} ms from {clock(self.gap.start)},"
            f" outage {self.outage * 1000:.0f} ms"
        )


class TcpStream:
    """One TCP connection from a namespace to an ``EchoServer``, sending a line
    every ``interval`` and timing the echoes (``kumonet.lab.echo talk``).
    ``start`` returns once connected; ``broken`` tells at any time whether the
    connection died; ``stop`` returns the report."""

    def __init__(
        self, netns: str, address: str, port: int = ECHO_PORT, *,
        interval: float = DEFAULT_INTERVAL, stall_limit: float = 20.0,
    ) -> None:
        self.netns = netns
        self.address = address
        self.port = port
        self.interval = interval
        self.stall_limit = stall_limit
        self._proc: asyncio.subprocess.Process | None = None
        self._report: TcpReport | None = None

    async def start(self, time_limit: float = 15.0) -> TcpStream:
        self._proc = await asyncio.create_subprocess_exec(
            *in_netns(self.netns, _echo_argv(
                "talk", self.address, str(self.port), "--interval", f"{self.interval:g}",
                "--stall-limit", f"{self.stall_limit:g}", "--connect-limit", f"{time_limit:g}",
            )),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        try:
            line = await asyncio.wait_for(self._proc.stdout.readline(), time_limit + 5)
        except TimeoutError:
            line = b""
        if not line.startswith(b"connected "):
            await _terminate(self._proc)
            raise LabError(
                f"no TCP connection from {self.netns} to {self.address}:{self.port}:"
                f" {line.decode(errors='replace').strip() or 'timed out'}"
            )
        return self

    @property
    def broken(self) -> bool:
        """The client exits as soon as the connection breaks."""
        return self._proc is not None and self._proc.returncode is not None and (
            self._report is None or self._report.broken
        )

    async def wait_broken(self, time_limit: float) -> bool:
        """Wait up to ``time_limit`` s for the connection to break (the client
        exits then); whether it did."""
        if self._proc is None:
            raise LabError("the TCP stream was never started")
        try:
            await asyncio.wait_for(self._proc.wait(), time_limit)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> TcpReport:
        if self._report is not None:
            return self._report
        if self._proc is None:
            raise LabError("the TCP stream was never started")
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
        try:
            out, err = await asyncio.wait_for(self._proc.communicate(), 10)
        except TimeoutError:
            self._proc.kill()
            out, err = await self._proc.communicate()
        lines = out.decode(errors="replace").strip().splitlines()
        try:
            data: dict[str, Any] = json.loads(lines[-1])
        except (IndexError, ValueError):
            raise LabError(
                f"the TCP client gave no report: {err.decode(errors='replace')[-500:]}"
            ) from None
        self._report = TcpReport(
            self.address, self.port, self.interval, float(data["started"]),
            float(data["stopped"]), int(data["sent"]), tuple(data["echo_times"]),
            data["error"], data["error_at"], data["local"],
        )
        return self._report

    @property
    def report(self) -> TcpReport:
        if self._report is None:
            raise LabError("the TCP stream is still running: stop it first")
        return self._report

    async def __aenter__(self) -> TcpStream:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.stop()
