"""Majority loss as a server shows it: 503s that say what happened, and GET
requests served from a live member flagged as possibly stale. Real etcd."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kumonet.cluster.availability import (
    STALE_HEADER,
    SUSPENDED_MAYBE_APPLIED,
    SUSPENDED_READ,
    SUSPENDED_WRITE,
    StaleReadStore,
    stale_reads_middleware,
    unavailable_answer,
)
from kumonet.cluster.status import collect_status
from kumonet.store.contract import Store, StoreUnavailable
from kumonet.store.etcd import EtcdStore
from tests.cluster.etcd_cluster import EtcdCluster, running_cluster

HANG_GUARD = 30.0  # seconds; a guard against hanging, never an expectation


@pytest.mark.parametrize(
    ("method", "indeterminate", "message"),
    [
        ("GET", False, SUSPENDED_READ),
        ("POST", False, SUSPENDED_WRITE),
        ("PUT", True, SUSPENDED_MAYBE_APPLIED),
        ("DELETE", False, SUSPENDED_WRITE),
    ],
)
def test_the_503_says_what_happened_to_the_request(
    method: str, indeterminate: bool, message: str
) -> None:
    answer = unavailable_answer(
        StoreUnavailable("etcd write: 127.0.0.1:2379 no leader", indeterminate=indeterminate),
        method,
    )
    assert answer.status == 503
    assert answer.body == {
        "NeutronError": {"type": "ServiceUnavailable", "message": message, "detail": ""}
    }
    assert "127.0.0.1" not in str(answer.body)  # addresses are for the log
    assert answer.headers["Retry-After"].isdigit()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def answer_503(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What the API's error handling does with StoreUnavailable."""
    try:
        return await handler(request)
    except StoreUnavailable as error:
        answer = unavailable_answer(error, request.method)
        return web.json_response(answer.body, status=answer.status, headers=answer.headers)


def make_app(store: StaleReadStore) -> web.Application:
    async def read(request: web.Request) -> web.Response:
        kv = await store.get("/config/neutron/networks/n1")
        listed = await store.range("/config/neutron/")
        return web.json_response(
            {"value": kv.value.decode() if kv else None, "count": len(listed.kvs)}
        )

    async def write(request: web.Request) -> web.Response:
        kv = await store.get("/config/neutron/networks/n1")  # decides on a read
        assert kv is not None
        await store.put("/config/neutron/networks/n1", b"changed")
        return web.json_response({}, status=201)

    app = web.Application(middlewares=[answer_503, stale_reads_middleware])
    app.router.add_get("/read", read)
    app.router.add_post("/write", write)
    return app


@pytest.fixture
def cluster() -> Iterator[EtcdCluster]:
    with running_cluster(3, prefix="kumonet-avail-") as running:
        yield running


@pytest.mark.etcd
async def test_majority_loss_503s_writes_and_flags_reads_as_stale(cluster: EtcdCluster) -> None:
    store = StaleReadStore(await EtcdStore.open(cluster.url))
    assert isinstance(store, Store)
    async with TestClient(TestServer(make_app(store))) as client:
        await store.put("/config/neutron/networks/n1", b"net")
        fresh = await client.get("/read")
        assert fresh.status == 200 and STALE_HEADER not in fresh.headers
        assert await fresh.json() == {"value": "net", "count": 1}

        cluster.kill("member-1")
        cluster.kill("member-2")
        async with asyncio.timeout(HANG_GUARD):
            stale = await client.get("/read")
            write = await client.post("/write")
        assert stale.status == 200
        assert stale.headers[STALE_HEADER] == "true"
        assert "Stale" in stale.headers["Warning"]
        assert await stale.json() == {"value": "net", "count": 1}
        # A write's own reads are never served stale: it fails as a whole.
        assert write.status == 503
        assert (await write.json())["NeutronError"]["message"] in (
            SUSPENDED_WRITE,
            SUSPENDED_READ,
        )
        assert (await collect_status(store)).shard("default").has_majority is False

        cluster.start("member-1")
        cluster.start("member-2")
        cluster.wait_healthy()
        async with asyncio.timeout(HANG_GUARD):
            back = await client.get("/read")
        assert back.status == 200 and STALE_HEADER not in back.headers
        assert (await client.post("/write")).status == 201
    await store.close()


@pytest.mark.etcd
async def test_with_no_member_left_reads_503_too(cluster: EtcdCluster) -> None:
    store = StaleReadStore(await EtcdStore.open(cluster.url))
    async with TestClient(TestServer(make_app(store))) as client:
        for member in cluster.members:
            cluster.kill(member.name)
        async with asyncio.timeout(HANG_GUARD):
            response = await client.get("/read")
        assert response.status == 503
        assert (await response.json())["NeutronError"]["message"] == SUSPENDED_READ
    await store.close()
