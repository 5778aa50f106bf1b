"""Behaviour most resources share: ownership checks, new-resource fields,
plain updates and tag edits, each a re-runnable store transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from kumonet.api.context import ApiContext
from kumonet.api.identity import Identity
from kumonet.api.listing import SpecialFilters
from kumonet.api.neutron.resource import Visible, check_revision
from kumonet.api.repository import Repository, Resource, Stored
from kumonet.api.transaction import Plan, commit_with_retry
from kumonet.model.common import timestamp
from kumonet.model.errors import NotAuthorized, resource_not_found
from kumonet.model.resource import ResourceDefinition
from kumonet.store.contract import Delete, key_unchanged

# Checks a logic may run on an update: (old, new) -> raise to refuse.
UpdateCheck = Callable[[Resource, Resource], None]


class ResourceBase:
    """Owner-scoped resources: members see and change their project's."""

    special_filters: SpecialFilters = MappingProxyType({})
    # Neutron's revision of a new resource: 0, but 1 for those its create
    # touches again in the same request (a network's segment, a port's
    # binding, a router's and a group's own extensions).
    initial_revision = 1

    def __init__(self, context: ApiContext, definition: ResourceDefinition) -> None:
        self.context = context
        self.store = context.store
        self.definition = definition
        self.repository = Repository(context.store, definition)

    def bulk_concurrently(self, items: list[dict[str, Any]]) -> bool:
        return False

    async def visibility(self, identity: Identity) -> Visible:
        if identity.is_admin:
            return lambda _r: True
        project = identity.project_id
        return lambda r: r.get("tenant_id") == project

    async def presented(self, resources: list[Resource]) -> list[Resource]:
        return resources

    def now(self) -> str:
        return timestamp(self.context.clock())

    def new_resource(self, attrs: dict[str, Any]) -> Resource:
        now = self.now()
        resource: Resource = {"id": str(uuid.uuid4())}
        resource.update(attrs)
        resource.setdefault("tags", [])
        resource["created_at"] = resource["updated_at"] = now
        resource["revision_number"] = self.initial_revision
        return resource

    def changed(self, resource: Resource, changes: dict[str, Any]) -> Resource:
        new = dict(resource)
        new.update(changes)
        new["revision_number"] = resource.get("revision_number", 0) + 1
        new["updated_at"] = self.now()
        return new

    async def writable(self, identity: Identity, resource_id: str) -> Stored:
        """The stored resource if the caller may change it: 404 if they cannot
        see it, 403 if they see it but do not own it."""
        found = await self.repository.find(resource_id)
        if found is None or not (await self.visibility(identity))(found.resource):
            raise resource_not_found(self.definition.member, resource_id)
        if not identity.owns(found.resource):
            raise NotAuthorized(f"rule:update_{self.definition.member} is disallowed by policy")
        return found

    async def update_plain(self, identity: Identity, resource_id: str,
                           changes: dict[str, Any], expected_revision: int | None,
                           check: UpdateCheck | None = None) -> Resource:
        async def decide() -> Plan[Resource]:
            found = await self.writable(identity, resource_id)
            check_revision(found.resource, expected_revision)
            new = self.changed(found.resource, changes)
            if check is not None:
                check(found.resource, new)
            return Plan([key_unchanged(found.kv)], [self.repository.put(new)], new)

        return await commit_with_retry(self.store, decide)

    async def update(self, identity: Identity, resource_id: str, changes: dict[str, Any],
                     expected_revision: int | None) -> Resource:
        return await self.update_plain(identity, resource_id, changes, expected_revision)

    async def delete_plain(self, identity: Identity, resource_id: str,
                           expected_revision: int | None) -> None:
        async def decide() -> Plan[None]:
            found = await self.writable(identity, resource_id)
            check_revision(found.resource, expected_revision)
            return Plan([key_unchanged(found.kv)], [Delete(found.kv.key)], None)

        await commit_with_retry(self.store, decide)

    async def set_tags(self, identity: Identity, resource_id: str,
                       edit: Callable[[list[str]], list[str]]) -> Resource:
        async def decide() -> Plan[Resource]:
            found = await self.writable(identity, resource_id)
            tags = edit(list(found.resource.get("tags", [])))
            new = self.changed(found.resource, {"tags": tags})
            return Plan([key_unchanged(found.kv)], [self.repository.put(new)], new)

        return await commit_with_retry(self.store, decide)
