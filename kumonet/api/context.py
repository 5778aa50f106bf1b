"""What every handler is given: built once in ``kumonet.api.main`` and
passed in (no globals)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kumonet.api.config import ServerConfig
from kumonet.store.contract import Store


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ApiContext:
    store: Store
    config: ServerConfig
    clock: Callable[[], datetime] = utc_now
