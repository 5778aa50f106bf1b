from __future__ import annotations

import asyncio
import os
from pathlib import Path

from kumonet.l3.ha_state import (
    HaStateWatcher,
    HaTransition,
    RouterHAState,
    parse_notify_line,
)
from kumonet.l3.plan import KeepalivedFiles


def test_parse_notify_lines() -> None:
    assert parse_notify_line('INSTANCE "r1" MASTER 50\n') == HaTransition(
        "r1", RouterHAState.ACTIVE
    )
    assert parse_notify_line('INSTANCE "r1" BACKUP 50') == HaTransition("r1", RouterHAState.STANDBY)
    assert parse_notify_line('INSTANCE "r1" FAULT 0') == HaTransition("r1", RouterHAState.FAULT)
    assert parse_notify_line('INSTANCE "r1" MASTER_RX_LOWER_PRI 50') is None
    assert parse_notify_line('GROUP "g" MASTER') is None
    assert parse_notify_line("") is None


async def test_watcher_reports_lines_written_to_the_fifo(tmp_path: Path) -> None:
    files = KeepalivedFiles(tmp_path / "r1")
    seen: asyncio.Queue[tuple[str, RouterHAState]] = asyncio.Queue()
    watcher = HaStateWatcher(lambda rid, state: seen.put_nowait((rid, state)))
    watcher.add("r1", files)
    try:
        fd = os.open(files.notify_fifo, os.O_WRONLY | os.O_NONBLOCK)
        # A line split across two writes is reassembled; a foreign instance is ignored.
        os.write(fd, b'INSTANCE "r1" BAC')
        os.write(fd, b'KUP 50\nINSTANCE "other" MASTER 50\nINSTANCE "r1" MASTER 50\n')
        os.close(fd)
        assert await asyncio.wait_for(seen.get(), 5) == ("r1", RouterHAState.STANDBY)
        assert await asyncio.wait_for(seen.get(), 5) == ("r1", RouterHAState.ACTIVE)
        assert seen.empty()
        assert files.state.read_text().strip() == "active"
        assert watcher.states == {"r1": RouterHAState.ACTIVE}
    finally:
        watcher.close()
    # A new watcher (an agent restart) starts from the state file.
    again = HaStateWatcher(lambda rid, state: None)
    again.add("r1", files)
    assert again.states == {"r1": RouterHAState.ACTIVE}
    again.close()
