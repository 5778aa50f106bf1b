"""The management relay: how agents inside host namespaces reach a server on
the machine's loopback.

An agent runs inside its host's network namespace (as on a real hypervisor:
its OVS, its routes, and later its router namespaces and keepalived are all
"on the host", and failure injection can cut a host off). There, 127.0.0.1 is
the namespace's own loopback, where no server listens. The relay is one small
process per lab that opens, for each server address ``A:P`` on loopback, a
listening socket at ``A:P`` *inside every host namespace* and forwards each
connection to ``A:P`` in the machine's namespace. A socket keeps the
namespace it was created in, so one process switches namespace (``setns``)
only while creating its listeners and then serves all hosts from the
machine's namespace.

Why not a veth from the machine into the underlay instead: the server would
have to listen on a non-loopback address and the machine's own network
configuration would change (routes, an address, a veth to clean up after a
crash). The relay changes nothing outside the lab's namespaces, and agents
keep the exact server URL the operator gave (``http://127.0.0.1:9696``).

Run as ``python -m kumonet.lab.relay --run-dir DIR --netns NS ... --forward
HOST:PORT ...``; it writes ``DIR/relay/ready`` once every listener is open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    # os.setns only exists from Python 3.12.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


@contextlib.contextmanager
def entered_netns(name: str) -> Iterator[None]:
    """Switch this thread into a named namespace and back. Only for
    single-threaded use before the event loop runs."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def listen_in_netns(name: str, host: str, port: int) -> socket.socket:
    with entered_netns(name):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    return sock


def parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _forward(
    target: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection(*target)
    except OSError:
        # the server is down: the agent sees a reset, as it would without a relay
        writer.close()
        return
    try:
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
    finally:
        for w in (writer, up_writer):
            w.close()
            with contextlib.suppress(ConnectionError, OSError):
                await w.wait_closed()


def _write(path: Path, text: str) -> None:
    path.write_text(text)


async def serve(
    namespaces: Sequence[str], targets: Sequence[tuple[str, int]], ready_file: Path
) -> None:
    servers = []
    for namespace in namespaces:
        for target in targets:
            sock = listen_in_netns(namespace, *target)

            async def handle(
                reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter,
                target: tuple[str, int] = target,
            ) -> None:
                await _forward(target, reader, writer)

            servers.append(await asyncio.start_server(handle, sock=sock))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    _write(ready_file, "ready\n")
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kumonet-lab-relay", description=__doc__)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--netns", action="append", default=[])
    parser.add_argument("--forward", action="append", default=[], type=parse_hostport)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.netns, args.forward, args.run_dir / "relay" / "ready"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
