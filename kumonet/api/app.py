"""The HTTP application: Neutron's error format on every failure, the
caller's identity on every request, the version documents, and the
resources it is given (wired explicitly by the caller)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from kumonet.api.auth import Authenticator, Rejected
from kumonet.api.neutron.extensions import Extension, ExtensionsController
from kumonet.api.neutron.resource import (
    IDENTITY_KEY,
    ResourceController,
    ResourceLogic,
    base_url,
    json_response,
)
from kumonet.api.restconf import SELF_AUTHENTICATED_PREFIXES
from kumonet.cluster.availability import stale_reads_middleware, unavailable_answer
from kumonet.model.errors import NeutronError
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


def identity_middleware(authenticator: Authenticator) -> Callable[..., Awaitable[
        web.StreamResponse]]:
    @web.middleware
    async def identify(request: web.Request, handler: Handler) -> web.StreamResponse:
        # "/" is the versions document; OpenDaylight's faces check ODL's
        # basic auth themselves (kumonet.api.restconf.BasicAuth).
        if request.path != "/" and not request.path.startswith(SELF_AUTHENTICATED_PREFIXES):
            try:
                request[IDENTITY_KEY] = await authenticator.identify(request)
            except Rejected as rejected:
                return rejected.response
        return await handler(request)

    return identify


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
              max_body_size: int = 114688) -> web.Application:
    """The whole API: each resource logic gets the generic routes."""
    # Stale reads are marked inside the error handling: a GET that could be
    # served only stale carries the header, one that could not is a 503.
    app = web.Application(client_max_size=max_body_size,
                          middlewares=[neutron_errors, stale_reads_middleware,
                                       identity_middleware(authenticator)])
    VersionsController(parts.resources).add_routes(app)
    ExtensionsController(parts.extensions).add_routes(app)
    for provider in parts.routes:
        provider.add_routes(app)
    for logic in parts.resources:
        ResourceController(logic).add_routes(app)
    return app
