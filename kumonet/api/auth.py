"""Authentication: from a request to an :class:`Identity`.

Both modes end in the same headers (``X-Project-Id``, ``X-User-Id``,
``X-Roles``), so there is one policy path: noauth trusts them as sent;
keystone lets keystonemiddleware validate the token and set them.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from aiohttp import web

from kumonet.api.identity import Identity, identity_from_headers
from kumonet.model.errors import NeutronError, NotAuthorized, ServiceUnavailable

log = logging.getLogger(__name__)


class Unauthorized(NeutronError):
    status = 401
    type_name = "HTTPUnauthorized"


class Rejected(Exception):
    """The authenticator's own answer, sent as it is.

    A Neutron server's authtoken filter answers a missing, bad, revoked or
    expired token before Neutron sees the request: ``401`` with Keystone's
    ``{"error": {"code", "title", "message"}}`` body and a ``WWW-Authenticate:
    Keystone uri="..."`` header telling the client where to log in. kumonet
    sends keystonemiddleware's answer unchanged so clients see the same.
    """

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class Authenticator(Protocol):
    async def identify(self, request: web.Request) -> Identity: ...


class NoAuth:
    async def identify(self, request: web.Request) -> Identity:
        return identity_from_headers(request.headers)


# Neutron's default policy lets these roles write in their project; every
# Keystone has the ``reader`` role too (bootstrap makes it), which may only read.
_WRITER_ROLES = frozenset({"admin", "member"})
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Neutron 2023.2+ gives the ``service`` role (``rule:service_api``) the port
# writes Nova needs, and no other write.
_SERVICE_COLLECTIONS = frozenset({"ports"})


def write_refusal(identity: Identity, method: str, path: str) -> NotAuthorized | None:
    """The refusal Neutron's default rules (``role:member and
    project_id:%(project_id)s`` or admin; ports also ``role:service``) give
    a write by a caller whose roles are only ``reader`` (or others), or None.
    Callers stating no role at all keep noauth's old leniency. The caller
    answers 404 instead when a ``PUT``/``DELETE`` names a resource the
    caller cannot see, as Neutron looks the resource up first."""
    if method in _READ_METHODS or not identity.roles or identity.is_admin \
            or identity.roles & _WRITER_ROLES:
        return None
    if identity.is_service and _collection(path) in _SERVICE_COLLECTIONS:
        return None
    return NotAuthorized(f"rule:{policy_rule(method, path)} is disallowed by policy")


def _collection(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "v2.0":
        parts = parts[1:]
    return parts[0].removesuffix(".json") if parts else ""


def policy_rule(method: str, path: str) -> str:
    """Neutron's rule name for a request: create_network, update_port,
    add_router_interface, get_port..."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "v2.0":
        parts = parts[1:]
    if len(parts) >= 3 and method == "PUT" and "_" in parts[2]:
        return parts[2]
    collection = parts[0].removesuffix(".json").replace("-", "_") if parts else "resource"
    member = collection[:-3] + "y" if collection.endswith("ies") else \
        collection[:-1] if collection.endswith("s") else collection
    action = {"POST": "create", "PUT": "update", "PATCH": "update",
              "DELETE": "delete"}.get(method, "get")
    return f"{action}_{member}"


# Headers a client must never be able to inject past keystonemiddleware.
_IDENTITY_HEADERS = ("X-Identity-Status", "X-Project-Id", "X-Tenant-Id", "X-User-Id",
                     "X-Roles", "X-Service-Roles", "X-Domain-Id", "X-User-Domain-Id")


