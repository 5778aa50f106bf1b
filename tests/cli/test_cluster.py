"""``kumonet cluster status`` against a real 3-member etcd cluster, read
straight from the store and through a server's /v1/cluster/status."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from kumonet.cli.main import main
from kumonet.cluster.http import ClusterStatusRoutes
from kumonet.store.etcd import EtcdStore
from tests.cluster.etcd_cluster import EtcdCluster, free_port, running_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    with running_cluster(3, prefix="kumonet-cli-") as running:
        yield running


def table_rows(output: str) -> list[list[str]]:
    lines = output.strip().splitlines()
    assert lines[0].split()[:4] == ["SHARD", "MEMBER", "ENDPOINT", "RAFT"]
    return [line.split() for line in lines[1:]]


@pytest.mark.etcd
def test_status_from_the_store_prints_every_shard_and_replica(
    cluster: EtcdCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cluster", "status", "--store", cluster.url]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert len(rows) == 12  # 4 shards x 3 replicas
    leader = cluster.leader()
    for row in rows:
        shard, member, endpoint, state, leader_name = row[:5]
        shard = shard.removesuffix("=default")
        assert endpoint in cluster.endpoints
        assert state == ("Leader" if member == leader else "Follower")
        assert leader_name == f"{leader}-shard-{shard}-config"
        assert row[-1] == "healthy"


@pytest.mark.etcd
def test_status_as_json_and_from_a_shards_file(
    cluster: EtcdCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shards = tmp_path / "shards.conf"
    shards.write_text(f"[shard default]\nstore = {cluster.url}\nreplicas = a, b, c\n")
    assert main(["cluster", "status", "--shards", str(shards), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [r["member"] for r in document["shards"][0]["replicas"]] == ["a", "b", "c"]


@pytest.mark.etcd
async def test_status_through_a_server(
    cluster: EtcdCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    store = await EtcdStore.open(cluster.url)
    app = web.Application()
    ClusterStatusRoutes(store).add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        code = await asyncio.to_thread(
            main, ["cluster", "status", "--server", f"http://127.0.0.1:{port}"]
        )
    finally:
        await runner.cleanup()
        await store.close()
    assert code == 0
    assert len(table_rows(capsys.readouterr().out)) == 12


def test_an_unreachable_server_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["cluster", "status", "--server", f"http://127.0.0.1:{port}"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("kumonet cluster status: ") and error.count("\n") == 1
