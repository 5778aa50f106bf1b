"""open_store: SQLAlchemy-style SQLite URLs, and a clear refusal otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumonet.store.contract import Store
from kumonet.store.sqlite import SqliteStore
from kumonet.store.url import open_store


async def test_an_absolute_sqlite_path_has_four_slashes(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/a/store.db")
    try:
        assert isinstance(store, Store) and isinstance(store, SqliteStore)
        assert store.path == f"{tmp_path}/a/store.db"
        await store.put("/k", b"v")
    finally:
        await store.close()
    assert (tmp_path / "a" / "store.db").exists()


async def test_a_relative_sqlite_path_has_three_slashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///data/store.db")
    try:
        assert isinstance(store, SqliteStore) and store.path == "data/store.db"
        await store.put("/k", b"v")
    finally:
        await store.close()
    assert (tmp_path / "data" / "store.db").exists()


async def test_memory_and_options() -> None:
    store = await open_store("sqlite:///:memory:?history_limit=5&max_batch=8")
    try:
        for i in range(20):
            await store.put("/k", str(i).encode())
        kv = await store.get("/k")
        assert kv is not None and kv.version == 20
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "store.db",
        "sqlite://store.db",
        "sqlite:///",
        "sqlite:///:memory:?cache=shared",
        "sqlite:///:memory:?history_limit=many",
        "mysql://db/kumonet",
        "etcd//h1:2379",
    ],
)
async def test_urls_no_backend_understands_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        await open_store(url)
