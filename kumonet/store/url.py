"""Open a store from a URL, the one place that knows every backend.

* ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db``
  (SQLAlchemy's convention: the path is what follows ``sqlite:///``);
* ``sqlite:///:memory:`` for a throw-away store (tests);
* SQLite options as query parameters: ``?history_limit=100000&max_batch=512``;
* ``etcd://h1:p1,h2:p2,...`` for an etcd cluster (see ``kumonet.store.etcd``).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from kumonet.store.contract import Store

_SQLITE = "sqlite:///"
_SQLITE_OPTIONS = frozenset(("history_limit", "max_batch"))


async def open_store(url: str) -> Store:
    """Open the store ``url`` names; :class:`ValueError` for a URL no backend
    understands."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ValueError(f"not a store URL (expected scheme://...): {url!r}")
    if scheme == "sqlite":
        return await _open_sqlite(url)
    if scheme == "etcd":
        from kumonet.store.etcd import EtcdStore

        return await EtcdStore.open(url)
    raise ValueError(
        f"unknown store URL scheme {scheme!r} in {url!r};"
        " supported: sqlite:///PATH, etcd://HOST:PORT,..."
    )


async def _open_sqlite(url: str) -> Store:
    from kumonet.store.sqlite import DEFAULT_HISTORY_LIMIT, DEFAULT_MAX_BATCH, SqliteStore

    if not url.startswith(_SQLITE):
        raise ValueError(
            f"a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path, not {url!r}"
        )
    path, _, query = url[len(_SQLITE) :].partition("?")
    if not path:
        raise ValueError(f"a SQLite URL needs a path: {url!r}")
    options: dict[str, int] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if name not in _SQLITE_OPTIONS:
            raise ValueError(f"unknown SQLite store option {name!r} in {url!r}")
        try:
            options[name] = int(value)
        except ValueError:
            raise ValueError(
                f"SQLite store option {name} needs an integer, not {value!r}"
            ) from None
    return await SqliteStore.open(
        path,
        history_limit=options.get("history_limit", DEFAULT_HISTORY_LIMIT),
        max_batch=options.get("max_batch", DEFAULT_MAX_BATCH),
    )
