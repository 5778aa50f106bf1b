"""Daemon bookkeeping: detached start, ownership by command line, stopping."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kumonet.lab.command import wait_until
from kumonet.lab.errors import LabError
from kumonet.lab.process import (
    cmdline,
    find_by_marker,
    is_alive,
    owned_pid,
    read_pidfile,
    start_detached,
    stop_pids,
)


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


async def test_detached_daemon_is_recorded_owned_and_stopped(tmp_path: Path) -> None:
    marker = f"{tmp_path}/"
    pid = await start_detached(
        [sys.executable, "-c", "import time; time.sleep(300)", f"{tmp_path}/arg"],
        pidfile=tmp_path / "d.pid",
        logfile=tmp_path / "d.log",
    )
    assert read_pidfile(tmp_path / "d.pid") == pid
    # the recorded pid is the daemon itself (the shell exec'd it), not our child
    assert cmdline(pid).startswith(f"{sys.executable} -c import time")
    assert parent_of(pid) != os.getpid()
    assert owned_pid(tmp_path / "d.pid", marker) == pid
    assert owned_pid(tmp_path / "d.pid", "/somewhere/else/") is None
    assert find_by_marker(marker) == [pid]
    await stop_pids([pid])
    assert not is_alive(pid)
    assert owned_pid(tmp_path / "d.pid", marker) is None


async def test_a_process_ignoring_sigterm_is_killed() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('up', flush=True); time.sleep(300)",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    await proc.stdout.readline()  # the trap is set
    await stop_pids([proc.pid], grace=0.3)
    assert await proc.wait() == -9


def test_recycled_pid_in_a_pidfile_is_not_ours(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "300"])
    try:
        (tmp_path / "x.pid").write_text(f"{other.pid}\n")
        assert owned_pid(tmp_path / "x.pid", f"{tmp_path}/") is None
    finally:
        other.kill()
        other.wait()


def test_find_by_marker_never_returns_this_process() -> None:
    assert os.getpid() not in find_by_marker("pytest")


@pytest.mark.parametrize("content", ["", "abc", "12 13"])
def test_garbage_pidfiles_read_as_none(tmp_path: Path, content: str) -> None:
    (tmp_path / "g.pid").write_text(content)
    assert read_pidfile(tmp_path / "g.pid") is None


async def test_wait_until_gives_up_with_a_message() -> None:
    with pytest.raises(LabError, match=r"never within 0\.05 s"):
        await wait_until(lambda: False, "never", time_limit=0.05)
