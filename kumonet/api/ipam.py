"""This server's address hints, one per subnet, and the reservations one
request makes: committed to the hint when its transaction commits,
cancelled (and the hint re-synced from the store) when it loses a race."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from kumonet.api.repository import neutron_key, neutron_prefix
from kumonet.model.ipam import AddressHint
from kumonet.model.subnet import pools_from_json
from kumonet.store.contract import CompactedError, EventType, Store, StoreUnavailable, WatchEvent

log = logging.getLogger(__name__)


def ipam_key(subnet_id: str, address: str) -> str:
    return neutron_key("ipam", subnet_id, address)


#: After losing a race on a subnet, picks spread over at least this many of the
#: lowest free addresses for a while: several servers allocating from one subnet at
#: once then rarely collide. Without contention the pick is the lowest free.
CONTENDED_SPREAD = 16
CONTENTION_SECONDS = 2.0


class AddressHints:
    """Per-server cache; never the source of truth (see kumonet.model.ipam).

    While the server runs, a watch of ``ipam/`` keeps the hints current with
    what other servers allocate and free, so servers sharing a subnet rarely
    pick an address another has just taken (the store still decides)."""

    def __init__(
        self,
        store: Store,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._hints: dict[str, AddressHint] = {}
        self._stale: set[str] = set()
        # Addresses whose transaction lost: re-checked one by one (a get each)
        # rather than re-reading the whole subnet.
        self._suspects: dict[str, set[int]] = {}
        self._contended_until: dict[str, float] = {}
        self._rng = rng or random.Random()
        self._clock = clock
        self._follower: asyncio.Task[None] | None = None

    # -- following other servers' allocations -------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._stop)

    async def _start(self, _app: web.Application) -> None:
        self._follower = asyncio.create_task(self._follow(), name="ipam hints")

    async def _stop(self, _app: web.Application) -> None:
        task, self._follower = self._follower, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(self) -> None:
        prefix = neutron_prefix("ipam")
        revision: int | None = None
        while True:
            try:
                if revision is None:
                    revision = await self.store.revision() + 1
                async for event in self.store.watch(prefix, revision):
                    revision = event.kv.mod_revision + 1
                    self._apply(prefix, event)
            except CompactedError:
                revision = None
                for subnet_id in list(self._hints):
                    self.mark_stale(subnet_id)
            except StoreUnavailable as error:
                log.debug("ipam hint watch interrupted: %s", error)
                await asyncio.sleep(0.5)

    def _apply(self, prefix: str, event: WatchEvent) -> None:
        subnet_id, _, text = event.kv.key[len(prefix):].partition("/")
        hint = self._hints.get(subnet_id)
        if hint is None or not text:
            return
        try:
            address = int(ipaddress.ip_address(text))
        except ValueError:
            return
        if event.type is EventType.DELETE:
            hint.release(address)
        elif address not in hint.pending:  # our own in-flight request commits it
            hint.committed.add(address)

    async def _taken(self, subnet_id: str) -> list[int]:
        result = await self.store.range(neutron_prefix("ipam", subnet_id))
        return [int(ipaddress.ip_address(kv.key.rsplit("/", 1)[1])) for kv in result.kvs]

    async def for_subnet(self, subnet: dict[str, Any]) -> AddressHint:
        subnet_id = subnet["id"]
        hint = self._hints.get(subnet_id)
        if hint is None:
            hint = AddressHint(pools_from_json(subnet["allocation_pools"]),
                               await self._taken(subnet_id))
            # Another request may have built it while this one awaited.
            hint = self._hints.setdefault(subnet_id, hint)
        elif subnet_id in self._stale:
            self._stale.discard(subnet_id)
            self._suspects.pop(subnet_id, None)
            hint.replace_committed(await self._taken(subnet_id))
        elif subnet_id in self._suspects:
            for address in self._suspects.pop(subnet_id):
                text = str(ipaddress.ip_address(address))
                if await self.store.get(ipam_key(subnet_id, text)) is not None:
                    hint.commit(address)
        return hint

    def reserve(self, subnet_id: str, hint: AddressHint) -> int | None:
        """The lowest free address, or a spread pick while the subnet is contended."""
        if self._contended_until.get(subnet_id, 0.0) > self._clock():
            # Wider with more of this server's requests in flight: other servers
            # likely have as many, all looking at the same lowest addresses.
            spread = max(CONTENDED_SPREAD, 4 * len(hint.pending))
            return hint.reserve_lowest(spread, self._rng)
        return hint.reserve_lowest()

    def lost_race(self, subnet_id: str, address: int) -> None:
        if subnet_id in self._hints:
            self._suspects.setdefault(subnet_id, set()).add(address)
        self._contended_until[subnet_id] = self._clock() + CONTENTION_SECONDS

    async def resync(self, subnet: dict[str, Any]) -> AddressHint:
        self.mark_stale(subnet["id"])
        return await self.for_subnet(subnet)

    def mark_stale(self, subnet_id: str) -> None:
        """Re-read the subnet's allocations before the next decision."""
        if subnet_id in self._hints:
            self._stale.add(subnet_id)

    def forget(self, subnet_id: str) -> None:
        self._hints.pop(subnet_id, None)
        self._stale.discard(subnet_id)
        self._suspects.pop(subnet_id, None)
        self._contended_until.pop(subnet_id, None)

    def released(self, subnet_id: str, address: str) -> None:
        hint = self._hints.get(subnet_id)
        if hint is not None:
            hint.release(int(ipaddress.ip_address(address)))


@dataclass
class Reservations:
    """The addresses one decision reserved in the hints."""

    hints: AddressHints
    held: list[tuple[str, AddressHint, int]] = field(default_factory=list)

    def add(self, subnet_id: str, hint: AddressHint, address: int) -> None:
        self.held.append((subnet_id, hint, address))

    def committed(self) -> None:
        for _, hint, address in self.held:
            hint.commit(address)
        self.held.clear()

    def lost(self) -> None:
        for subnet_id, hint, address in self.held:
            hint.cancel(address)
            self.hints.lost_race(subnet_id, address)
        self.held.clear()
