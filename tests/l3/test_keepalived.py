"""keepalived for one router, for real, in a namespace: start, no-op, reload, stop,
exit monitoring, and the notify FIFO reaching the watcher."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kumonet.l3.command import run
from kumonet.l3.ha_state import HaStateWatcher, RouterHAState
from kumonet.l3.keepalived import (
    KeepalivedAction,
    KeepalivedError,
    KeepalivedMonitor,
    KeepalivedProcess,
)
from kumonet.l3.namespace import delete_namespace, ensure_namespace
from kumonet.l3.plan import Address, KeepalivedFiles, VrrpSettings, keepalived_conf
from tests.environment import needs

pytestmark = pytest.mark.lab


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    needs(tools=("keepalived", "ip"))
    name = f"kl3ka{secrets.token_hex(3)}"
    await ensure_namespace(name)
    try:
        # A veth end (its peer in the same namespace): multicast-capable, unlike dummy.
        await run(["ip", "-n", name, "link", "add", "ha-x", "type", "veth", "peer", "name", "ha-y"])
        for dev in ("ha-x", "ha-y"):
            await run(["ip", "-n", name, "link", "set", dev, "up"])
        await run(["ip", "-n", name, "addr", "add", "169.254.192.9/18", "dev", "ha-x"])
        yield name
    finally:
        await delete_namespace(name)


def _conf(files: KeepalivedFiles, *, advert: float = 0.1) -> str:
    return keepalived_conf(
        router_id="r1",
        vrrp_id=3,
        ha_interface="ha-x",
        ha_vip=Address("169.254.0.3/24", "ha-x"),
        excluded=(Address("192.0.2.1/24", "ha-y"),),
        virtual_routes=(),
        vrrp=VrrpSettings(advert_int=advert),
        notify_fifo=files.notify_fifo,
    )


async def test_keepalived_lifecycle(namespace: str, tmp_path: Path) -> None:
    files = KeepalivedFiles(tmp_path / "r1")
    process = KeepalivedProcess(files, namespace)
    seen: asyncio.Queue[RouterHAState] = asyncio.Queue()
    watcher = HaStateWatcher(lambda rid, state: seen.put_nowait(state))
    exits: asyncio.Queue[str] = asyncio.Queue()
    monitor = KeepalivedMonitor(exits.put_nowait)
    watcher.add("r1", files)
    try:
        assert await process.ensure(_conf(files)) is KeepalivedAction.STARTED
        pid = process.pid
        assert pid is not None and process.vrrp_pid is not None
        # Alone on its segment it becomes master after the master-down interval.
        assert await asyncio.wait_for(seen.get(), 10) is RouterHAState.STANDBY
        assert await asyncio.wait_for(seen.get(), 10) is RouterHAState.ACTIVE
        assert files.state.read_text().strip() == "active"

        assert await process.ensure(_conf(files)) is KeepalivedAction.UNCHANGED
        assert await process.ensure(_conf(files, advert=0.2)) is KeepalivedAction.RELOADED
        assert process.pid == pid and "advert_int 0.2" in files.config.read_text()
        # A configuration keepalived rejects never replaces the running one.
        with pytest.raises(KeepalivedError):
            await process.ensure(_conf(files).replace("interface ha-x", "interface nosuchdev"))
        assert process.pid == pid and "interface ha-x" in files.config.read_text()

        monitor.watch("r1", pid)
        await process.stop()
        assert not process.running and process.vrrp_pid is None
        assert not files.pid.exists()
        assert await asyncio.wait_for(exits.get(), 5) == "r1"

        # A restart after a SIGKILL (pid files left, processes possibly zombies).
        assert await process.ensure(_conf(files)) is KeepalivedAction.STARTED
        killed = process.pid
        assert killed is not None
        monitor.watch("r1", killed)
        os.kill(killed, signal.SIGKILL)
        assert await asyncio.wait_for(exits.get(), 5) == "r1"
        child = process.vrrp_pid
        if child is not None:
            os.kill(child, signal.SIGKILL)
        assert await process.ensure(_conf(files)) is KeepalivedAction.STARTED
    finally:
        monitor.close()
        watcher.close()
        await process.stop()


async def test_a_rejected_config_raises(namespace: str, tmp_path: Path) -> None:
    files = KeepalivedFiles(tmp_path / "r2")
    process = KeepalivedProcess(files, namespace)
    with pytest.raises(KeepalivedError):
        await process.ensure(_conf(files).replace("interface ha-x", "interface nosuchdev"))
    assert not process.running
