"""Fixtures for tests on the multi-host lab.

Sharing ONE lab across many end-to-end tests: ``lab`` is session-scoped (its
prefix is random, so a test run never collides with a demo lab or another
run), torn down at the end of the session even when tests fail, and a
leftover from a killed run is removed by ``kumonet lab down --prefix P`` or
by the next run's teardown of the same prefix. Tests must leave the shared
lab as they found it: create VMs through ``vms`` (function-scoped, deletes
them afterwards) with names unique to the test, and never change the hosts'
OVS configuration — a test that needs hand-written flows or tunnel ports
takes its own lab from ``lab_factory``.

To reuse it for agent/API end-to-end tests, move ``lab`` to
``tests/conftest.py`` next to a session-scoped server fixture and build it as
``Lab.up(3, prefix=..., server_urls=[server_url], agents=True)``; tests then
create networks through the API and VMs with ``vms.add(name, host,
network=net_id)``.

All lab tests need root, ``ip netns`` and Open vSwitch; they are marked
``lab`` and skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kumonet.lab.lab import Lab
from kumonet.lab.state import VmRecord


def unique_prefix() -> str:
    # 1 letter + 5 hex digits: within the 6-character prefix limit
    return "t" + secrets.token_hex(3)[:5]


def lab_available() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    for tool in ("ovs-vswitchd", "ovsdb-server", "ip", "ethtool"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@pytest.fixture(scope="session")
def lab_skip() -> None:
    reason = lab_available()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def lab(lab_skip: None) -> Iterator[Lab]:
    prefix = unique_prefix()
    shared = asyncio.run(Lab.up(3, prefix=prefix, agents=False))
    try:
        yield shared
    finally:
        asyncio.run(Lab.teardown(prefix))


class LabFactory:
    """Labs for one test, all torn down after it."""

    def __init__(self) -> None:
        self.prefixes: list[str] = []

    def new_prefix(self) -> str:
        prefix = unique_prefix()
        self.prefixes.append(prefix)
        return prefix

    async def up(self, hosts: int = 2, *, agents: bool = False, **kwargs: Any) -> Lab:
        return await Lab.up(hosts, prefix=self.new_prefix(), agents=agents, **kwargs)


@pytest.fixture
def lab_factory(lab_skip: None) -> Iterator[LabFactory]:
    factory = LabFactory()
    try:
        yield factory
    finally:
        for prefix in factory.prefixes:
            asyncio.run(Lab.teardown(prefix))


class VmFactory:
    """VMs on the shared lab, deleted after the test."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.names: list[str] = []

    async def add(self, name: str, host: str, **kwargs: Any) -> VmRecord:
        self.names.append(name)
        return await self.lab.add_vm(name, host, **kwargs)


@pytest.fixture
def vms(lab: Lab) -> Iterator[VmFactory]:
    factory = VmFactory(lab)
    try:
        yield factory
    finally:
        existing = lab.vms()

        async def delete() -> None:
            for name in factory.names:
                if name in existing:
                    await lab.del_vm(name)

        asyncio.run(delete())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    """A real kumonet-server on a free loopback port with its own SQLite store."""
    if importlib.util.find_spec("kumonet.api.main") is None:
        pytest.skip("kumonet-server is not available")
    url = f"http://127.0.0.1:{free_port()}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from kumonet.api.main import main; sys.exit(main())",
        "--listen", url.removeprefix("http://"), "--store", f"sqlite:///{tmp_path}/k.db",
        cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"{url}/v2.0/networks") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("kumonet-server did not come up")
        yield url
    finally:
        proc.terminate()
        await proc.wait()


async def api(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{url}/v2.0{path}", json=body) as response,
    ):
        assert response.status < 400, await response.text()
        return None if response.status == 204 else await response.json()
