"""This server's address hints, one per subnet, and the reservations one
request makes: committed to the hint when its transaction commits,
cancelled (and the hint re-synced from the store) when it loses a race."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from kumonet.api.repository import neutron_key, neutron_prefix
from kumonet.model.ipam import AddressHint
from kumonet.model.subnet import pools_from_json
from kumonet.store.contract import Store


def ipam_key(subnet_id: str, address: str) -> str:
    return neutron_key("ipam", subnet_id, address)


class AddressHints:
    """Per-server cache; never the source of truth (see kumonet.model.ipam)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._hints: dict[str, AddressHint] = {}
        self._stale: set[str] = set()

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
            hint.replace_committed(await self._taken(subnet_id))
        return hint

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
            self.hints.mark_stale(subnet_id)
        self.held.clear()
