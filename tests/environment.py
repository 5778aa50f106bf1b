"""What the integration tests need from the machine, in one place.

On a developer's machine without root or a Debian package, those tests are
skipped with the reason. In CI (``CI`` set, as `.ci/run` runs) a missing
requirement FAILS the test instead: there `make test` installs everything,
so a skip would only hide a missing install step.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def missing(*, root: bool = True, tools: tuple[str, ...] = ()) -> str | None:
    """Why the tests cannot run here, or None."""
    if root and os.geteuid() != 0:
        return "needs root (network namespaces, Open vSwitch daemons)"
    absent = [tool for tool in tools if shutil.which(tool) is None]
    if absent:
        return f"missing {', '.join(absent)} (tools/install-system.sh installs it)"
    return None


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: `make test` should have installed it", pytrace=False)
    pytest.skip(reason)


def needs(*, root: bool = True, tools: tuple[str, ...] = ()) -> None:
    """Skip (fail in CI) unless the machine has what the test needs."""
    reason = missing(root=root, tools=tools)
    if reason is not None:
        unavailable(reason)
