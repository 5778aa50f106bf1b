from __future__ import annotations

from pathlib import Path

import pytest

from kumonet.api.transaction import Plan, commit_with_retry
from kumonet.model.errors import Conflict, ServiceUnavailable
from kumonet.store.contract import Put, key_unchanged
from kumonet.store.url import open_store


async def test_reruns_on_conflict_until_compares_hold(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/t.db")
    try:
        await store.put("/k", b"0")
        runs = 0
        conflicts = 0

        async def decide() -> Plan[int]:
            nonlocal runs
            runs += 1
            kv = await store.get("/k")
            assert kv is not None
            if runs == 1:
                await store.put("/k", b"5")  # a concurrent writer wins the first race
            value = int(kv.value) + 1

            def lost() -> None:
                nonlocal conflicts
                conflicts += 1

            return Plan([key_unchanged(kv)], [Put("/k", str(value).encode())], value,
                        on_conflict=lost)

        assert await commit_with_retry(store, decide) == 6
        assert runs == 2 and conflicts == 1

        async def refuse() -> Plan[None]:
            raise Conflict("no")

        with pytest.raises(Conflict):
            await commit_with_retry(store, refuse)

        async def always_stale() -> Plan[None]:
            kv = await store.get("/k")
            assert kv is not None
            await store.put("/k", b"x")
            return Plan([key_unchanged(kv)], [Put("/k", b"y")], None)

        with pytest.raises(ServiceUnavailable):
            await commit_with_retry(store, always_stale, attempts=3)
    finally:
        await store.close()
