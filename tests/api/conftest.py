"""An in-process kumonet API on loopback over a real SQLite store file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from kumonet.api.auth import NoAuth
from kumonet.api.config import ServerConfig, load_config
from kumonet.api.main import make_app
from kumonet.store.url import open_store

ML2_INI = """
[DEFAULT]
global_physnet_mtu = 1500
[ml2]
type_drivers = flat,vlan,vxlan,gre
tenant_network_types = vxlan,vlan
[ml2_type_flat]
flat_networks = extnet,physnet1
[ml2_type_vlan]
network_vlan_ranges = physnet1:100:102,physnet2
[ml2_type_vxlan]
vni_ranges = 1:3,10:11
[ml2_type_gre]
tunnel_id_ranges = 1:100
"""


class Api:
    """A client speaking as a project (or as the noauth admin)."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client

    @staticmethod
    def headers(project: str | None, roles: str = "member") -> dict[str, str]:
        if project is None:
            return {}
        return {"X-Project-Id": project, "X-User-Id": "user-" + project, "X-Roles": roles}

    async def call(self, method: str, path: str, body: Any = None, *,
                   project: str | None = None, roles: str = "member",
                   raw: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        all_headers = {"Content-Type": "application/json", **self.headers(project, roles),
                       **(headers or {})}
        async with self.client.request(method, path, data=data, headers=all_headers) as resp:
            text = await resp.read()
            return resp.status, (orjson.loads(text) if text else None)

    async def create(self, collection: str, member: str, project: str | None = None,
                     **attrs: Any) -> dict[str, Any]:
        status, body = await self.call("POST", f"/v2.0/{collection}", {member: attrs},
                                       project=project)
        assert status == 201, body
        result: dict[str, Any] = body[member]
        return result


async def start_api(store_url: str, config: ServerConfig) -> tuple[Api, Any]:
    store = await open_store(store_url)
    app = make_app(store, config, NoAuth())
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return Api(client), store


@pytest.fixture
def server_config(tmp_path: Path) -> ServerConfig:
    ini = tmp_path / "kumonet.ini"
    ini.write_text(ML2_INI)
    return load_config(ini)


@pytest.fixture
async def api(tmp_path: Path, server_config: ServerConfig) -> AsyncIterator[Api]:
    client, store = await start_api(f"sqlite:///{tmp_path}/store.db", server_config)
    try:
        yield client
    finally:
        await client.client.close()
        await store.close()
