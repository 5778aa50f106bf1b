from __future__ import annotations

from pathlib import Path

import pytest

from kumonet.api.neutron.guard import deletion_guard, guard_key, wait_while_guarded
from kumonet.model.errors import ServiceUnavailable
from kumonet.store.contract import Put
from kumonet.store.url import open_store


async def test_guard_is_held_inside_and_gone_after_even_on_error(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/g.db")
    try:
        with pytest.raises(RuntimeError):
            async with deletion_guard(store, "net1") as guard:
                assert guard.key == guard_key("net1")
                await guard.check_held(store)
                assert await store.get(guard.key) is not None
                assert not await wait_while_guarded(store, "net1", attempts=2)
                raise RuntimeError("the delete failed")
        assert await store.get(guard_key("net1")) is None
        assert await wait_while_guarded(store, "net1", attempts=1)
    finally:
        await store.close()


async def test_a_guard_whose_lease_ended_is_no_longer_held(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/g.db")
    try:
        async with deletion_guard(store, "net1") as guard:
            await store.delete(guard.key)  # as the lease's expiry would
            with pytest.raises(ServiceUnavailable):
                await guard.check_held(store)
            result = await store.txn([guard.held()], [Put("/x", b"1")])
            assert not result.succeeded
    finally:
        await store.close()
