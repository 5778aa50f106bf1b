"""Host registration and leases on a real (in-memory SQLite) store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kumonet.api.config import ServerConfig
from kumonet.api.context import ApiContext
from kumonet.api.hosts import HostNotRegistered, HostRegistry, alive_key, host_key
from kumonet.model.agent import parse_host_facts
from kumonet.store.contract import Store
from kumonet.store.url import open_store


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    opened = await open_store("sqlite:///:memory:")
    try:
        yield opened
    finally:
        await opened.close()


def _registry(store: Store, server_config: ServerConfig) -> HostRegistry:
    return HostRegistry(ApiContext(store=store, config=server_config))


async def test_re_registration_keeps_a_live_lease(store: Store,
                                                  server_config: ServerConfig) -> None:
    hosts = _registry(store, server_config)
    first = await hosts.register(parse_host_facts("h1", {"heartbeat_interval": 10}))
    again = await hosts.register(parse_host_facts("h1", {"heartbeat_interval": 10}))
    assert again["lease_id"] == first["lease_id"]
    assert again["created_at"] == first["created_at"]
    # A new interval means a new TTL, so a new lease.
    changed = await hosts.register(parse_host_facts("h1", {"heartbeat_interval": 20}))
    assert changed["lease_id"] != first["lease_id"]
    kv = await store.get(alive_key("h1"))
    assert kv is not None and kv.lease == changed["lease_id"]
    assert await hosts.heartbeat("h1") == 60


async def test_heartbeat_after_expiry_asks_to_register(store: Store,
                                                       server_config: ServerConfig) -> None:
    hosts = _registry(store, server_config)
    record = await hosts.register(parse_host_facts("h1", {}))
    await store.revoke_lease(record["lease_id"])
    assert await store.get(alive_key("h1")) is None
    assert await store.get(host_key("h1")) is not None
    with pytest.raises(HostNotRegistered):
        await hosts.heartbeat("h1")
    with pytest.raises(HostNotRegistered):
        await hosts.heartbeat("never-registered")
    assert await hosts.alive_hosts() == set()


async def test_another_servers_registration_is_found(store: Store,
                                                     server_config: ServerConfig) -> None:
    one, two = _registry(store, server_config), _registry(store, server_config)
    await one.register(parse_host_facts("h1", {}))
    await two.heartbeat("h1")
    old = await one.record("h1")
    assert old is not None
    await store.revoke_lease(old["lease_id"])
    # The host re-registers through the second server: the first one
    # follows the record to the new lease.
    await two.register(parse_host_facts("h1", {}))
    assert await one.heartbeat("h1") == 90
    assert await one.alive_hosts() == {"h1"}
    # A deleted host is asked to register again.
    await store.delete(host_key("h1"))
    with pytest.raises(HostNotRegistered):
        await two.heartbeat("h1")
