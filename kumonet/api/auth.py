"""Authentication: from a request to an :class:`Identity`.

Both modes end in the same headers (``X-Project-Id``, ``X-User-Id``,
``X-Roles``), so there is one policy path: noauth trusts them as sent;
keystone lets keystonemiddleware validate the token and set them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from aiohttp import web

from kumonet.api.identity import Identity, identity_from_headers
from kumonet.model.errors import NeutronError, ServiceUnavailable

log = logging.getLogger(__name__)


class Unauthorized(NeutronError):
    status = 401
    type_name = "HTTPUnauthorized"


class Authenticator(Protocol):
    async def identify(self, request: web.Request) -> Identity: ...


class NoAuth:
    async def identify(self, request: web.Request) -> Identity:
        return identity_from_headers(request.headers)


# Headers a client must never be able to inject past keystonemiddleware.
_IDENTITY_HEADERS = ("X-Identity-Status", "X-Project-Id", "X-Tenant-Id", "X-User-Id",
                     "X-Roles", "X-Service-Roles", "X-Domain-Id", "X-User-Domain-Id")


class KeystoneAuth:
    """keystonemiddleware's ``AuthProtocol`` is WSGI: it runs in a thread on a
    minimal WSGI environ; what it sets in the environ is the identity."""

    def __init__(self, options: Mapping[str, str]) -> None:
        self._captured_key = "kumonet.identity_environ"

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            environ[self._captured_key] = True
            start_response("200 OK", [])
            return [b""]

        conf = dict(options)
        if not (conf.get("www_authenticate_uri") or conf.get("auth_url")):
            raise ValueError("--auth keystone needs a [keystone_authtoken] section with at "
                             "least auth_url (and the service credentials) in --config")
        conf.setdefault("delay_auth_decision", "false")
        from keystonemiddleware import auth_token

        self._protocol = auth_token.AuthProtocol(app, conf)

    def _run(self, environ: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        status: list[str] = []

        def start_response(code: str, headers: list[tuple[str, str]],
                           exc_info: object = None) -> Callable[[bytes], None]:
            status.append(code)
            return lambda _data: None

        body = self._protocol(environ, start_response)
        for _chunk in body:
            pass
        return (status[0] if status else "500"), environ

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
            status, environ = await loop.run_in_executor(None, self._run, environ)
        except Exception:
            # keystonemiddleware answers Keystone outages itself (503); what
            # escapes is a configuration problem the operator must see.
            log.exception("keystonemiddleware failed")
            raise ServiceUnavailable("The identity service cannot validate tokens now.",
                                     type_name="HTTPServiceUnavailable") from None
        if not environ.get(self._captured_key) or environ.get("HTTP_X_IDENTITY_STATUS") \
                != "Confirmed":
            raise Unauthorized("Authentication required")
        headers = {"X-Project-Id": environ.get("HTTP_X_PROJECT_ID", ""),
                   "X-User-Id": environ.get("HTTP_X_USER_ID", ""),
                   "X-Roles": environ.get("HTTP_X_ROLES", "")}
        identity = identity_from_headers(headers)
        if identity.project_id is None and "admin" not in identity.roles:
            # A token without a project is not Neutron's noauth admin.
            raise Unauthorized(f"Token without project scope ({status})")
        return identity
