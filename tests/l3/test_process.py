"""The L3 daemons' shared process helpers, on real processes."""

from __future__ import annotations

import subprocess
import sys

from kumonet.l3.process import cmdline, wait_until


def test_cmdline_of_a_live_process_and_of_a_gone_one() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert cmdline(child.pid) == [sys.executable, "-c", "import time; time.sleep(30)"]
    finally:
        child.kill()
        child.wait()
    assert cmdline(child.pid) == []


async def test_wait_until_says_whether_the_condition_came() -> None:
    calls = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    assert await wait_until(third_time, time_limit=5.0)
    assert len(calls) == 3
    assert not await wait_until(lambda: False, time_limit=0.05)
