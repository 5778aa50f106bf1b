"""The two ends of a long-lived TCP connection for outage measurement.

Run in lab namespaces (``kumonet.lab.outage`` starts them)::

    python -m kumonet.lab.echo serve ADDR PORT
        echo everything back, on any number of connections; prints "ready"
    python -m kumonet.lab.echo talk ADDR PORT [--interval 0.05] [--stall-limit 20]
        one connection; prints "connected LOCAL PEER", then sends a numbered
        line every interval (without waiting for echoes) and records when each
        echo arrives; on SIGTERM, or as soon as the connection breaks, prints
        one JSON line (sent, echoed, echo times, error) and exits

``talk`` declares the connection broken on an error (reset, ``TCP_USER_TIMEOUT``
expired), an end of stream, an echo that is not the next line sent (data lost
or reordered), or when the oldest unanswered line waited ``--stall-limit``
seconds. A connection that survives a failover shows only as a gap in the
echo times.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import selectors
import signal
import socket
import sys
import time
from typing import Any


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        # bytes as they come, not lines: any line length, nothing held back
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _serve(addr: str, port: int) -> None:
    server = await asyncio.start_server(_echo, addr, port, reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def serve(addr: str, port: int) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(addr, port))
    return 0


def _connect(addr: str, port: int, time_limit: float) -> socket.socket:
    deadline = time.monotonic() + time_limit
    while True:
        try:
            return socket.create_connection((addr, port), timeout=2)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class _Talk:
    def __init__(self, sock: socket.socket, interval: float, stall_limit: float) -> None:
        self.sock = sock
        self.interval = interval
        self.stall_limit = stall_limit
        self.sent = 0
        self.echo_times: list[float] = []
        self.pending: collections.deque[tuple[int, float]] = collections.deque()
        self.out = b""
        self.inbuf = b""
        self.error: str | None = None
        self.error_at: float | None = None
        self.stop = False

    def _broken(self, why: str) -> None:
        self.error, self.error_at = why, time.time()

    def _receive(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            self._broken("connection closed by the peer")
            return
        self.inbuf += data
        now = time.time()
        while b"\n" in self.inbuf:
            line, self.inbuf = self.inbuf.split(b"\n", 1)
            expected = self.pending.popleft()[0] if self.pending else None
            if expected is None or line != str(expected).encode():
                self._broken(f"echo {line[:20]!r} where line {expected} was expected")
                return
            self.echo_times.append(now)

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        self.sock.setblocking(False)
        selector.register(self.sock, selectors.EVENT_READ)
        next_send = time.monotonic()
        while not self.stop and self.error is None:
            now = time.monotonic()
            if now >= next_send:
                self.sent += 1
                self.pending.append((self.sent, now))
                self.out += f"{self.sent}\n".encode()
                next_send += self.interval
                if next_send < now:  # we were held up: do not send a burst
                    next_send = now + self.interval
            if self.pending and now - self.pending[0][1] > self.stall_limit:
                self._broken(f"no echo for {self.stall_limit:g} s")
                break
            try:
                if self.out:
                    # a full send buffer (a long outage) only delays the lines
                    with contextlib.suppress(BlockingIOError):
                        self.out = self.out[self.sock.send(self.out):]
                for _key, _events in selector.select(max(0.0, next_send - time.monotonic())):
                    self._receive()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as error:
                self._broken(f"{type(error).__name__}: {error.strerror or error}")

    def summary(self, started: float, local: str) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "echoed": len(self.echo_times),
            "echo_times": self.echo_times,
            "started": started,
            "stopped": time.time(),
            "error": self.error,
            "error_at": self.error_at,
            "local": local,
        }


def talk(addr: str, port: int, interval: float, stall_limit: float, connect_limit: float) -> int:
    try:
        sock = _connect(addr, port, connect_limit)
    except OSError as error:
        print(json.dumps({"error": f"connect: {error}", "sent": 0, "echoed": 0,
                          "echo_times": [], "started": time.time(), "stopped": time.time(),
                          "error_at": time.time(), "local": ""}), flush=True)
        return 1
    # the kernel gives up on unacknowledged data after the stall limit too
    # (TCP_USER_TIMEOUT), rather than after ~15 minutes of retransmissions
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(stall_limit * 1000))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    local = "{}:{}".format(*sock.getsockname()[:2])
    peer = "{}:{}".format(*sock.getpeername()[:2])
    started = time.time()
    session = _Talk(sock, interval, stall_limit)

    def stop(_signum: int, _frame: object) -> None:
        session.stop = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"connected {local} {peer}", flush=True)
    session.run()
    sock.close()
    print(json.dumps(session.summary(started, local)), flush=True)
    return 0 if session.error is None else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kumonet.lab.echo")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve")
    serve_cmd.add_argument("addr")
    serve_cmd.add_argument("port", type=int)
    talk_cmd = sub.add_parser("talk")
    talk_cmd.add_argument("addr")
    talk_cmd.add_argument("port", type=int)
    talk_cmd.add_argument("--interval", type=float, default=0.05)
    talk_cmd.add_argument("--stall-limit", type=float, default=20.0)
    talk_cmd.add_argument("--connect-limit", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.addr, args.port)
    return talk(args.addr, args.port, args.interval, args.stall_limit, args.connect_limit)


if __name__ == "__main__":
    sys.exit(main())
