"""HA state changes from keepalived, delivered to a callback within milliseconds.

keepalived writes each transition to the router's notify FIFO
(``vrrp_notify_fifo``) as a line ``INSTANCE "<router id>" MASTER 50``. The
watcher holds every router's FIFO open read-write and non-blocking: keepalived
never blocks on it, restarts of keepalived never give an end-of-file, and lines
written while the agent was down wait in the pipe for the next reader. No script
is forked per transition, so the callback runs within a loop iteration of
keepalived's write. The state is also written to a file per router for operators.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kumonet.l3.plan import KeepalivedFiles


class RouterHAState(enum.Enum):
    """The router's role on this host, in the API's words (``ha_state``)."""

    ACTIVE = "active"
    STANDBY = "standby"
    FAULT = "fault"


_KEEPALIVED_STATES = {
    "MASTER": RouterHAState.ACTIVE,
    "BACKUP": RouterHAState.STANDBY,
    "FAULT": RouterHAState.FAULT,
    "STOP": RouterHAState.STANDBY,
    "DELETED": RouterHAState.STANDBY,
}


@dataclass(frozen=True, slots=True)
class HaTransition:
    router_id: str
    state: RouterHAState


def parse_notify_line(line: str) -> HaTransition | None:
    """``INSTANCE "r1" MASTER 50`` → (r1, active). Other lines (groups, priority
    notices, ``MASTER_RX_LOWER_PRI``) carry no role change and give ``None``."""
    parts = line.strip().split()
    if len(parts) < 3 or parts[0] != "INSTANCE":
        return None
    state = _KEEPALIVED_STATES.get(parts[2])
    if state is None:
        return None
    return HaTransition(router_id=parts[1].strip('"'), state=state)


HaStateCallback = Callable[[str, RouterHAState], None]


def ensure_fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        os.mkfifo(path, 0o600)
        return
    if not stat.S_ISFIFO(mode):
        path.unlink()
        os.mkfifo(path, 0o600)


def read_state_file(files: KeepalivedFiles) -> RouterHAState | None:
    try:
        return RouterHAState(files.state.read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass
class _Watched:
    fd: int
    files: KeepalivedFiles
    buffer: bytes = b""


@dataclass
class HaStateWatcher:
    """Watches the notify FIFOs of the routers ``add``-ed; calls ``callback`` with
    (router id, state) on every transition, after writing the state file."""

    callback: HaStateCallback
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    _watched: dict[str, _Watched] = field(default_factory=dict)
    states: dict[str, RouterHAState] = field(default_factory=dict)

    def add(self, router_id: str, files: KeepalivedFiles) -> None:
        """Start watching (idempotent). Call before starting keepalived, so its
        first transition is not missed."""
        if router_id in self._watched:
            return
        ensure_fifo(files.notify_fifo)
        fd = os.open(files.notify_fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._watched[router_id] = _Watched(fd=fd, files=files)
        previous = read_state_file(files)
        if previous is not None:
            self.states.setdefault(router_id, previous)
        self._loop.add_reader(fd, self._readable, router_id)

    def remove(self, router_id: str) -> None:
        watched = self._watched.pop(router_id, None)
        self.states.pop(router_id, None)
        if watched is not None:
            self._loop.remove_reader(watched.fd)
            os.close(watched.fd)

    def close(self) -> None:
        for router_id in list(self._watched):
            self.remove(router_id)

    def _readable(self, router_id: str) -> None:
        watched = self._watched.get(router_id)
        if watched is None:
            return
        chunks = []
        while True:
            try:
                chunk = os.read(watched.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        data = watched.buffer + b"".join(chunks)
        *lines, watched.buffer = data.split(b"\n")
        for raw in lines:
            transition = parse_notify_line(raw.decode(errors="replace"))
            # keepalived names the instance after the router; a line for another
            # instance cannot come through this router's FIFO, but check anyway.
            if transition is None or transition.router_id != router_id:
                continue
            self.states[router_id] = transition.state
            with contextlib.suppress(OSError):
                tmp = watched.files.state.with_name("state.tmp")
                tmp.write_text(transition.state.value + "\n")
                tmp.replace(watched.files.state)
            self.callback(router_id, transition.state)
