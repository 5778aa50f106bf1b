"""One keepalived per HA router, run inside the router's namespace.

Each router has its own configuration file, pid files and notify FIFO under the
agent's state path (``KeepalivedFiles``). keepalived daemonises, so it outlives
an agent restart; a restarted agent finds it by its pid file and leaves it
alone unless the configuration changed, and then only reloads it (SIGHUP keeps
the VRRP state): restarting the master's keepalived would cause a failover.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from kumonet.l3.command import in_namespace, run
from kumonet.l3.plan import KeepalivedFiles
from kumonet.l3.process import cmdline, wait_until

KEEPALIVED = "keepalived"


class KeepalivedError(RuntimeError):
    pass


class KeepalivedAction(Enum):
    STARTED = "started"
    RELOADED = "reloaded"
    UNCHANGED = "unchanged"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


@dataclass(frozen=True, slots=True)
class KeepalivedProcess:
    """keepalived for one router: ``files`` under the state path, in ``namespace``."""

    files: KeepalivedFiles
    namespace: str

    def _owned_pid(self, pidfile: Path) -> int | None:
        # A pid file can outlive its process and the pid be reused: the process
        # must be keepalived running our configuration file.
        pid = _read_pid(pidfile)
        if pid is None or _is_zombie(pid):
            return None
        argv = cmdline(pid)
        config_arg = f"--use-file={self.files.config}"
        if not argv or Path(argv[0]).name != KEEPALIVED or config_arg not in argv:
            return None
        return pid

    @property
    def pid(self) -> int | None:
        """The parent process, if running."""
        return self._owned_pid(self.files.pid)

    @property
    def vrrp_pid(self) -> int | None:
        """The VRRP child (the one sending adverts), if running."""
        return self._owned_pid(self.files.vrrp_pid)

    @property
    def running(self) -> bool:
        return self.pid is not None

    def _argv(self) -> list[str]:
        return [
            KEEPALIVED,
            f"--use-file={self.files.config}",
            f"--pid={self.files.pid}",
            f"--vrrp_pid={self.files.vrrp_pid}",
            "--vrrp",
            "--no-syslog",
        ]

    async def ensure(self, config: str) -> KeepalivedAction:
        """Run keepalived with ``config``: start it, reload it if the text changed,
        or do nothing (the common case on an agent restart)."""
        self.files.directory.mkdir(parents=True, exist_ok=True)
        try:
            current = self.files.config.read_text()
        except FileNotFoundError:
            current = None
        pid = self.pid
        if pid is not None and current == config:
            return KeepalivedAction.UNCHANGED
        # Checked before it replaces the running configuration: a reload of a
        # rejected file would leave keepalived half-configured.
        candidate = self.files.config.with_name(self.files.config.name + ".new")
        candidate.write_text(config)
        await self._check_config(candidate)
        candidate.replace(self.files.config)
        if pid is not None:
            os.kill(pid, signal.SIGHUP)
            return KeepalivedAction.RELOADED
        # keepalived refuses to start while its pid files name a live process, and a
        # killed one can linger as a zombie: they are stale once `pid` said so.
        for path in (self.files.pid, self.files.vrrp_pid):
            path.unlink(missing_ok=True)
        await run(in_namespace(self.namespace, self._argv()))
        await self._wait_for(lambda: self.pid is not None and self.vrrp_pid is not None, "start")
        return KeepalivedAction.STARTED

    async def _check_config(self, path: Path) -> None:
        # In the namespace: keepalived checks that the interfaces named exist.
        result = await run(
            in_namespace(self.namespace, [KEEPALIVED, "--config-test", f"--use-file={path}"]),
            check=False,
        )
        if not result.ok:
            raise KeepalivedError(f"keepalived rejects {path}: {result.stderr.strip()}")

    async def stop(self, *, grace: float = 5.0) -> None:
        """Stop it cleanly: on SIGTERM the master sends a priority-0 advert, so a
        backup takes over at once instead of after the master-down interval."""
        pids = [p for p in (self.pid, self.vrrp_pid) if p is not None]
        if pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pids[0], signal.SIGTERM)
            try:
                await self._wait_for(
                    lambda: self.pid is None and self.vrrp_pid is None, "stop", time_limit=grace
                )
            except KeepalivedError:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        for path in (self.files.pid, self.files.vrrp_pid):
            path.unlink(missing_ok=True)

    async def _wait_for(
        self, done: Callable[[], bool], what: str, *, time_limit: float = 10.0
    ) -> None:
        if not await wait_until(done, time_limit=time_limit):
            raise KeepalivedError(f"keepalived for {self.namespace} did not {what}")


class KeepalivedMonitor:
    """Tells, within a loop iteration, when a watched keepalived exits (pidfd).

    keepalived respawns its own VRRP child, but nothing respawns keepalived: a
    master killed with SIGKILL leaves its addresses behind, and two hosts would
    answer for them. The L3 host re-applies the router on exit: the stale
    addresses go and a fresh keepalived starts as backup.
    """

    def __init__(self, on_exit: Callable[[str], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_exit = on_exit
        self._watched: dict[str, tuple[int, int]] = {}  # router id → (pid, pidfd)

    def watch(self, router_id: str, pid: int) -> None:
        current = self._watched.get(router_id)
        if current is not None and current[0] == pid:
            return
        self.unwatch(router_id)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._loop.call_soon(self._on_exit, router_id)
            return
        self._watched[router_id] = (pid, fd)
        self._loop.add_reader(fd, self._exited, router_id)

    def unwatch(self, router_id: str) -> None:
        watched = self._watched.pop(router_id, None)
        if watched is not None:
            self._loop.remove_reader(watched[1])
            os.close(watched[1])

    def close(self) -> None:
        for router_id in list(self._watched):
            self.unwatch(router_id)

    def _exited(self, router_id: str) -> None:
        self.unwatch(router_id)
        self._on_exit(router_id)


def read_priority_offset(files: KeepalivedFiles) -> int | None:
    """The offset keepalived is tracking (``None``: no file, or not a number)."""
    try:
        return int(files.priority_offset.read_text().strip())
    except (OSError, ValueError):
        return None


def write_priority_offset(files: KeepalivedFiles, offset: int) -> bool:
    """Set the router's VRRP priority offset (see `KeepalivedFiles.priority_offset`);
    False when it had that value already. Written by rename, so keepalived never
    reads a half-written number."""
    if read_priority_offset(files) == offset:
        return False
    files.directory.mkdir(parents=True, exist_ok=True)
    tmp = files.priority_offset.with_name(files.priority_offset.name + ".tmp")
    tmp.write_text(f"{offset}\n")
    tmp.replace(files.priority_offset)
    return True
