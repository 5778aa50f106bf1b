"""Serves Keystone's WSGI application on a loopback port, for the tests.

Run by ``.venv-keystone/bin/python`` (Keystone's own virtualenv, not
kumonet's): ``keystone_wsgi.py HOST PORT``, with ``OS_KEYSTONE_CONFIG_FILES``
naming the keystone.conf. Keystone ships only the WSGI application; a
threading stdlib server is enough for a test's handful of clients (the
service's token validations and the tests' own calls overlap).
"""

from __future__ import annotations

import socketserver
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(WSGIRequestHandler):
    # wsgiref answers HTTP/1.0 and closes each connection; keystoneauth's
    # sessions cope, and there is nothing to gain from keep-alive here.
    def address_string(self) -> str:
        return str(self.client_address[0])


def main(host: str, port: int) -> None:
    from keystone.server.wsgi import initialize_public_application

    # oslo.config parses the command line when Keystone loads its config.
    del sys.argv[1:]

    application = initialize_public_application()
    with _ThreadingServer((host, port), _Handler) as server:
        server.set_app(application)
        print(f"keystone serving on http://{host}:{port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
