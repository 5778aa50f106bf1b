from __future__ import annotations

import random

from kumonet.model.ipam import AddressHint, Pool, eui64_address, pool_overlap, random_mac


def test_hint_hands_out_lowest_free_and_reuses_released() -> None:
    hint = AddressHint([Pool(10, 12), Pool(20, 21)], committed=[11])
    assert hint.reserve_lowest() == 10
    assert hint.reserve_lowest() == 12
    assert hint.reserve_lowest() == 20
    hint.cancel(12)  # lost its race: free again, and lowest
    assert hint.reserve_lowest() == 12
    for address in (10, 12, 20):
        hint.commit(address)
    assert hint.reserve_lowest() == 21
    assert hint.reserve_lowest() is None
    hint.release(11)
    assert hint.reserve_lowest() == 11
    # Re-synced from a store that only has 10: 11 and 21 are still pending
    # here, 12 and 20 were freed elsewhere.
    hint.replace_committed([10])
    assert hint.is_taken(11) and hint.is_taken(21)
    assert hint.reserve_lowest() == 12


def test_pool_overlap() -> None:
    assert pool_overlap([Pool(1, 5), Pool(6, 9)]) is None
    assert pool_overlap([Pool(6, 9), Pool(1, 6)]) == (Pool(1, 6), Pool(6, 9))


def test_random_mac_keeps_base_prefix() -> None:
    rng = random.Random(1)
    mac = random_mac("fa:16:3e:00:00:00", rng)
    assert mac.startswith("fa:16:3e:") and len(mac) == 17
    assert random_mac("fa:16:3e:4a:00:00", rng).startswith("fa:16:3e:4a:")


def test_eui64() -> None:
    assert eui64_address("2001:db8::/64", "fa:16:3e:11:22:33") == "2001:db8::f816:3eff:fe11:2233"
