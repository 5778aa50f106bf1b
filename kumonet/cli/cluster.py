"""``kumonet cluster status``: the shard/replica table, from a server's
``/v1/cluster/status`` or straight from the store."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kumonet.cluster.status import ClusterStatus

DEFAULT_SERVER = "http://127.0.0.1:9696"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cluster = sub.add_parser("cluster", help="the controller cluster: shards and their replicas")
    groups = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND", required=True)
    status = groups.add_parser(
        "status",
        help="Raft state of every replica of every shard",
        description="Per shard and per replica: RaftState, Leader, CurrentTerm, CommitIndex,"
        " LastApplied, db size and health. Asks a kumonet-server (--server), or the store"
        " itself with --store URL or --shards FILE.",
    )
    source = status.add_mutually_exclusive_group()
    source.add_argument("--server", metavar="URL",
                        help=f"a kumonet-server (default {DEFAULT_SERVER})")  # fmt: skip
    source.add_argument("--store", metavar="URL", help="ask this store directly")
    source.add_argument("--shards", metavar="FILE", help="ask the stores of this shards file")
    status.add_argument("--token", default=os.environ.get("OS_AUTH_TOKEN"),
                        help="Keystone token for the server (default $OS_AUTH_TOKEN)")  # fmt: skip
    status.add_argument("--json", action="store_true", help="print the JSON document")
    status.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    from kumonet.cluster.status import ClusterStatus, format_table
    from kumonet.store.contract import StoreError

    try:
        if args.store or args.shards:
            status = asyncio.run(_from_store(args.store, args.shards))
        else:
            status = ClusterStatus.from_json(
                asyncio.run(_from_server(args.server or DEFAULT_SERVER, args.token))
            )
    except (OSError, ValueError, StoreError, _ServerError) as error:
        print(f"kumonet cluster status: {error}", file=sys.stderr)
        return 1
    print(json.dumps(status.as_json(), indent=2) if args.json else format_table(status))
    healthy = all(shard.has_majority for shard in status.shards)
    return 0 if healthy else 2


class _ServerError(Exception):
    pass


async def _from_server(server: str, token: str | None) -> dict[str, object]:
    import aiohttp

    headers = {"X-Auth-Token": token} if token else {}
    timeout = aiohttp.ClientTimeout(total=10)
    url = server.rstrip("/") + "/v1/cluster/status"
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers=headers) as response,
        ):
            if response.status != 200:
                raise _ServerError(f"{url} answered {response.status}: {await response.text()}")
            document: dict[str, object] = await response.json()
            return document
    except aiohttp.ClientError as error:
        raise _ServerError(f"{url}: {error}") from error


async def _from_store(url: str | None, shards_file: str | None) -> ClusterStatus:
    from kumonet.cluster.shards import ShardedStore, ShardMap
    from kumonet.cluster.status import collect_status

    shard_map = ShardMap.load(shards_file) if shards_file else ShardMap.single(url or "")
    store = await ShardedStore.open(shard_map)
    try:
        return await collect_status(store)
    finally:
        await store.close()
