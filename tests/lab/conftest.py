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

For whole-stack tests (a server plus a lab whose hosts run real agents) use
the session-scoped ``cloud`` / ``l3_cloud`` fixtures of ``tests/conftest.py``
(``tests/cloud.py``); ``server`` here gives a test its own kumonet-server.

``l3_lab`` (session) is a 3-host lab whose host1 and host2 are L3 hosts
(br-ex on the external network, upstream 203.0.113.1 in ``<prefix>-ext``)
with a stand-in agent that only sleeps, so failure injection has an agent to
kill and restart without a server. Tests that fail a host recover it before
they end (``recovered``); each test uses its own addresses on the external
network.

All lab tests need root, ``ip netns`` and Open vSwitch; they are marked
``lab``, skipped on machines without them and failed in CI (see
``tests/environment.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kumonet.lab.command import run
from kumonet.lab.lab import Lab
from kumonet.lab.layout import LabLayout
from kumonet.lab.process import find_by_marker, netns_list
from kumonet.lab.state import VmRecord
from tests.environment import needs


def unique_prefix() -> str:
    # 1 letter + 5 hex digits: within the 6-character prefix limit
    return "t" + secrets.token_hex(3)[:5]


LAB_TOOLS = ("ovs-vswitchd", "ovsdb-server", "ip", "ethtool")


@pytest.fixture(scope="session")
def lab_skip() -> None:
    needs(tools=LAB_TOOLS)


@pytest.fixture(scope="session")
def lab(lab_skip: None) -> Iterator[Lab]:
    prefix = unique_prefix()
    shared = asyncio.run(Lab.up(3, prefix=prefix, agents=False))
    try:
        yield shared
    finally:
        asyncio.run(Lab.teardown(prefix))


# An agent that only waits for a signal: what failure injection kills and restarts.
SLEEPER_AGENT = (sys.executable, "-c", "import signal; signal.pause()")


@pytest.fixture(scope="session")
def l3_lab(lab_skip: None) -> Iterator[Lab]:
    prefix = unique_prefix()
    shared = asyncio.run(Lab.up(3, l3_hosts=2, prefix=prefix, agents=True,
                                agent_command=SLEEPER_AGENT))
    try:
        yield shared
    finally:
        asyncio.run(Lab.teardown(prefix))


@contextlib.asynccontextmanager
async def recovered(lab: Lab, host: str) -> AsyncIterator[None]:
    """Whatever the test does to ``host``, it is recovered afterwards."""
    try:
        yield
    finally:
        if lab.failure(host) is not None:
            await lab.recover_host(host)


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


def _vms_on(lab: Lab) -> Iterator[VmFactory]:
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


@pytest.fixture
def vms(lab: Lab) -> Iterator[VmFactory]:
    """VMs on the shared lab, deleted after the test."""
    yield from _vms_on(lab)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    """A real kumonet-server on a free loopback port with its own SQLite store."""
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


async def leftovers(prefix: str) -> list[str]:
    """Everything of lab ``prefix`` still on the machine, described."""
    layout = LabLayout(prefix)
    found = [f"netns {ns}" for ns in await netns_list() if ns.startswith(f"{prefix}-")]
    found += [f"process {pid}" for pid in find_by_marker(f"{layout.run_dir}/")]
    links = (await run(["ip", "-o", "link", "show"])).stdout
    found += [
        f"interface {line.split(':')[1].strip()}"
        for line in links.splitlines()
        if line.split(":")[1].strip().startswith(f"{prefix}-")
    ]
    if layout.run_dir.exists():
        found.append(f"directory {layout.run_dir}")
    return found
