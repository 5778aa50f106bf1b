from __future__ import annotations

from pathlib import Path

from kumonet.api.ipam import AddressHints, Reservations, ipam_key
from kumonet.store.url import open_store

SUBNET = {"id": "s1", "allocation_pools": [{"start": "10.0.0.2", "end": "10.0.0.5"}]}


async def test_hints_follow_the_store_when_told(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/i.db")
    try:
        await store.put(ipam_key("s1", "10.0.0.2"), b"p0")
        hints = AddressHints(store)
        hint = await hints.for_subnet(SUBNET)
        lost = Reservations(hints)
        first = hint.reserve_lowest()
        assert first is not None and first & 0xFF == 3
        lost.add("s1", hint, first)
        # another server took .3 meanwhile; this request lost its race
        await store.put(ipam_key("s1", "10.0.0.3"), b"other")
        lost.lost()
        hint = await hints.for_subnet(SUBNET)  # re-read because marked stale
        won = Reservations(hints)
        second = hint.reserve_lowest()
        assert second is not None and second & 0xFF == 4
        won.add("s1", hint, second)
        won.committed()
        assert hint.is_taken(second) and not hint.pending
        hints.released("s1", "10.0.0.2")
        assert hint.reserve_lowest() is not None
        hints.forget("s1")
        assert (await hints.for_subnet(SUBNET)) is not hint
    finally:
        await store.close()
