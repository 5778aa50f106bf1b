"""Fixtures shared across test folders: the end-to-end ``cloud``.

``cloud`` (session) is one kumonet-server on a temporary SQLite store and a
3-host lab with real kumonet-agents (random prefix, torn down at the end of
the session even when tests fail; logs copied to ``$KUMONET_CLOUD_LOGS`` when
set). ``tenant`` (function) gives a test its own project on it and removes
what the test made. ``l3_cloud`` (session) is another such cloud of 4 hosts
whose host1..host3 are L3 hosts (routers, the external network
203.0.113.0/24; a router on 2 of them, so the third can replace a dead one)
and host4 a compute host, made only when a test asks for it. See
``tests/cloud.py``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.cloud import L3_SERVER_CONFIG, Cloud, Tenant, cloud_unavailable, running_cloud
from tests.environment import unavailable


@pytest.fixture(scope="session")
def cloud() -> Iterator[Cloud]:
    reason = cloud_unavailable()
    if reason:
        unavailable(reason)
    prefix = "c" + secrets.token_hex(3)[:5]
    logs = os.environ.get("KUMONET_CLOUD_LOGS")
    with running_cloud(prefix, 3, keep_logs=Path(logs) if logs else None) as shared:
        yield shared


@pytest.fixture(scope="session")
def l3_cloud() -> Iterator[Cloud]:
    reason = cloud_unavailable()
    if reason:
        unavailable(reason)
    prefix = "d" + secrets.token_hex(3)[:5]
    logs = os.environ.get("KUMONET_CLOUD_LOGS")
    with running_cloud(
        prefix,
        4,
        l3_hosts=3,
        keep_logs=Path(logs) if logs else None,
        server_config=L3_SERVER_CONFIG,
    ) as shared:
        yield shared


@pytest.fixture
async def tenant(cloud: Cloud) -> AsyncIterator[Tenant]:
    scope = Tenant(cloud)
    try:
        yield scope
    finally:
        await scope.close()


@pytest.fixture
async def l3_tenant(l3_cloud: Cloud) -> AsyncIterator[Tenant]:
    scope = Tenant(l3_cloud)
    try:
        yield scope
    finally:
        await scope.close()