class KeystoneAuth:
    """keystonemiddleware's ``AuthProtocol`` is WSGI: it runs in a thread on a
    minimal WSGI environ; what it sets in the environ is the identity."""

    def __init__(self, options: Mapping[str, str], config_file: str | None = None) -> None:
        """``options`` is the ``[keystone_authtoken]`` section; with
        ``config_file`` (the INI it came from) keystonemiddleware reads the
        section itself with oslo.config, as in a Neutron server."""
        self._captured_key = "kumonet.identity_environ"

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            environ[self._captured_key] = True
            start_response("200 OK", [])
            return [b""]

        if not (options.get("www_authenticate_uri") or options.get("auth_url")):
            raise ValueError("--auth keystone needs a [keystone_authtoken] section with at "
                             "least auth_url (and the service credentials) in --config")
        conf: dict[str, Any]
        if config_file is not None:
            # Given as paste-style overrides, the auth plugin's options
            # (auth_url, username, password...) each log "not known to
            # keystonemiddleware" at start; a private oslo.config object
            # on the INI knows them, and keeps the process-wide cfg.CONF clean.
            conf = {"oslo_config_project": "kumonet", "oslo_config_file": str(config_file)}
        else:
            conf = {**options, "delay_auth_decision": options.get("delay_auth_decision",
                                                                  "false")}
        if options.get("memcached_servers") or options.get("memcache_servers"):
            # keystonemiddleware imports its memcached pool lazily, in the
            # thread of the first request, and that brings in eventlet:
            # imported outside the main thread, eventlet leaves the thread
            # unjoinable and the server hangs at exit. Import it here.
            importlib.import_module("oslo_cache._memcache_pool")
        from keystonemiddleware import auth_token

        self._protocol = auth_token.AuthProtocol(app, conf)

    def _run(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        """keystonemiddleware on ``environ``: its status line, headers and body
        (the app's empty 200 when it let the request through)."""
        status: list[str] = []
        headers: list[tuple[str, str]] = []

        def start_response(code: str, sent: list[tuple[str, str]],
                           exc_info: object = None) -> Callable[[bytes], None]:
            status.append(code)
            headers[:] = sent
            return lambda _data: None

        chunks = self._protocol(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return (status[0] if status else "500 Internal Server Error"), headers, body

    async def identify(self, request: web.Request) -> Identity:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method, "PATH_INFO": request.path,
            "SCRIPT_NAME": "", "QUERY_STRING": request.query_string,
            "SERVER_NAME": request.host.split(":")[0], "SERVER_PORT": "9696",
            "wsgi.url_scheme": request.scheme, "wsgi.input": None,
        }
        for name, value in request.headers.items():
            if name.title() in _IDENTITY_HEADERS:
                continue
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        loop = asyncio.get_running_loop()
        try:
            status, headers, body = await loop.run_in_executor(None, self._run, environ)
        except Exception:
            # keystonemiddleware answers Keystone outages itself (503); what
            # escapes is a configuration problem the operator must see.
            log.exception("keystonemiddleware failed")
            raise ServiceUnavailable("The identity service cannot validate tokens now.",
                                     type_name="HTTPServiceUnavailable") from None
        if not environ.get(self._captured_key):
            raise Rejected(_response(status, headers, body))
        if environ.get("HTTP_X_IDENTITY_STATUS") != "Confirmed":
            # Only with delay_auth_decision: the operator chose to let
            # unauthenticated requests through; Neutron would refuse them.
            raise Unauthorized("Authentication required")
        identity = identity_from_headers({
            "X-Project-Id": environ.get("HTTP_X_PROJECT_ID", ""),
            "X-User-Id": environ.get("HTTP_X_USER_ID", ""),
            "X-Roles": environ.get("HTTP_X_ROLES", "")})
        if identity.project_id is None:
            # A token without a project is not Neutron's noauth admin: it is
            # system- or domain-scoped (or unscoped), which Neutron's
            # project-scoped policies refuse (kumonet.api.app).
            scope = "system" if environ.get("HTTP_OPENSTACK_SYSTEM_SCOPE") else \
                "domain" if environ.get("HTTP_X_DOMAIN_ID") else "unscoped"
            identity = replace(identity, scope=scope)
        return identity


# Hop-by-hop or recomputed by aiohttp: not copied from the WSGI answer.
_DROPPED_HEADERS = frozenset({"content-length", "connection", "transfer-encoding"})


def _response(status: str, headers: list[tuple[str, str]], body: bytes) -> web.Response:
    code, _, reason = status.partition(" ")
    response = web.Response(status=int(code), reason=reason or None, body=body)
    for name, value in headers:
        if name.lower() not in _DROPPED_HEADERS:
            response.headers.add(name, value)
    return response
