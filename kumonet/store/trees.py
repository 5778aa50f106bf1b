"""Where things live in the store.

Two trees, as in the seeds' datastore: ``config`` holds intent (written by the
API), ``operational`` holds state (written by agents, usually under leases).
The second path element names the *shard* (seed 000's module-shards.conf):
a subtree that can be mapped to its own store cluster.

    /config/neutron/networks/<id>          a Neutron network (JSON)
    /config/neutron/ipam/<subnet>/<ip>     an allocated address -> port id
    /operational/topology/hosts/<host>     a live host (leased)
"""

from __future__ import annotations

from enum import Enum


class Tree(Enum):
    CONFIG = "config"
    OPERATIONAL = "operational"


SHARDS = ("default", "topology", "inventory", "neutron")


def prefix(tree: Tree, shard: str, *parts: str) -> str:
    """The key prefix of a subtree, ending in ``/``."""
    if shard not in SHARDS:
        raise ValueError(f"unknown shard {shard!r}")
    path = "/".join((tree.value, shard, *parts))
    return f"/{path}/"


def key(tree: Tree, shard: str, *parts: str) -> str:
    """The key of one item; the last part is the item's name."""
    if not parts:
        raise ValueError("a key needs at least one part below the shard")
    return prefix(tree, shard, *parts[:-1]) + parts[-1]


def shard_of(store_key: str) -> str:
    """The shard a key belongs to (``default`` for keys outside both trees)."""
    parts = store_key.split("/", 3)
    if len(parts) >= 3 and parts[1] in {t.value for t in Tree} and parts[2] in SHARDS:
        return parts[2]
    return "default"
