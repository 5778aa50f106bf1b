from __future__ import annotations

import random
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
        hint = await hints.for_subnet(SUBNET)  # the lost address is re-checked
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


BIG = {"id": "s2", "allocation_pools": [{"start": "10.0.1.2", "end": "10.0.1.200"}]}


async def test_losing_a_race_spreads_the_next_picks_for_a_while(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/i.db")
    now = [100.0]
    try:
        hints = AddressHints(store, rng=random.Random(7), clock=lambda: now[0])
        hint = await hints.for_subnet(BIG)
        # Uncontended: exactly the lowest free address, one after the other.
        assert [hints.reserve("s2", hint) for _ in range(3)] == [
            0x0A000102, 0x0A000103, 0x0A000104,
        ]
        lost = Reservations(hints)
        lost.add("s2", hint, 0x0A000105)
        lost.lost()
        hint = await hints.for_subnet(BIG)
        picks = {hints.reserve("s2", hint) for _ in range(8)}
        # Spread over the lowest free addresses (16, wider with more in flight).
        assert len(picks) == 8
        assert all(p is not None and 0x0A000105 <= p < 0x0A000105 + 48 for p in picks)
        assert picks != set(range(0x0A000105, 0x0A000105 + 8))  # not simply in order
        now[0] += 10  # contention is over: back to the lowest free address
        assert hints.reserve("s2", hint) not in picks
    finally:
        await store.close()
