from __future__ import annotations

from pathlib import Path

import pytest

from kumonet.api.neutron.guard import deletion_guard, guard_key, wait_while_guarded
from kumonet.store.url import open_store


async def test_guard_is_held_inside_and_gone_after_even_on_error(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/g.db")
    try:
        with pytest.raises(RuntimeError):
            async with deletion_guard(store, "net1") as key:
                assert key == guard_key("net1")
                assert await store.get(key) is not None
                assert not await wait_while_guarded(store, "net1", attempts=2)
                raise RuntimeError("the delete failed")
        assert await store.get(guard_key("net1")) is None
        assert await wait_while_guarded(store, "net1", attempts=1)
    finally:
        await store.close()
