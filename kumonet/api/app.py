"""The HTTP application: Neutron's error format on every failure, the
caller's identity on every request, the version documents, and the
resources it is given (wired explicitly by the caller)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from kumonet.api.auth import Authenticator, Rejected, policy_rule, write_refusal
from kumonet.api.identity import Identity
from kumonet.api.neutron.extensions import Extension, ExtensionsController
from kumonet.api.neutron.resource import (
    IDENTITY_KEY,
    ResourceController,
    ResourceLogic,
    base_url,
    json_response,
)
from kumonet.api.restconf import SELF_AUTHENTICATED_PREFIXES, BasicAuth
from kumonet.cluster.availability import stale_reads_middleware, unavailable_answer
from kumonet.cluster.http import OPERATOR_PREFIXES
from kumonet.model.errors import NeutronError, NotAuthorized, NotFound, resource_not_found
from kumonet.store.contract import StoreUnavailable

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp's own refusals, named as webob (and so Neutron) names them.
_HTTP_TYPES = {400: "HTTPBadRequest", 401: "HTTPUnauthorized", 403: "HTTPForbidden",
               404: "HTTPNotFound", 405: "HTTPMethodNotAllowed", 406: "HTTPNotAcceptable",
               413: "HTTPRequestEntityTooLarge", 415: "HTTPUnsupportedMediaType"}


def error_response(status: int, type_name: str, message: str, detail: str = "") -> web.Response:
    return json_response({"NeutronError": {"type": type_name, "message": message,
                                           "detail": detail}}, status=status)


@web.middleware
async def neutron_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NeutronError as error:
        return json_response(error.body(), status=error.status)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return error_response(error.status, _HTTP_TYPES.get(error.status, "HTTPError"),
                              error.reason if error.status != 404 else
                              "The resource could not be found.")
    except StoreUnavailable as error:
        return _unavailable(request, error)
    except ExceptionGroup as group:
        # Concurrent steps (task groups) fail together: an unreachable store
        # is still a 503, never a 500.
        unavailable, other = group.split(StoreUnavailable)
        if unavailable is None or other is not None:
            log.exception("request failed: %s %s", request.method, request.path)
            return _internal_error()
        return _unavailable(request, _first_unavailable(unavailable))
    except Exception:
        log.exception("request failed: %s %s", request.method, request.path)
        return _internal_error()


def _internal_error() -> web.Response:
    return error_response(500, "HTTPInternalServerError",
                          "Request Failed: internal server error while processing your "
                          "request.")


def _first_unavailable(group: ExceptionGroup[StoreUnavailable]) -> StoreUnavailable:
    errors: list[StoreUnavailable] = []

    def collect(inner: ExceptionGroup[StoreUnavailable]) -> None:
        for error in inner.exceptions:
            if isinstance(error, ExceptionGroup):
                collect(error)
            else:
                errors.append(error)

    collect(group)
    # Any maybe-applied step makes the whole request maybe-applied.
    return next((e for e in errors if e.indeterminate), errors[0])


def _unavailable(request: web.Request, error: StoreUnavailable) -> web.Response:
    log.warning("store unavailable (%s %s): %s", request.method, request.path, error)
    answer = unavailable_answer(error, request.method)
    response = json_response(answer.body, status=answer.status)
    response.headers.update(answer.headers)
    return response


def identity_middleware(authenticator: Authenticator, resources: Sequence[ResourceLogic] = (),
                        operator_auth: BasicAuth | None = None
                        ) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Who calls, and Neutron's request-level policy (scope, read-only
    roles); attribute-level policy is the resource definitions'."""
    policy = RequestPolicy(resources)

    @web.middleware
    async def identify(request: web.Request, handler: Handler) -> web.StreamResponse:
        # "/" is the versions document; OpenDaylight's faces check ODL's
        # basic auth themselves (kumonet.api.restconf.BasicAuth).
        if request.path == "/" or request.path.startswith(SELF_AUTHENTICATED_PREFIXES):
            return await handler(request)
        if request.path.startswith(OPERATOR_PREFIXES):
            return await _operator(request, handler, authenticator, operator_auth)
        try:
            identity = await authenticator.identify(request)
        except Rejected as rejected:
            return rejected.response
        request[IDENTITY_KEY] = identity
        answer = await policy.check(identity, request)
        return answer if answer is not None else await handler(request)

    return identify


async def _operator(request: web.Request, handler: Handler, authenticator: Authenticator,
                    basic: BasicAuth | None) -> web.StreamResponse:
    """The cluster status and Jolokia paths: operators' tools (the seed's
    ``curl -u admin:admin``, telegraf's Jolokia input) send ODL's basic
    credentials, the ``openstack`` side an admin token; either will do."""
    header = request.headers.get("Authorization", "")
    if basic is not None and header[:6].lower() == "basic ":
        try:
            basic.check(request)
        except web.HTTPUnauthorized as refused:
            answer = error_response(401, "HTTPUnauthorized", "Authentication required")
            answer.headers.update(refused.headers)
            return answer
        return await handler(request)
    try:
        identity = await authenticator.identify(request)
    except Rejected as rejected:
        return rejected.response
    if not identity.is_admin:
        raise NotAuthorized("rule:get_cluster_status is disallowed by policy")
    request[IDENTITY_KEY] = identity
    return await handler(request)


