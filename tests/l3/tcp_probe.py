"""A TCP echo server and a client that keeps one connection busy (run in namespaces).

    python -m tests.l3.tcp_probe serve ADDR PORT
    python -m tests.l3.tcp_probe whoami ADDR PORT        → the address the server saw
    python -m tests.l3.tcp_probe talk ADDR PORT SECONDS  → JSON: lines echoed, longest gap
    python -m tests.l3.tcp_probe push ADDR PORT [INTERVAL]  (server that speaks first)
    python -m tests.l3.tcp_probe answer ADDR PORT SECONDS → "got N" per line, then JSON

``push``/``answer`` turn the roles round: the server sends a line every
INTERVAL seconds (0.05) and the client (behind SNAT) only echoes, telling each
line it got (so a test can fail the router while nothing is in flight). After
a failover the first packet of the connection then comes from outside: a
router that does not know the connection's translation never sees it
re-created from inside.

``talk`` sends a line every 50 ms on one connection and waits for each echo, so a
connection that does not survive a failover shows as an error, and the longest
wait for an echo is the connection's outage.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time


def serve(addr: str, port: int) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((addr, port))
    listener.listen(16)
    print("ready", flush=True)
    while True:
        conn, peer = listener.accept()
        threading.Thread(target=_echo, args=(conn, peer[0]), daemon=True).start()


def _echo(conn: socket.socket, peer: str) -> None:
    with conn, conn.makefile("rwb") as stream:
        for line in stream:
            reply = f"{peer}\n".encode() if line.strip() == b"whoami" else line
            stream.write(reply)
            stream.flush()


def whoami(addr: str, port: int) -> None:
    with socket.create_connection((addr, port), timeout=5) as conn, conn.makefile("rwb") as s:
        s.write(b"whoami\n")
        s.flush()
        print(s.readline().decode().strip())


def talk(addr: str, port: int, seconds: float) -> None:
    result: dict[str, object] = {"echoed": 0, "max_gap_ms": 0.0, "error": None}
    try:
        with socket.create_connection((addr, port), timeout=5) as conn:
            conn.settimeout(15)
            stream = conn.makefile("rwb")
            start = last = time.monotonic()
            n = 0
            while time.monotonic() - start < seconds:
                n += 1
                stream.write(f"{n}\n".encode())
                stream.flush()
                if stream.readline().strip() != str(n).encode():
                    raise RuntimeError(f"bad echo for line {n}")
                now = time.monotonic()
                result["max_gap_ms"] = max(float(result["max_gap_ms"]), (now - last) * 1000)  # type: ignore[arg-type]
                result["echoed"] = n
                last = now
                time.sleep(max(0.0, 0.05 - (time.monotonic() - now)))
    except (OSError, RuntimeError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
    print(json.dumps(result), flush=True)


def push(addr: str, port: int, interval: float) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((addr, port))
    listener.listen(16)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_push, args=(conn, interval), daemon=True).start()


def _push(conn: socket.socket, interval: float) -> None:
    with conn, conn.makefile("rwb") as stream:
        n = 0
        while True:
            n += 1
            stream.write(f"{n}\n".encode())
            stream.flush()
            if stream.readline().strip() != str(n).encode():
                return
            time.sleep(interval)


def answer(addr: str, port: int, seconds: float) -> None:
    result: dict[str, object] = {"echoed": 0, "max_gap_ms": 0.0, "error": None}
    try:
        with socket.create_connection((addr, port), timeout=5) as conn:
            # Long enough for any retransmission to get through once the path is back.
            conn.settimeout(8)
            stream = conn.makefile("rwb")
            start = last = time.monotonic()
            while time.monotonic() - start < seconds:
                line = stream.readline()
                if not line:
                    raise RuntimeError("connection closed")
                stream.write(line)
                stream.flush()
                print(f"got {line.decode().strip()}", flush=True)
                now = time.monotonic()
                result["max_gap_ms"] = max(float(result["max_gap_ms"]), (now - last) * 1000)  # type: ignore[arg-type]
                result["echoed"] = int(result["echoed"]) + 1  # type: ignore[call-overload]
                last = now
    except (OSError, RuntimeError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "serve":
        serve(addr, port)
    elif mode == "whoami":
        whoami(addr, port)
    elif mode == "push":
        push(addr, port, float(sys.argv[4]) if len(sys.argv) > 4 else 0.05)
    elif mode == "answer":
        answer(addr, port, float(sys.argv[4]))
    else:
        talk(addr, port, float(sys.argv[4]))
