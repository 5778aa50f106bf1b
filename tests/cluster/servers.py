"""Real ``kumonet-server`` processes on loopback for cluster tests, each its
own process on its own port over one shared store URL, and HAProxy in front
of them; always stopped.

Synchronous helpers (subprocess and plain HTTP), like ``etcd_cluster``, so
that fixtures can use them outside an event loop. A test's HTTP calls go
through :class:`Client` (``urllib``), or through aiohttp for load.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.cluster.etcd_cluster import free_port

REPO = Path(__file__).resolve().parents[2]
START_GUARD = 30.0  # seconds; a guard against hanging, never an expectation
SERVER_INI = """
[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vxlan
[ml2_type_vxlan]
vni_ranges = 1000:60000
"""
ADMIN_ADMIN = "Basic " + base64.b64encode(b"admin:admin").decode()


@dataclass
class Server:
    name: str
    port: int
    log: Path
    command: list[str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=REPO)
        wait_until_serving(self.url, self)

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout=START_GUARD)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.process = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_until_serving(url: str, server: Server | None = None) -> None:
    until = time.monotonic() + START_GUARD
    while True:
        try:
            with urllib.request.urlopen(url + "/", timeout=1) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if server is not None and server.process is not None and \
                server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{server.log_text()[-3000:]}")
        if time.monotonic() > until:
            raise TimeoutError(f"{url} does not answer")
        time.sleep(0.05)


@dataclass
class Servers:
    members: list[Server]
    base: Path
    extra_logs: list[Path] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.members]

    def close(self) -> None:
        for server in self.members:
            server.stop(signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.log_text()[-4000:]}" for s in self.members)


@contextmanager
def running_servers(store_url: str | None, count: int = 3, *, shards: str | None = None,
                    prefix: str = "kumonet-servers-") -> Iterator[Servers]:
    """``count`` servers over ``store_url`` (an etcd cluster's URL) or a
    shards file's text, up and answering; killed and their files removed
    afterwards."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    ini = base / "kumonet.ini"
    ini.write_text(SERVER_INI)
    if shards is not None:
        shards_file = base / "shards.conf"
        shards_file.write_text(shards)
        source = ["--shards", str(shards_file)]
    else:
        assert store_url is not None
        source = ["--store", store_url]
    members = []
    for i in range(1, count + 1):
        port = free_port()
        command = [sys.executable, "-m", "kumonet.api.main", "--listen", f"127.0.0.1:{port}",
                   *source, "--config", str(ini), "--log-level", "WARNING"]
        members.append(Server(f"server-{i}", port, base / f"server-{i}.log", command))
    servers = Servers(members, base)
    try:
        for server in members:
            server.start()
        yield servers
    finally:
        servers.close()
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class Client:
    """Plain HTTP to one base URL (noauth admin, JSON)."""

    def __init__(self, url: str, timeout: float = 20.0) -> None:
        self.url = url
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> Answer:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json",
                                                  **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                raw = answer.read()
                return Answer(answer.status, json.loads(raw) if raw else None,
                              dict(answer.headers))
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw.decode(errors="replace")
            return Answer(error.code, parsed, dict(error.headers))

    def restconf(self, path: str = "") -> Answer:
        """The seed's ``curl -u admin:admin .../restconf/config/neutron:neutron/``."""
        return self.call("GET", "/restconf/config/neutron:neutron/" + path,
                         headers={"Authorization": ADMIN_ADMIN})

    def create_network(self, name: str) -> Answer:
        return self.call("POST", "/v2.0/networks", {"network": {"name": name}})


def restconf_network_names(answer: Answer) -> set[str]:
    assert answer.status == 200, answer
    return {n["name"] for n in answer.body["neutron"]["networks"].get("network", [])}


@dataclass
class HAProxy:
    port: int
    config: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def haproxy_config(shipped: str, port: int, backends: list[tuple[str, int]]) -> str:
    """The shipped example (``etc/haproxy.cfg``) with loopback addresses: the
    frontend on ``port``, one ``server`` line per backend, no syslog."""
    lines: list[str] = []
    servers_written = False
    for line in shipped.splitlines():
        stripped = line.strip()
        if stripped.startswith("log "):
            continue
        if stripped.startswith("bind "):
            # One loopback port for the test: the first bind, the others dropped.
            if not any(line.strip().startswith("bind ") for line in lines):
                lines.append(f"    bind 127.0.0.1:{port}")
            continue
        if re.match(r"^server\s", stripped):
            if servers_written:
                continue
            servers_written = True
            lines += [f"    server {name} 127.0.0.1:{p} check" for name, p in backends]
            continue
        lines.append(line)
    assert servers_written, "the shipped haproxy.cfg has no server lines"
    return "\n".join(lines) + "\n"


@contextmanager
def running_haproxy(backends: list[tuple[str, int]]) -> Iterator[HAProxy]:
    base = Path(tempfile.mkdtemp(prefix="kumonet-haproxy-"))
    port = free_port()
    config = base / "haproxy.cfg"
    config.write_text(haproxy_config((REPO / "etc" / "haproxy.cfg").read_text(), port, backends))
    subprocess.run(["haproxy", "-c", "-q", "-f", str(config)], check=True, timeout=START_GUARD)
    log = (base / "haproxy.log").open("wb")
    process = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}")
        yield HAProxy(port, config, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=START_GUARD)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)
