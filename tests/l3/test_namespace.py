"""RouterNamespace on a real namespace with dummy interfaces: reads, diffs, nftables."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from kumonet.l3.command import run
from kumonet.l3.namespace import (
    RouterNamespace,
    delete_namespace,
    ensure_namespace,
    list_namespaces,
)
from kumonet.l3.plan import Address, Route
from tests.environment import needs

pytestmark = pytest.mark.lab


@pytest.fixture
async def ns() -> AsyncIterator[RouterNamespace]:
    needs(tools=("ip",))
    name = f"kl3ns{secrets.token_hex(3)}"
    assert await ensure_namespace(name)
    try:
        # A veth pair inside the namespace (no dummy module on this kernel).
        await run(["ip", "-n", name, "link", "add", "d0", "type", "veth", "peer", "name", "d1"])
        for dev in ("d0", "d1"):
            await run(["ip", "-n", name, "link", "set", dev, "up"])
        yield RouterNamespace(name)
    finally:
        await delete_namespace(name)
    assert name not in list_namespaces()


async def test_ensure_namespace_is_idempotent(ns: RouterNamespace) -> None:
    assert ns.name in list_namespaces()
    assert not await ensure_namespace(ns.name)
    links = await ns.links()
    assert links["lo"].up and links["d0"].up


async def test_sync_addresses_adds_removes_and_keeps(ns: RouterNamespace) -> None:
    a = Address("10.0.0.1/24", "d0")
    b = Address("10.0.1.1/24", "d1")
    vip = Address("10.0.2.1/32", "d1")
    added, removed = await ns.sync_addresses([a, b], devices=["d0", "d1"])
    assert added == {a, b} and removed == set()
    await ns.batch([f"addr add {vip.cidr} dev {vip.device}"])  # as keepalived would
    # keepalived's address is left alone; one not wanted goes.
    added, removed = await ns.sync_addresses([a], devices=["d0", "d1"], keep=[vip])
    assert added == set() and removed == {b}
    assert await ns.addresses() == {a, vip}
    # Without `keep`, it goes too; a second run changes nothing.
    await ns.sync_addresses([a], devices=["d0", "d1"])
    assert await ns.addresses() == {a}
    assert await ns.sync_addresses([a], devices=["d0", "d1"]) == (set(), set())


async def test_sync_routes(ns: RouterNamespace) -> None:
    await ns.sync_addresses([Address("10.0.0.1/24", "d0")], devices=["d0"])
    default = Route("0.0.0.0/0", "10.0.0.254", "d0")
    extra = Route("10.9.0.0/16", "10.0.0.9")
    added, removed = await ns.sync_routes([default, extra])
    assert len(added) == 2 and removed == set()
    assert {(r.destination, r.via) for r in await ns.routes()} == {
        ("0.0.0.0/0", "10.0.0.254"),
        ("10.9.0.0/16", "10.0.0.9"),
    }
    assert await ns.sync_routes([default, extra]) == (set(), set())
    added, removed = await ns.sync_routes([default])
    assert added == set() and {r.destination for r in removed} == {"10.9.0.0/16"}


async def test_nft_table_is_replaced_atomically(ns: RouterNamespace) -> None:
    assert await ns.nft_table() is None
    ruleset = (
        "table ip kumonet {\n\tchain c {\n\t\ttype filter hook prerouting priority raw;"
        " policy accept;\n\t\tip daddr 203.0.113.5 notrack ip daddr set 10.0.0.5\n\t}\n}\n"
    )
    await ns.replace_nft_table(ruleset)
    listed = await ns.nft_table()
    assert listed is not None and "ip daddr set 10.0.0.5" in listed
    await ns.replace_nft_table(ruleset.replace("10.0.0.5", "10.0.0.6"))
    listed = await ns.nft_table()
    assert listed is not None and "10.0.0.6" in listed and "10.0.0.5" not in listed
