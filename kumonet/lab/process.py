"""Daemons of a lab: start detached, check, stop by pid file and find leftovers.

A lab's daemons all carry the lab's run directory in their command line (a
database, socket, config or pid file path), so ``down`` can find processes a
crashed ``up`` never recorded by scanning ``/proc``. A pid is trusted only if
its command line still names the run directory, so a recycled pid is never
killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from kumonet.lab.command import run, wait_until
from kumonet.lab.errors import LabError


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name may contain spaces and parentheses: the state follows the last ')'
    return stat.rsplit(")", 1)[1].split()[0]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace"
        )
    except (FileNotFoundError, ProcessLookupError):
        return ""


def is_alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as stopped)."""
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def read_pidfile(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def owned_pid(path: Path, marker: str) -> int | None:
    """The live pid in ``path`` if its command line contains ``marker``."""
    pid = read_pidfile(path)
    if pid is None or not is_alive(pid) or marker not in cmdline(pid):
        return None
    return pid


def _ancestors() -> set[int]:
    pids = {os.getpid()}
    pid = os.getpid()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        pids.add(pid)
    return pids


def find_by_marker(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker`` (never this one
    or its ancestors, which may mention the run directory in their arguments)."""
    mine = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid not in mine and marker in cmdline(pid) and is_alive(pid):
            found.append(pid)
    return sorted(found)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


async def stop_pids(pids: Iterable[int], *, grace: float = 3.0) -> None:
    """SIGTERM all, wait up to ``grace`` seconds, then SIGKILL the rest.

    Zombies count as stopped and are not reaped here: the lab's daemons are
    never our children (``--detach``, ``setsid -f``), and reaping someone
    else's child would steal its exit status from its owner."""
    pending = set(pids)
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while pending and loop.time() < deadline:
        for pid in list(pending):
            if not is_alive(pid):
                pending.discard(pid)
        if pending:
            await asyncio.sleep(0.02)
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = loop.time() + grace
    while pending and loop.time() < deadline:
        for pid in list(pending):
            if not is_alive(pid):
                pending.discard(pid)
        if pending:
            await asyncio.sleep(0.02)
    if pending:
        raise LabError(f"processes {sorted(pending)} survived SIGKILL")


async def start_detached(
    argv: Sequence[str],
    *,
    pidfile: Path,
    logfile: Path,
    env: Mapping[str, str] | None = None,
    wait: float = 5.0,
) -> int:
    """Start ``argv`` as a daemon in its own session, reparented away from us
    (``setsid -f``), with output in ``logfile``; its pid goes to ``pidfile``.

    The shell writes its own pid and then execs the command (``ip netns exec``
    execs too), so the recorded pid is the daemon's.
    """
    _remove(pidfile)
    # the pid file appears atomically, with the pid of the shell that then execs
    script = 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"'
    with logfile.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            "setsid", "-f", "sh", "-c", script, str(pidfile), *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=None if env is None else {**os.environ, **env},
        )
        await proc.wait()
    pids: list[int] = []

    def recorded() -> bool:
        pid = read_pidfile(pidfile)
        if pid is not None:
            pids.append(pid)
        return pid is not None

    await wait_until(recorded, f"{argv[0]} did not start (see {logfile})", time_limit=wait)
    pid = pids[-1]
    # `ip netns exec NS CMD` execs CMD in turn: the daemon is CMD
    program = argv[4] if list(argv[:3]) == ["ip", "netns", "exec"] and len(argv) > 4 \
        else argv[0]
    # `nsenter ... -- CMD` (kumonet.lab.agent.in_host_netns) execs CMD too
    if argv[0] == "nsenter" and "--" in argv[:-1]:
        program = argv[list(argv).index("--") + 1]

    def exec_done() -> bool:
        # until the last exec completes the pid is still the wrapper shell or
        # `ip netns exec` (or, during an exec, has an empty command line); a
        # script shows as its interpreter followed by the script
        words = cmdline(pid).split(" ")[:2]
        return not is_alive(pid) or program in words

    await wait_until(exec_done, f"{argv[0]} did not start (see {logfile})", time_limit=wait)
    return pid


async def netns_list() -> list[str]:
    result = await run(["ip", "netns", "list"])
    # lines look like "name" or "name (id: 3)"
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
