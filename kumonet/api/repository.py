"""Resources in the store: ``/config/neutron/<collection>/<id>`` holds the
full (admin) view as JSON, so agents and other readers can use it as is."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from kumonet.model.errors import resource_not_found
from kumonet.model.resource import ResourceDefinition
from kumonet.store import trees
from kumonet.store.contract import Compare, KeyValue, Put, Store

Resource = dict[str, Any]
# Ids become key parts: anything else cannot name a stored resource.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")
Clock = Callable[[], datetime]


def neutron_key(*parts: str) -> str:
    return trees.key(trees.Tree.CONFIG, "neutron", *parts)


def neutron_prefix(*parts: str) -> str:
    return trees.prefix(trees.Tree.CONFIG, "neutron", *parts)


def encode(resource: Resource) -> bytes:
    return orjson.dumps(resource)


def still_exists(kv: KeyValue) -> Compare:
    """Holds while the key read is still the same incarnation (updates allowed)."""
    return Compare(kv.key, "create_revision", "==", kv.create_revision)


@dataclass(frozen=True, slots=True)
class Stored:
    resource: Resource
    kv: KeyValue


class Repository:
    """Reads and write-ops for one collection."""

    def __init__(self, store: Store, definition: ResourceDefinition) -> None:
        self.store = store
        self.definition = definition
        self.prefix = neutron_prefix(definition.collection)

    def key(self, resource_id: str) -> str:
        return self.prefix + resource_id

    async def find(self, resource_id: str) -> Stored | None:
        if not _SAFE_ID.match(resource_id):
            return None
        kv = await self.store.get(self.key(resource_id))
        if kv is None:
            return None
        return Stored(orjson.loads(kv.value), kv)

    async def get(self, resource_id: str) -> Stored:
        found = await self.find(resource_id)
        if found is None:
            raise resource_not_found(self.definition.member, resource_id)
        return found

    async def all(self) -> list[Resource]:
        result = await self.store.range(self.prefix)
        loads = orjson.loads
        return [loads(kv.value) for kv in result.kvs]

    def put(self, resource: Resource) -> Put:
        return Put(self.key(resource["id"]), encode(resource))
