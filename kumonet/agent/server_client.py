"""The agent's HTTP client for the servers' internal API (``/v1/agent/...``).

Agents never talk to the store: they take a snapshot of a prefix, then
long-poll for changes from the snapshot's revision; the servers fan changes
out. Several server URLs may be configured: a request that cannot reach one
(connection refused, timeout, 5xx) is tried on the next, and the one that
answered is tried first next time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

LOG = logging.getLogger(__name__)


class ServerUnavailable(ConnectionError):
    """No configured server answered."""


class Compacted(Exception):
    """The watch revision is older than the servers' history: re-snapshot."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"compacted at {compact_revision}")
        self.compact_revision = compact_revision


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    mod_revision: int
    value: Any


@dataclass(frozen=True, slots=True)
class Snapshot:
    revision: int
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # "put" or "delete"
    key: str
    mod_revision: int
    value: Any  # None for deletes


@dataclass(frozen=True, slots=True)
class WatchBatch:
    revision: int
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class PortStatus:
    port_id: str
    status: str  # ACTIVE or DOWN
    host: str


class ServerClient:
    def __init__(self, urls: Sequence[str], *, request_timeout: float = 10.0) -> None:
        if not urls:
            raise ValueError("at least one server URL is needed")
        self._urls = list(urls)
        self._request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None
        self._fresh_session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ServerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for session in (self._session, self._fresh_session):
            if session is not None:
                await session.close()
        self._session = self._fresh_session = None

    def _client(self, *, fresh: bool = False) -> aiohttp.ClientSession:
        """The pooled session, or (``fresh``) one opening a connection per request."""
        if fresh:
            if self._fresh_session is None:
                self._fresh_session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=4, force_close=True)
                )
            return self._fresh_session
        if self._session is None:
            self._session = aiohttp.ClientSession(
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
                connector=aiohttp.TCPConnector(limit=16),
            )
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        seconds: float | None = None,
        ok: tuple[int, ...] = (200,),
        connect_within: float | None = None,
    ) -> tuple[int, Any]:
        """One request, tried on each server in turn; returns (status, JSON or None).

        ``connect_within``: sent on a new connection, given up unless it is
        established in that time. A request on a pooled connection is written at
        once, and if the path is cut TCP retransmits it until the path heals: it
        may reach the server many seconds late. On a new connection nothing is
        sent before the handshake: a request given up is never delivered."""
        errors: list[str] = []
        client_timeout = aiohttp.ClientTimeout(
            total=seconds or self._request_timeout, sock_connect=connect_within
        )
        for _ in range(len(self._urls)):
            url = self._urls[0]
            try:
                async with self._client(fresh=connect_within is not None).request(
                    method,
                    url + path,
                    params=params,
                    data=orjson.dumps(body) if body is not None else None,
                    headers={"Content-Type": "application/json"} if body is not None else None,
                    timeout=client_timeout,
                ) as response:
                    raw = await response.read()
                    if response.status >= 500:
                        errors.append(f"{url}: HTTP {response.status}")
                    else:
                        # Callers tell expected answers (``ok``) from refusals.
                        return response.status, orjson.loads(raw) if raw else None
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as error:
                errors.append(f"{url}: {type(error).__name__}: {error}")
            # Rotate: the next attempt (and later requests) start at the next server.
            self._urls.append(self._urls.pop(0))
        raise ServerUnavailable("; ".join(errors))

    # -- intent --------------------------------------------------------------

    async def snapshot(self, prefix: str) -> Snapshot:
        status, data = await self._request("GET", "/v1/agent/snapshot", params={"prefix": prefix})
        if status != 200:
            raise ServerUnavailable(f"snapshot {prefix}: HTTP {status}: {data}")
        return Snapshot(
            revision=int(data["revision"]),
            items=tuple(
                Item(item["key"], int(item["mod_revision"]), item["value"])
                for item in data["items"]
            ),
        )

    async def watch(self, prefix: str, revision: int, *, wait: float = 25.0) -> WatchBatch:
        """Changes under ``prefix`` at ``revision`` or later (empty after ``wait`` s)."""
        status, data = await self._request(
            "GET",
            "/v1/agent/watch",
            params={"prefix": prefix, "revision": str(revision), "timeout": str(wait)},
            seconds=wait + 10,
            ok=(200, 410),
        )
        if status == 410:
            raise Compacted(int((data or {}).get("compact_revision", 0)))
        if status != 200:
            raise ServerUnavailable(f"watch {prefix}: HTTP {status}: {data}")
        return WatchBatch(
            revision=int(data["revision"]),
            events=tuple(
                Event(e["type"], e["key"], int(e["mod_revision"]), e.get("value"))
                for e in data["events"]
            ),
        )

    # -- registration and state ---------------------------------------------

    async def register(self, host: str, facts: Mapping[str, Any]) -> None:
        status, data = await self._request(
            "PUT", f"/v1/agent/hosts/{host}", body=dict(facts), ok=(200, 201)
        )
        if status not in (200, 201):
            raise ServerUnavailable(f"register {host}: HTTP {status}: {data}")

    async def heartbeat(self, host: str) -> bool:
        """False when the server no longer knows the host's lease (re-register)."""
        status, _ = await self._request("POST", f"/v1/agent/hosts/{host}/heartbeat", ok=(200, 204))
        return status in (200, 204)

    async def report_ports(self, statuses: Sequence[PortStatus]) -> None:
        if not statuses:
            return
        by_host: dict[str, list[PortStatus]] = {}
        for report in statuses:
            by_host.setdefault(report.host, []).append(report)
        for host, reports in by_host.items():
            await self._report_host_ports(host, reports)

    async def _report_host_ports(self, host: str, statuses: Sequence[PortStatus]) -> None:
        body = {
            "host": host,
            "ports": [{"port_id": s.port_id, "status": s.status} for s in statuses],
        }
        status, data = await self._request(
            "PUT", "/v1/agent/ports/status", body=body, ok=(200, 204)
        )
        if status not in (200, 204):
            LOG.warning("port status report refused: HTTP %s %s", status, data)
            return
        for result in (data or {}).get("ports", []):
            if "error" in result:
                LOG.warning("port %s status not set: %s", result.get("id"), result["error"])

    async def report_ha_state(
        self, router_id: str, host: str, state: str, *, connect_within: float = 1.0
    ) -> bool:
        """Report this host's VRRP role for a router; False if refused (404: the
        host's lease expired: register again, then report every state).

        On a new connection (see ``_request``): a transition is reported promptly
        or not at all, never seconds later when it may be stale (a host cut off
        that became master, and yielded again since, must not be announced as
        the master when its path heals). ServerUnavailable if not connected
        within ``connect_within`` s on any server."""
        status, data = await self._request(
            "PUT",
            f"/v1/agent/routers/{router_id}/ha_state",
            body={"host": host, "state": state},
            ok=(200, 404),
            connect_within=connect_within,
        )
        if status != 200:
            LOG.warning("ha_state of %s refused: HTTP %s %s", router_id, status, data)
        return status == 200


async def wait_for_server(client: ServerClient, *, interval: float = 0.5) -> None:
    """Block until a server answers (used at start-up)."""
    while True:
        try:
            await client.snapshot("/operational/topology/hosts/")
            return
        except ServerUnavailable as error:
            LOG.info("no server yet: %s", error)
            await asyncio.sleep(interval)
