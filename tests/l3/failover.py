"""Shared by the HA test and the bench: a 50 ms ping train and a busy TCP connection
through the floating IP, started in the background and read back afterwards."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PING_INTERVAL = 0.05
# A sparse push stream (tcp_probe push/answer), for failing a router while no
# segment of the connection is in flight: a VM's segment lost in the failover
# would be retransmitted through the new master and re-create the connection's
# conntrack entry there by itself, hiding whether the state was synced.
SPARSE_PUSH = 0.5
QUIET_AFTER = 0.1  # after a line was echoed: the echo has arrived, the next line is far

_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class PingResult:
    sent: int
    answered: frozenset[int]
    reply_times: tuple[float, ...]  # arrival of each reply (ping -D), in order
    started: float  # wall clock when the first ping was sent

    @property
    def lost(self) -> int:
        return self.sent - len(self.answered)

    @property
    def outage_ms(self) -> float:
        """The longest time without a reply, less one interval (0 when none was
        missed): counts delayed replies too, not only lost ones."""
        if not self.reply_times:
            return float("inf")
        # Silence at the start or the end counts too.
        edges = (self.started, *self.reply_times, self.started + self.sent * PING_INTERVAL)
        gaps = [b - a for a, b in itertools.pairwise(edges)]
        return max(0.0, (max(gaps) - PING_INTERVAL) * 1000)

    @property
    def missing(self) -> str:
        """The unanswered sequence numbers as ranges (``12-20,31``), for diagnosis."""
        lost = sorted(set(range(1, self.sent + 1)) - self.answered)
        ranges: list[str] = []
        for seq in lost:
            if ranges and ranges[-1].split("-")[-1] == str(seq - 1):
                ranges[-1] = f"{ranges[-1].split('-')[0]}-{seq}"
            else:
                ranges.append(str(seq))
        return ",".join(ranges)

    def answered_tail(self, count: int) -> bool:
        """Whether the last ``count`` pings were all answered (traffic resumed)."""
        return all(seq in self.answered for seq in range(self.sent - count + 1, self.sent + 1))


class PingTrain:
    def __init__(self, ns: str, address: str, seconds: float) -> None:
        self.count = int(seconds / PING_INTERVAL)
        self.started = time.time()
        self._proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "ping", "-n", "-D", "-i", str(PING_INTERVAL),
             "-c", str(self.count), "-W", "1", address],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    def result(self) -> PingResult:
        out, _ = self._proc.communicate(timeout=self.count * PING_INTERVAL + 30)
        answered = frozenset(int(m.group(2)) for m in _REPLY.finditer(out))
        times = tuple(float(m.group(1)) for m in _REPLY.finditer(out))
        return PingResult(
            sent=self.count, answered=answered, reply_times=times, started=self.started
        )

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()


@dataclass(frozen=True)
class TalkResult:
    echoed: int
    max_gap_ms: float
    error: str | None


class TcpTalk:
    """One TCP connection sending a line every 50 ms for ``seconds`` (``mode``
    ``answer``: only echoing what a `TcpServer` in ``push`` mode sends)."""

    def __init__(
        self, ns: str, address: str, port: int, seconds: float, mode: str = "talk"
    ) -> None:
        self.seconds = seconds
        self._proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.l3.tcp_probe", mode,
             address, str(port), str(seconds)],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def next_line(self) -> str:
        """The next line the probe printed (``answer`` mode: ``got N``); blocks."""
        assert self._proc.stdout is not None
        return self._proc.stdout.readline().strip()

    def result(self) -> TalkResult:
        out, _ = self._proc.communicate(timeout=self.seconds + 60)
        data = json.loads(out.strip().splitlines()[-1])
        return TalkResult(int(data["echoed"]), float(data["max_gap_ms"]), data["error"])

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.communicate()


class TcpServer:
    """An echo server (``mode`` ``push``: one that speaks first, see tcp_probe)."""

    def __init__(self, ns: str, address: str, port: int, mode: str = "serve", *extra: str) -> None:
        self._proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.l3.tcp_probe", mode,
             address, str(port), *extra],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":
            self.stop()
            raise RuntimeError("TCP server did not start")

    def stop(self) -> None:
        self._proc.kill()
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
