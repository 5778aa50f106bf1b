"""The status routes over HTTP against a real 3-member etcd cluster: the
JSON document and the Jolokia read path in the shape of seed 000's curl."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kumonet.api.config import load_config
from kumonet.cluster.http import ClusterStatusRoutes, parse_shard_mbean
from kumonet.store.etcd import EtcdStore
from tests.api.conftest import ML2_INI, start_api
from tests.cluster.etcd_cluster import EtcdCluster, running_cluster

MBEAN = "org.opendaylight.controller:Category=Shards,name={name},type=DistributedConfigDatastore"


def test_shard_mbean_names_are_parsed() -> None:
    assert parse_shard_mbean(MBEAN.format(name="member-1-shard-inventory-config")) == (
        "member-1-shard-inventory-config",
        "config",
    )
    shuffled = (
        "org.opendaylight.controller:type=DistributedOperationalDatastore,"
        "name=member-2-shard-default-operational,Category=Shards"
    )
    assert parse_shard_mbean(shuffled) == ("member-2-shard-default-operational", "operational")
    for other in [
        "java.lang:type=Memory",
        "org.opendaylight.controller:Category=Shards,type=DistributedConfigDatastore",
        "org.opendaylight.controller:Category=ShardManager,name=x,type=DistributedConfigDatastore",
        "org.opendaylight.controller:Category=Shards,name=x,type=Other",
    ]:
        assert parse_shard_mbean(other) is None


@pytest.fixture(scope="module")
def cluster() -> Iterator[EtcdCluster]:
    with running_cluster(3, prefix="kumonet-http-") as running:
        yield running


@pytest.fixture
async def client(cluster: EtcdCluster) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    store = await EtcdStore.open(cluster.url)
    app = web.Application()
    ClusterStatusRoutes(store).add_routes(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
    await store.close()


@pytest.mark.etcd
async def test_the_status_document_lists_every_shard(
    cluster: EtcdCluster, client: TestClient[web.Request, web.Application]
) -> None:
    response = await client.get("/v1/cluster/status")
    assert response.status == 200
    document = await response.json()
    assert [s["name"] for s in document["shards"]] == [
        "default",
        "topology",
        "inventory",
        "neutron",
    ]
    default = document["shards"][0]
    assert default["leader"] == f"{cluster.leader()}-shard-default-config"
    assert default["majority"] is True
    replica = default["replicas"][0]
    for field in ("RaftState", "Leader", "CurrentTerm", "CommitIndex", "LastApplied",
                  "PeerAddresses", "DbSize", "healthy"):  # fmt: skip
        assert field in replica
    assert isinstance(document["timestamp"], int)


@pytest.mark.etcd
async def test_jolokia_reads_the_leader_as_the_seed_shows(
    cluster: EtcdCluster, client: TestClient[web.Request, web.Application]
) -> None:
    leader = cluster.leader()
    name = f"{leader}-shard-inventory-config"
    response = await client.get("/jolokia/read/" + MBEAN.format(name=name))
    assert response.status == 200
    answer = await response.json()
    assert answer["request"] == {"mbean": MBEAN.format(name=name), "type": "read"}
    assert answer["status"] == 200
    assert isinstance(answer["timestamp"], int)
    value = answer["value"]
    assert value["RaftState"] == "Leader"
    assert value["Leader"] == value["ShardName"] == name
    assert value["CurrentTerm"] >= 2
    assert value["CommitIndex"] >= value["LastApplied"] > 0
    followers = [m for m in ("member-1", "member-2", "member-3") if m != leader]
    assert [f["id"] for f in value["FollowerInfo"]] == [
        f"{m}-shard-inventory-config" for m in followers
    ]
    assert all(f["active"] for f in value["FollowerInfo"])
    for member in followers:
        assert f"{member}-shard-inventory-config: 127.0.0.1:" in value["PeerAddresses"]


@pytest.mark.etcd
async def test_jolokia_reads_a_follower_and_one_attribute(
    cluster: EtcdCluster, client: TestClient[web.Request, web.Application]
) -> None:
    leader = cluster.leader()
    follower = next(m for m in ("member-1", "member-2", "member-3") if m != leader)
    mbean = MBEAN.format(name=f"{follower}-shard-neutron-config")
    value = (await (await client.get("/jolokia/read/" + mbean)).json())["value"]
    assert value["RaftState"] == "Follower"
    assert value["Leader"] == f"{leader}-shard-neutron-config"
    assert "FollowerInfo" not in value
    answer = await (await client.get(f"/jolokia/read/{mbean}/RaftState")).json()
    assert answer["value"] == "Follower"
    assert answer["request"]["attribute"] == "RaftState"


@pytest.mark.etcd
@pytest.mark.parametrize(
    "path",
    [
        MBEAN.format(name="member-9-shard-default-config"),
        MBEAN.format(name="member-1-shard-toaster-config"),
        "java.lang:type=Memory",
        MBEAN.format(name="member-1-shard-default-config") + "/NoSuchAttribute",
    ],
)
async def test_jolokia_answers_status_404_for_what_does_not_exist(
    client: TestClient[web.Request, web.Application], path: str
) -> None:
    response = await client.get("/jolokia/read/" + path)
    assert response.status == 200  # as Jolokia: the status is in the body
    answer = await response.json()
    assert answer["status"] == 404
    assert answer["error_type"].startswith("javax.management.")


@pytest.mark.etcd
async def test_the_server_app_serves_the_status_routes(
    cluster: EtcdCluster, tmp_path: Path
) -> None:
    ini = tmp_path / "kumonet.ini"
    ini.write_text(ML2_INI)
    api, store = await start_api(cluster.url, load_config(ini))
    try:
        status, body = await api.call("GET", "/v1/cluster/status")
        assert status == 200 and len(body["shards"]) == 4
        leader = f"{cluster.leader()}-shard-default-config"
        status, body = await api.call("GET", "/jolokia/read/" + MBEAN.format(name=leader))
        assert status == 200 and body["value"]["RaftState"] == "Leader"
    finally:
        await api.client.close()
        await store.close()