# Neutron answers these for any valid token: they are no project's resource.
_UNSCOPED_PATHS = frozenset({"/v2.0/", "/v2.0/extensions", "/v2.0/extensions.json"})
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RequestPolicy:
    """What Neutron's policy engine decides before a resource's logic runs."""

    def __init__(self, resources: Sequence[ResourceLogic]) -> None:
        self._by_path = {r.definition.path: r for r in resources}

    async def check(self, identity: Identity, request: web.Request) -> web.Response | None:
        """Raises Neutron's refusal, or returns the whole answer (an empty
        list), or None to let the request through."""
        path, method = request.path, request.method
        if not identity.project_scoped and path.startswith("/v2.0/") \
                and path not in _UNSCOPED_PATHS and not path.startswith("/v2.0/extensions/"):
            return self._out_of_scope(identity, method, path)
        refusal = write_refusal(identity, method, path)
        if refusal is None:
            return None
        if method in ("PUT", "PATCH", "DELETE"):
            await self._require_visible(identity, path)
        raise refusal

    def _out_of_scope(self, identity: Identity, method: str, path: str) -> web.Response:
        """What Neutron answers a token not scoped to a project (its
        defaults are ``scope_types=['project']``; oslo.policy's InvalidScope):
        a create or member action is 403 ``InvalidScope``; a PUT/DELETE is a
        404 (the show check fails too, so the resource "does not exist");
        one resource read is a 404, a list is empty (every item filtered)."""
        parts = [p for p in path.split("/") if p]
        logic = self._by_path.get(parts[1].removesuffix(".json")) if len(parts) > 1 else None
        rule = policy_rule(method, path)
        if method == "POST" or (method == "PUT" and len(parts) > 3):
            if identity.scope == "unscoped":
                raise NotAuthorized(f"rule:{rule} is disallowed by policy")
            raise NotAuthorized(f"rule:{rule} requires a scope of ['project'], request was "
                                f"made with {identity.scope} scope.", type_name="InvalidScope")
        if method == "GET" and len(parts) == 2 and logic is not None:
            return json_response({logic.definition.collection: []})
        raise NotFound("The resource could not be found.", type_name="HTTPNotFound")

    async def _require_visible(self, identity: Identity, path: str) -> None:
        """Neutron looks a resource up before its policy: what the caller
        cannot see (or what does not exist) is a 404, not a 403."""
        parts = [p for p in path.split("/") if p]
        if len(parts) < 2 or parts[0] != "v2.0":
            return
        logic = self._by_path.get(parts[1].removesuffix(".json"))
        if logic is None:
            return
        member = logic.definition.member
        if len(parts) == 2:
            raise resource_not_found(member, "None")
        found = await logic.repository.find(parts[2])
        if found is None or not (await logic.visibility(identity))(found.resource):
            raise resource_not_found(member, parts[2])


# Neutron's resources document lists the core plugin's collections only
# (and subnetpools, which this server does not serve); extensions' resources
# are found through /v2.0/extensions.
CORE_COLLECTIONS = frozenset({"networks", "subnets", "ports"})


class VersionsController:
    def __init__(self, resources: Sequence[ResourceLogic]) -> None:
        self.resources = resources

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.versions)
        # Neutron answers "/v2.0" (no slash) with 404.
        app.router.add_get("/v2.0/", self.resources_document)

    async def versions(self, request: web.Request) -> web.Response:
        return json_response({"versions": [{
            "id": "v2.0", "status": "CURRENT",
            "links": [{"rel": "self", "href": f"{base_url(request)}/v2.0/"}]}]})

    async def resources_document(self, request: web.Request) -> web.Response:
        base = base_url(request)
        return json_response({"resources": [
            {"name": r.definition.member, "collection": r.definition.collection,
             "links": [{"rel": "self", "href": f"{base}/v2.0/{r.definition.path}"}]}
            for r in self.resources if r.definition.collection in CORE_COLLECTIONS]})


class RouteProvider(Protocol):
    """Anything that adds its own routes (member actions of a resource)."""

    def add_routes(self, app: web.Application) -> None: ...


@dataclass(frozen=True, slots=True)
class ApiParts:
    """What the app serves, assembled in ``kumonet.api.main.build_api``."""

    resources: Sequence[ResourceLogic]
    extensions: Sequence[Extension]
    routes: Sequence[RouteProvider] = field(default_factory=tuple)


def build_app(parts: ApiParts, *, authenticator: Authenticator,
              max_body_size: int = 114688,
              operator_auth: BasicAuth | None = None) -> web.Application:
    """The whole API: each resource logic gets the generic routes.
    ``operator_auth``: the basic credentials the status paths take besides
    an admin token (none: tokens, or noauth's headers, only)."""
    # Stale reads are marked inside the error handling: a GET that could be
    # served only stale carries the header, one that could not is a 503.
    app = web.Application(client_max_size=max_body_size,
                          middlewares=[neutron_errors, stale_reads_middleware,
                                       identity_middleware(authenticator, parts.resources,
                                                           operator_auth)])
    VersionsController(parts.resources).add_routes(app)
    ExtensionsController(parts.extensions).add_routes(app)
    for provider in parts.routes:
        provider.add_routes(app)
    for logic in parts.resources:
        ResourceController(logic).add_routes(app)
    return app
