"""IP address management, pure: pools as integer ranges, an in-process
hint of which addresses are taken, MAC and EUI-64 generation.

The hint only makes the common case cheap (no scan of thousands of store
keys per port): the store transaction's ``key_absent`` compare on
``ipam/<subnet>/<ip>`` is what guarantees an address is handed out once.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Pool:
    start: int
    end: int

    def to_text(self, version: int) -> str:
        return f"{self.to_json(version)['start']}-{self.to_json(version)['end']}"

    def to_json(self, version: int) -> dict[str, str]:
        make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        return {"start": str(make(self.start)), "end": str(make(self.end))}


def pool_overlap(pools: Iterable[Pool]) -> tuple[Pool, Pool] | None:
    ordered = sorted(pools)
    for a, b in itertools.pairwise(ordered):
        if b.start <= a.end:
            return a, b
    return None


class AddressHint:
    """Which addresses of one subnet's pools this server believes taken.

    ``committed`` mirrors the store (as last read, plus this server's own
    commits); ``pending`` holds addresses reserved by requests whose
    transaction is in flight, so concurrent requests in this process never
    pick the same address. ``cursor``: every pool address below it is taken
    (as far as the hint knows), which makes "lowest free" O(1) amortized for
    sequential allocations."""

    def __init__(self, pools: Iterable[Pool], committed: Iterable[int]) -> None:
        self.pools = sorted(pools)
        self.committed = set(committed)
        self.pending: set[int] = set()
        self.cursor = self.pools[0].start if self.pools else 0

    def is_taken(self, address: int) -> bool:
        return address in self.committed or address in self.pending

    def reserve_lowest(self, spread: int = 1, rng: random.Random | None = None) -> int | None:
        """Reserve the lowest free address; with ``spread`` > 1, a random one of
        the ``spread`` lowest free addresses (servers racing for one subnet then
        rarely pick the same address, as Neutron's IPAM does on every pick)."""
        if spread > 1 and rng is not None:
            candidates = self._lowest_free(spread)
            if not candidates:
                return None
            address = rng.choice(candidates)
            self.pending.add(address)
            return address
        for pool in self.pools:
            if pool.end < self.cursor:
                continue
            address = max(pool.start, self.cursor)
            while address <= pool.end:
                if not self.is_taken(address):
                    self.pending.add(address)
                    self.cursor = address + 1
                    return address
                address += 1
            self.cursor = pool.end + 1
        return None

    def _lowest_free(self, count: int) -> list[int]:
        found: list[int] = []
        for pool in self.pools:
            if pool.end < self.cursor:
                continue
            address = max(pool.start, self.cursor)
            while address <= pool.end and len(found) < count:
                if not self.is_taken(address):
                    found.append(address)
                address += 1
            if len(found) >= count:
                break
        return found

    def reserve(self, address: int) -> bool:
        if self.is_taken(address):
            return False
        self.pending.add(address)
        return True

    def commit(self, address: int) -> None:
        self.pending.discard(address)
        self.committed.add(address)

    def cancel(self, address: int) -> None:
        """A reservation whose transaction did not commit."""
        self.pending.discard(address)
        self.cursor = min(self.cursor, address)

    def release(self, address: int) -> None:
        """An address freed in the store."""
        self.committed.discard(address)
        self.cursor = min(self.cursor, address)

    def replace_committed(self, committed: Iterable[int]) -> None:
        """Re-sync with the store after losing a race."""
        self.committed = set(committed)
        self.cursor = self.pools[0].start if self.pools else 0


def random_mac(base_mac: str, rng: random.Random) -> str:
    """Neutron's scheme: the first three octets of ``base_mac`` are kept, the
    fourth too when it is not zero, the rest is random."""
    octets = base_mac.lower().split(":")
    fixed = 4 if octets[3] != "00" else 3
    tail = [f"{rng.randrange(256):02x}" for _ in range(6 - fixed)]
    return ":".join(octets[:fixed] + tail)


def eui64_address(cidr: str, mac: str) -> str:
    """The SLAAC address of ``mac`` in an IPv6 /64 (RFC 4291 appendix A)."""
    network = ipaddress.IPv6Network(cidr)
    octets = [int(o, 16) for o in mac.split(":")]
    octets[0] ^= 0x02
    interface = [*octets[:3], 255, 254, *octets[3:]]
    value = int.from_bytes(bytes(interface), "big")
    return str(ipaddress.IPv6Address(int(network.network_address) | value))
