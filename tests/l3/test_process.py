"""The L3 daemons' shared process helpers, on real processes."""

from __future__ import annotations

import subprocess
import sys

from kumonet.l3.process import cmdline, wait_until


def test_cmdline_of_a_live_process_and_of_a_gone_one() -> None:
    argv = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)"]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        # Read once it runs: between fork and exec its cmdline is empty.
        assert child.stdout is not None and child.stdout.readline() == b"up\n"
        assert cmdline(child.pid) == argv
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert cmdline(child.pid) == []


async def test_wait_until_says_whether_the_condition_came() -> None:
    calls = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    assert await wait_until(third_time, time_limit=5.0)
    assert len(calls) == 3
    assert not await wait_until(lambda: False, time_limit=0.05)
