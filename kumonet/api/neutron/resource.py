"""The generic HTTP side of a Neutron resource: list, show, create, update,
delete and the ``/tags`` subresource, for any :class:`ResourceLogic`.

The logic decides (what to store, what to refuse); this module parses the
request against the resource definition, applies policy to what is shown,
and renders Neutron's bodies and status codes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson
from aiohttp import web

from kumonet.api.identity import Identity
from kumonet.api.listing import SpecialFilters, apply_query, parse_query
from kumonet.api.repository import Repository, Resource
from kumonet.model import converters
from kumonet.model.errors import (
    BadRequest,
    Conflict,
    NotAuthorized,
    PreconditionFailed,
    resource_not_found,
)
from kumonet.model.resource import ResourceDefinition

Visible = Callable[[Resource], bool]
IDENTITY_KEY = web.RequestKey("kumonet.identity", Identity)
_IF_MATCH = re.compile(r"^\s*revision_number=(\d+)\s*$")


class ResourceLogic(Protocol):
    """What a resource module implements; the controller does the rest."""

    definition: ResourceDefinition
    repository: Repository
    special_filters: SpecialFilters

    def bulk_concurrently(self, items: list[dict[str, Any]]) -> bool:
        """Whether a bulk create may make these items concurrently (their
        store writes then share commits and agents see them in one watch
        batch) rather than one after the other, in order."""
        ...

    async def visibility(self, identity: Identity) -> Visible:
        """A predicate telling which stored resources the caller may see."""
        ...

    async def presented(self, resources: list[Resource]) -> list[Resource]:
        """The resources with the attributes computed at read time (a
        subnet's ``router:external`` is its network's)."""
        ...

    async def create(self, identity: Identity, attrs: dict[str, Any]) -> Resource: ...

    async def update(self, identity: Identity, resource_id: str, changes: dict[str, Any],
                     expected_revision: int | None) -> Resource: ...

    async def delete(self, identity: Identity, resource_id: str,
                     expected_revision: int | None) -> None: ...

    async def set_tags(self, identity: Identity, resource_id: str,
                       edit: Callable[[list[str]], list[str]]) -> Resource: ...


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status,
                        content_type="application/json")


def identity_of(request: web.Request) -> Identity:
    identity: Identity = request[IDENTITY_KEY]
    return identity


async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise BadRequest("Request body required", type_name="HTTPBadRequest")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("Body contains invalid data") from None  # Neutron's words


def expected_revision(request: web.Request) -> int | None:
    header = request.headers.get("If-Match")
    if header is None or "revision_number=" not in header:
        # Neutron acts only on revision constraints; other If-Match values
        # (ETags) are ignored.
        return None
    match = _IF_MATCH.match(header)
    if match is None:
        raise BadRequest(f"Invalid If-Match header {header!r}: expected revision_number=N")
    return int(match.group(1))


def check_revision(resource: Mapping[str, Any], expected: int | None) -> None:
    if expected is not None and resource.get("revision_number") != expected:
        raise PreconditionFailed(
            f"Constrained to {expected}, but current revision is "
            f"{resource.get('revision_number')}")


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


class ResourceController:
    """Routes for one collection, wired by the app factory."""

    def __init__(self, logic: ResourceLogic) -> None:
        self.logic = logic
        self.definition = logic.definition

    def add_routes(self, app: web.Application) -> None:
        base = f"/v2.0/{self.definition.path}"
        for suffix in ("", ".json"):
            app.router.add_get(base + suffix, self.list)
            app.router.add_post(base + suffix, self.create)
        app.router.add_put(base, self.member_missing)
        app.router.add_delete(base, self.member_missing)
        app.router.add_get(base + "/{id}", self.show)
        app.router.add_put(base + "/{id}", self.update)
        app.router.add_delete(base + "/{id}", self.delete)
        app.router.add_get(base + "/{id}/tags", self.get_tags)
        app.router.add_put(base + "/{id}/tags", self.replace_tags)
        app.router.add_delete(base + "/{id}/tags", self.delete_all_tags)
        app.router.add_get(base + "/{id}/tags/{tag}", self.check_tag)
        app.router.add_put(base + "/{id}/tags/{tag}", self.add_tag)
        app.router.add_delete(base + "/{id}/tags/{tag}", self.remove_tag)

    async def member_missing(self, request: web.Request) -> web.Response:
        """``PUT``/``DELETE`` on the collection: Neutron routes them to a
        member without id and answers that it does not exist."""
        raise resource_not_found(self.definition.member, "None")

    def _view(self, resource: Resource, identity: Identity) -> Resource:
        return self.definition.view(resource, is_admin=identity.is_admin,
                                    is_service=identity.is_service)

    async def _visible(self, identity: Identity, resource_id: str) -> Resource:
        found = await self.logic.repository.find(resource_id)
        if found is None or not (await self.logic.visibility(identity))(found.resource):
            raise resource_not_found(self.definition.member, resource_id)
        return found.resource

    async def list(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        params = {k: request.query.getall(k) for k in request.query}
        query = parse_query(self.definition, params, special=self.logic.special_filters)
        visible = await self.logic.visibility(identity)
        items = await self.logic.presented(
            [r for r in await self.logic.repository.all() if visible(r)])
        # Admins too see views only: stored resources keep keys for agents
        # (a router's interfaces) that are no attribute.
        items = [self._view(r, identity) for r in items]
        page = apply_query(items, query, collection=self.definition.path,
                           base_url=base_url(request), params=params,
                           member=self.definition.member)
        body: dict[str, Any] = {self.definition.collection: page.items}
        if page.links:
            body[f"{self.definition.collection}_links"] = page.links
        return json_response(body)

    async def show(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        found = await self._visible(identity, request.match_info["id"])
        resource = self._view((await self.logic.presented([found]))[0], identity)
        fields = [f for f in request.query.getall("fields", []) if f]
        if fields:
            resource = {f: resource[f] for f in fields if f in resource}
        return json_response({self.definition.member: resource})

    async def create(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        body = await read_json(request)
        member = self.definition.member
        if isinstance(body, dict) and f"{self.definition.collection}" in body and len(body) == 1:
            return await self._create_bulk(identity, body[self.definition.collection])
        attrs = self.definition.parse_create(body, is_admin=identity.is_admin,
                                             is_service=identity.is_service)
        resolve_project(attrs, identity, member)
        await self._refuse_taken_id(attrs)
        created = await self.logic.create(identity, attrs)
        created = (await self.logic.presented([created]))[0]
        return json_response({member: self._view(created, identity)}, status=201)

    async def _refuse_taken_id(self, attrs: dict[str, Any]) -> None:
        """A client-chosen id that exists is a conflict, not a lost race to
        re-run (the create's ``key_absent`` compare stays the real guard)."""
        if "id" in attrs and await self.logic.repository.find(attrs["id"]) is not None:
            raise Conflict(f"A {self.definition.member} with id {attrs['id']} already exists.")

    async def _create_bulk(self, identity: Identity, items: Any) -> web.Response:
        if not isinstance(items, list) or not items:
            raise BadRequest(f"Resources required with key '{self.definition.collection}'")
        # Validate everything before writing anything.
        parsed = []
        for item in items:
            attrs = self.definition.parse_create({self.definition.member: item},
                                                 is_admin=identity.is_admin,
                                                 is_service=identity.is_service)
            resolve_project(attrs, identity, self.definition.member)
            await self._refuse_taken_id(attrs)
            parsed.append(attrs)
        created: list[Resource] = []
        failure: BaseException | None = None
        if self.logic.bulk_concurrently(parsed):
            results = await asyncio.gather(
                *(self.logic.create(identity, attrs) for attrs in parsed), return_exceptions=True)
            created = [r for r in results if not isinstance(r, BaseException)]
            failure = next((r for r in results if isinstance(r, BaseException)), None)
        else:
            try:
                for attrs in parsed:
                    created.append(await self.logic.create(identity, attrs))
            except BaseException as error:
                failure = error
        if failure is not None:
            # Neutron's bulk create is all or nothing: undo what was made.
            for resource in reversed(created):
                await self.logic.delete(identity, resource["id"], None)
            raise failure
        created = await self.logic.presented(created)
        return json_response({self.definition.collection:
                              [self._view(c, identity) for c in created]}, status=201)

    async def update(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        resource_id = request.match_info["id"]
        body = await read_json(request)
        changes = self.definition.parse_update(body, is_admin=identity.is_admin,
                                               is_service=identity.is_service)
        updated = await self.logic.update(identity, resource_id, changes,
                                          expected_revision(request))
        updated = (await self.logic.presented([updated]))[0]
        return json_response({self.definition.member: self._view(updated, identity)})

    async def delete(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        await self.logic.delete(identity, request.match_info["id"], expected_revision(request))
        return web.Response(status=204)

    async def get_tags(self, request: web.Request) -> web.Response:
        resource = await self._visible(identity_of(request), request.match_info["id"])
        return json_response({"tags": resource.get("tags", [])})

    async def check_tag(self, request: web.Request) -> web.Response:
        resource = await self._visible(identity_of(request), request.match_info["id"])
        if request.match_info["tag"] not in resource.get("tags", []):
            raise resource_not_found("tag", request.match_info["tag"])
        return web.Response(status=204)

    async def replace_tags(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict) or set(body) != {"tags"}:
            raise BadRequest("Invalid tags body: expected {\"tags\": [...]}")
        tags = converters.list_of(converters.tag)(body["tags"])
        updated = await self.logic.set_tags(identity_of(request), request.match_info["id"],
                                            lambda _old: sorted(set(tags)))
        return json_response({"tags": updated["tags"]})

    async def add_tag(self, request: web.Request) -> web.Response:
        tag = converters.tag(request.match_info["tag"])
        await self.logic.set_tags(identity_of(request), request.match_info["id"],
                                  lambda old: sorted({*old, tag}))
        return web.Response(status=201)

    async def remove_tag(self, request: web.Request) -> web.Response:
        tag = request.match_info["tag"]

        def edit(old: list[str]) -> list[str]:
            if tag not in old:
                raise resource_not_found("tag", tag)
            return [t for t in old if t != tag]

        await self.logic.set_tags(identity_of(request), request.match_info["id"], edit)
        return web.Response(status=204)

    async def delete_all_tags(self, request: web.Request) -> web.Response:
        await self.logic.set_tags(identity_of(request), request.match_info["id"],
                                  lambda _old: [])
        return web.Response(status=204)


def resolve_project(attrs: dict[str, Any], identity: Identity, member: str) -> None:
    """Fill ``tenant_id``/``project_id`` (both, equal) from the body or caller."""
    tenant = attrs.get("tenant_id")
    project = attrs.get("project_id")
    if tenant is not None and project is not None and tenant != project:
        raise BadRequest("'project_id' and 'tenant_id' do not match")
    owner = tenant or project or identity.project_id
    if owner is None:
        # noauth admin with no project: Neutron leaves it empty.
        owner = ""
    # neutron-lib lets admin and service callers name another project (Nova
    # makes ports for its instances' projects); auth lets service callers
    # write ports only.
    if not (identity.is_admin or identity.is_service) and owner != identity.project_id:
        raise NotAuthorized(f"rule:create_{member} is disallowed by policy")
    attrs["tenant_id"] = attrs["project_id"] = owner
