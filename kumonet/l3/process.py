"""What the L3 host's daemons (keepalived, conntrackd) share about their
processes: their command lines as /proc shows them, and waiting for them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

POLL_SECONDS = 0.01


def cmdline(pid: int) -> list[str]:
    """The process's argv, or [] when it is gone (or not ours to read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


async def wait_until(done: Callable[[], bool], *, time_limit: float) -> bool:
    """Poll ``done`` until it holds (True) or ``time_limit`` passes (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    while not done():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(POLL_SECONDS)
    return True
