from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.environment import needs
from tests.l3.netlab import NetLab

L3_TOOLS = ("ovs-vswitchd", "ovsdb-server", "keepalived", "nft", "ethtool", "ip")


@pytest.fixture
def netlab() -> Iterator[NetLab]:
    needs(tools=L3_TOOLS)
    lab = NetLab.create()
    try:
        yield lab
    finally:
        lab.destroy()
