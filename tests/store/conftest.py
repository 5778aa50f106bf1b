"""The backends the store contract suite runs against.

Each :class:`Backend` opens an *empty* store for one test; the tests in
``test_contract.py`` use only the :class:`~kumonet.store.contract.Store`
protocol and the ``store``, ``backend`` and ``ns`` fixtures. To run the suite
against another backend, append a ``Backend`` to ``BACKENDS`` (with its
pytest marks, e.g. ``pytest.mark.etcd``); no test changes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from kumonet.store.contract import Store
from kumonet.store.etcd import EtcdStore
from kumonet.store.sqlite import SqliteStore
from tests.cluster.etcd_cluster import EtcdCluster, running_cluster


@dataclass(frozen=True)
class Backend:
    name: str
    # Opens an empty store for one test. It gets the test's request so that it
    # can use other fixtures (tmp_path, a session-wide cluster, finalizers).
    open: Callable[[pytest.FixtureRequest], Awaitable[Store]]
    # The store is new for every test, so it starts at revision 1. A backend
    # sharing one cluster between tests says False: the tests then only rely
    # on revisions relative to what they read first.
    fresh: bool = True
    # Watch events carry prev_value (the contract makes it optional).
    keeps_prev_value: bool = True
    marks: tuple[pytest.MarkDecorator, ...] = ()


async def _open_sqlite(request: pytest.FixtureRequest) -> Store:
    tmp_path = request.getfixturevalue("tmp_path")
    return await SqliteStore.open(tmp_path / "store.db")


@pytest.fixture(scope="session")
def contract_etcd() -> Iterator[EtcdCluster]:
    """One 3-member etcd cluster for the whole contract suite (starting one
    per test would take most of the run)."""
    with running_cluster(3, prefix="kumonet-contract-") as cluster:
        yield cluster


async def _open_etcd(request: pytest.FixtureRequest) -> Store:
    cluster: EtcdCluster = request.getfixturevalue("contract_etcd")
    return await EtcdStore.open(cluster.url)


BACKENDS: tuple[Backend, ...] = (
    Backend("sqlite", _open_sqlite),
    Backend("etcd", _open_etcd, fresh=False, marks=(pytest.mark.etcd,)),
)


@pytest.fixture(params=[pytest.param(b, id=b.name, marks=b.marks) for b in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    param: Backend = request.param
    return param


@pytest.fixture
async def store(backend: Backend, request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    opened = await backend.open(request)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def ns() -> str:
    """A key prefix of this test's own, so that tests stay independent on a
    backend shared between tests."""
    return f"/test-{uuid.uuid4().hex[:12]}/"
