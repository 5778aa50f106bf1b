"""What a server answers while its store cluster has lost the majority (the
seed's "suspended" state), and how reads go on, flagged as possibly stale.

* :func:`unavailable_answer` turns :class:`StoreUnavailable` into a 503 in
  Neutron's error format with a message that says what happened to the
  request: not applied, maybe applied (read before retrying), or a read that
  cannot be served fresh. The API's error handling calls it.
* :class:`StaleReadStore` wraps the server's store: inside a GET request
  (marked by :func:`stale_reads_middleware`), a ``get``/``range`` that fails
  for lack of quorum is served by a serializable read of any live member,
  and the response carries ``X-Kumonet-Stale: true`` and a ``Warning``
  header. Outside GET requests nothing changes: a write never decides on a
  stale read.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from kumonet.store.contract import (
    KeyValue,
    RangeResult,
    StoreUnavailable,
)
from kumonet.store.delegating import DelegatingStore

log = logging.getLogger(__name__)

STALE_HEADER = "X-Kumonet-Stale"
STALE_WARNING = '110 kumonet "Response is Stale: the store cluster has no majority"'
RETRY_AFTER_SECONDS = 2
_READ_METHODS = frozenset(("GET", "HEAD"))

SUSPENDED_WRITE = (
    "The network controller's store cluster has lost its majority (suspended): the request"
    " was not applied. Retry when the cluster is back."
)
SUSPENDED_MAYBE_APPLIED = (
    "The network controller's store cluster became unavailable while the request was being"
    " applied: it may or may not have taken effect. Read the resource before retrying."
)
SUSPENDED_READ = (
    "The network controller's store cluster has lost its majority (suspended) and no member"
    " could serve even a possibly stale read. Retry when the cluster is back."
)


@dataclass(frozen=True, slots=True)
class UnavailableAnswer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def unavailable_answer(error: StoreUnavailable, method: str) -> UnavailableAnswer:
    """The 503 for a request that failed with ``error``. The store's own
    message (member addresses) is for the log, not for the tenant."""
    if method.upper() in _READ_METHODS:
        message = SUSPENDED_READ
    elif error.indeterminate:
        message = SUSPENDED_MAYBE_APPLIED
    else:
        message = SUSPENDED_WRITE
    return UnavailableAnswer(
        status=503,
        body={"NeutronError": {"type": "ServiceUnavailable", "message": message, "detail": ""}},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


@dataclass(slots=True)
class ReadFreshness:
    """Per request: whether any read was served stale."""

    allow_stale: bool
    stale: bool = False
    reasons: list[str] = field(default_factory=list)


# Per request (asyncio task), set by the middleware: the store sits below the
# handlers and has no request to look at. A ContextVar is asyncio's own
# per-task slot, not shared state: each request sees only its own value.
_FRESHNESS: ContextVar[ReadFreshness | None] = ContextVar("kumonet_read_freshness", default=None)


@web.middleware
async def stale_reads_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    freshness = ReadFreshness(allow_stale=request.method in _READ_METHODS)
    token = _FRESHNESS.set(freshness)
    try:
        response = await handler(request)
    finally:
        _FRESHNESS.reset(token)
    if freshness.stale:
        response.headers[STALE_HEADER] = "true"
        response.headers["Warning"] = STALE_WARNING
    return response


@runtime_checkable
class StaleReader(Protocol):
    """A backend that can read without quorum (:class:`EtcdStore`)."""

    async def stale_get(self, key: str) -> KeyValue | None: ...

    async def stale_range(self, prefix: str) -> RangeResult: ...


class StaleReadStore(DelegatingStore):
    """The store contract, with stale fallbacks for reads in GET requests.

    Once one read of a request has gone stale, its later reads go straight
    to the stale path: the quorum that was missing a moment ago is not
    waited for again (each wait is the store's whole call budget)."""

    def _stale_reader(self) -> StaleReader | None:
        """The reader to use at once, when this request already went stale."""
        freshness = _FRESHNESS.get()
        if freshness is not None and freshness.stale and isinstance(self.store, StaleReader):
            return self.store
        return None

    def _fallback(self, error: StoreUnavailable) -> StaleReader:
        freshness = _FRESHNESS.get()
        if (
            freshness is None
            or not freshness.allow_stale
            or not isinstance(self.store, StaleReader)
        ):
            raise error
        log.warning("serving a read possibly stale: %s", error)
        freshness.stale = True
        freshness.reasons.append(str(error))
        return self.store

    async def get(self, key: str) -> KeyValue | None:
        reader = self._stale_reader()
        if reader is not None:
            return await reader.stale_get(key)
        try:
            return await self.store.get(key)
        except StoreUnavailable as error:
            return await self._fallback(error).stale_get(key)

    async def range(self, prefix: str) -> RangeResult:
        reader = self._stale_reader()
        if reader is not None:
            return await reader.stale_range(prefix)
        try:
            return await self.store.range(prefix)
        except StoreUnavailable as error:
            return await self._fallback(error).stale_range(prefix)
