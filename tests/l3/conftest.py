from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.l3.netlab import NetLab


def _missing_tools() -> list[str]:
    tools = ("ovs-vswitchd", "ovsdb-server", "keepalived", "nft", "ethtool", "ip")
    return [tool for tool in tools if shutil.which(tool) is None]


@pytest.fixture
def netlab() -> Iterator[NetLab]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    missing = _missing_tools()
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (tools/install-system.sh)")
    lab = NetLab.create()
    try:
        yield lab
    finally:
        lab.destroy()
