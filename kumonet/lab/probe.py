"""Reachability checks run from inside VMs: ping with retries, and TCP.

Ping alone hides checksum-offload faults (ICMP survives them, TCP does not),
so end-to-end tests check TCP too. The first packet towards a tunnel
endpoint OVS has not resolved yet is dropped while OVS ARPs for it: a check
retries instead of failing on one loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from kumonet.lab.command import in_netns, run

# A one-connection TCP server: prints "ready" once listening, then answers
# the SHA-256 of everything it received (so the client checks every byte).
_SERVER = """
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(float(sys.argv[2])); h = hashlib.sha256()
while True:
    d = c.recv(65536)
    if not d: break
    h.update(d)
c.sendall(h.hexdigest().encode()); c.close()
"""

_CLIENT = """
import hashlib, os, socket, sys, time
addr, port, size, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
data = os.urandom(size); deadline = time.monotonic() + timeout
while True:
    try:
        c = socket.create_connection((addr, port), timeout=2); break
    except OSError:
        if time.monotonic() > deadline: raise
        time.sleep(0.2)
c.settimeout(timeout); c.sendall(data); c.shutdown(socket.SHUT_WR)
reply = b""
while True:
    d = c.recv(4096)
    if not d: break
    reply += d
ok = reply.decode() == hashlib.sha256(data).hexdigest()
print("ok" if ok else "mismatch"); sys.exit(0 if ok else 1)
"""


async def ping(netns: str, address: str, *, attempts: int = 10, wait: float = 1.0) -> bool:
    """True as soon as one echo is answered within ``attempts`` tries."""
    for _ in range(attempts):
        result = await run(
            in_netns(netns, ["ping", "-n", "-c", "1", "-W", f"{wait:g}", address]),
            check=False,
            time_limit=wait + 5,
        )
        if result.ok:
            return True
    return False


async def tcp_exchange(
    client_netns: str,
    server_netns: str,
    address: str,
    *,
    port: int = 5201,
    size: int = 200_000,
    time_limit: float = 10.0,
) -> bool:
    """Send ``size`` random bytes over TCP from one namespace to a server in
    another and check the server saw every byte (SHA-256 echoed back)."""
    server = await asyncio.create_subprocess_exec(
        *in_netns(server_netns, [sys.executable, "-c", _SERVER, str(port), str(time_limit)]),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), time_limit)
        if line.strip() != b"ready":
            return False
        result = await run(
            in_netns(
                client_netns,
                [sys.executable, "-c", _CLIENT, address, str(port), str(size), str(time_limit)],
            ),
            check=False,
            time_limit=time_limit * 3,
        )
        return result.ok and result.stdout.strip() == "ok"
    finally:
        if server.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                server.kill()
        await server.wait()
