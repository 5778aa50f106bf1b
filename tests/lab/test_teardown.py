"""Teardown: nothing of a lab survives ``down``, even after a crashed ``up``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from kumonet.lab.lab import Lab
from kumonet.lab.layout import DEFAULT_ROOT
from kumonet.lab.process import read_pidfile
from tests.lab.conftest import LabFactory, leftovers, unique_prefix

pytestmark = pytest.mark.lab

PORT_A = "7a1e5b1c-0001-4000-8000-00000000000a"


def _crash_up_midway(prefix: str) -> None:
    """Start `kumonet lab up` and, as soon as one ovs-vswitchd is running,
    kill -9 it and the `up` process itself: a crash at whatever step it was."""
    run_dir = DEFAULT_ROOT / prefix
    up = subprocess.Popen(
        [sys.executable, "-m", "kumonet.cli.main", "lab", "up", "--hosts", "3", "--l3-hosts", "2",
         "--prefix", prefix, "--no-agents", "--keep-on-failure"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    pidfile = run_dir / "hosts" / "host1" / "ovs-vswitchd.pid"
    deadline = time.monotonic() + 30
    while (pid := read_pidfile(pidfile)) is None and up.poll() is None:
        assert time.monotonic() < deadline, "up never started ovs-vswitchd"
        time.sleep(0.001)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
    up.send_signal(signal.SIGKILL)
    up.wait()


async def test_down_cleans_up_after_a_crashed_up(lab_skip: None) -> None:
    prefix = unique_prefix()
    try:
        await asyncio.to_thread(_crash_up_midway, prefix)
        assert await leftovers(prefix) != []
        first = await Lab.teardown(prefix)
        assert first.anything
        assert await leftovers(prefix) == []
        second = await Lab.teardown(prefix)
        assert not second.anything
        assert await leftovers(prefix) == []
    finally:
        await Lab.teardown(prefix)


async def test_down_stops_processes_left_in_the_lab_namespaces(lab_factory: LabFactory) -> None:
    lab = await lab_factory.up(1)
    await lab.add_vm("v", "host1", port_id=PORT_A, mac="fa:16:3e:00:00:0a")
    # a stray process started in a VM, not known to the lab at all
    stray = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", lab.layout.vm_netns("v"), "sleep", "300",
        start_new_session=True,
    )
    try:
        await lab.down()
        assert await asyncio.wait_for(stray.wait(), 10) == -signal.SIGTERM
        assert await leftovers(lab.layout.prefix) == []
    finally:
        if stray.returncode is None:
            stray.kill()
            await stray.wait()
