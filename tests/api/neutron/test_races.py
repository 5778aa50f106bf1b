"""Deletes racing creates: whatever wins, the store is left consistent (no
port on a deleted network, no address on a deleted subnet, no orphan
allocation keys)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from kumonet.api.auth import NoAuth
from kumonet.api.config import ServerConfig
from kumonet.api.main import make_app
from kumonet.store.contract import Store
from kumonet.store.url import open_store
from tests.api.conftest import Api

P1 = "11111111111111111111111111111111"


async def _check_consistent(store: Store) -> None:
    def load(prefix: str) -> dict[str, Any]:
        return {kv.key.rsplit("/", 1)[1]: orjson.loads(kv.value) for kv in kvs[prefix]}

    kvs = {p: (await store.range(f"/config/neutron/{p}/")).kvs
           for p in ("networks", "subnets", "ports")}
    networks, subnets, ports = load("networks"), load("subnets"), load("ports")
    ipam = {kv.key.split("/")[-2:][0] + "/" + kv.key.rsplit("/", 1)[1]: kv.value.decode()
            for kv in (await store.range("/config/neutron/ipam/")).kvs}
    macs = {kv.key.rsplit("/", 1)[1]: kv.value.decode()
            for kv in (await store.range("/config/neutron/macs/")).kvs}
    for port_id, port in ports.items():
        assert port["network_id"] in networks
        assert macs.get(port["mac_address"]) == port_id
        for ip in port["fixed_ips"]:
            assert ip["subnet_id"] in subnets
            assert ipam[f"{ip['subnet_id']}/{ip['ip_address']}"] == port_id
    assert set(ipam.values()) <= set(ports)
    assert set(macs.values()) <= set(ports)
    for subnet_id, subnet in subnets.items():
        assert subnet_id in networks[subnet["network_id"]]["subnets"]
    assert not (await store.range("/config/neutron/deleting/")).kvs


@pytest.mark.parametrize("what", ["network", "subnet"])
async def test_delete_racing_port_creates(tmp_path: Path, server_config: ServerConfig,
                                          what: str) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/race.db")
    clients: list[Api] = []
    try:
        for _ in range(2):
            client: TestClient[Any, Any] = TestClient(TestServer(
                make_app(store, server_config, NoAuth()), host="127.0.0.1"))
            await client.start_server()
            clients.append(Api(client))
        outcomes: list[int] = []
        for round_ in range(16):
            net = await clients[0].create("networks", "network", tenant_id=P1,
                                          **{"provider:network_type": "gre"})
            sub = await clients[0].create("subnets", "subnet", project=P1,
                                          network_id=net["id"], ip_version=4,
                                          cidr=f"10.{round_}.0.0/24")

            async def create(i: int, network_id: str = net["id"]) -> int:
                status, _ = await clients[i % 2].call(
                    "POST", "/v2.0/ports", {"port": {"network_id": network_id}}, project=P1)
                return status

            async def delete(net: dict[str, Any] = net, sub: dict[str, Any] = sub,
                             delay: float = 0.0002 * round_) -> int:
                await asyncio.sleep(delay)
                path = f"/v2.0/networks/{net['id']}" if what == "network" \
                    else f"/v2.0/subnets/{sub['id']}"
                status, _ = await clients[1].call("DELETE", path, project=P1)
                return status

            results = await asyncio.gather(delete(), *(create(i) for i in range(12)))
            assert results[0] in (204, 409)
            assert set(results[1:]) <= {201, 404}
            if what == "network":
                # Any port committed first keeps the network in use; once the
                # delete has begun, creates wait for it and find no network.
                assert set(results[1:]) == ({404} if results[0] == 204 else {201})
            outcomes.append(results[0])
            await _check_consistent(store)
        assert len(outcomes) == 16  # which side wins each round is timing
    finally:
        for api in clients:
            await api.client.close()
        await store.close()
