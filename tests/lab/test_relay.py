"""The relay makes a server on the machine's loopback reachable at the same
address from inside every host namespace."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from kumonet.lab.process import find_by_marker
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab

CLIENT = """
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
c.sendall(b"hello from " + sys.argv[2].encode()); c.shutdown(socket.SHUT_WR)
reply = b""
while (d := c.recv(4096)):
    reply += d
print(reply.decode())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def upper_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read()
    writer.write(data.upper())
    await writer.drain()
    writer.close()


async def test_hosts_reach_a_loopback_server_through_the_relay(
    lab_factory: LabFactory,
) -> None:
    port = free_port()
    lab = await lab_factory.up(2, server_urls=[f"http://127.0.0.1:{port}"])
    server = await asyncio.start_server(upper_server, "127.0.0.1", port)
    try:
        pid = await lab.start_relay()
        assert pid is not None
        for host in ("host1", "host2"):
            result = await lab.host_exec(host, [sys.executable, "-c", CLIENT, str(port), host])
            assert result.stdout.strip() == f"HELLO FROM {host.upper()}"
        status = await lab.status()
        assert status.relay is not None and status.relay.pid == pid
    finally:
        server.close()
        await server.wait_closed()
    # with the server gone the agent sees the connection closed, not a hang
    result = await lab.host_exec("host1", [sys.executable, "-c", CLIENT, str(port), "x"],
                                 check=False, time_limit=20)
    assert result.stdout.strip() == ""
    await lab.down()
    assert find_by_marker(f"{lab.layout.run_dir}/") == []


async def test_no_relay_without_a_loopback_server(lab_factory: LabFactory) -> None:
    lab = await lab_factory.up(1, server_urls=["http://192.0.2.250:9696"])
    assert await lab.start_relay() is None
