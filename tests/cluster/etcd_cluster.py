"""Real etcd clusters for tests: members on loopback ports, data in a
throw-away directory, always stopped.

Elections are tuned fast: ``--heartbeat-interval 50`` and
``--election-timeout 500`` (ms), so a new leader is usually there within a
second of the old one dying. etcd's minimum lease TTL follows from these:
1.5 x election timeout, rounded up: 1 s.

The helpers are synchronous (subprocess and the members' plain HTTP
``/health``), so that session-wide fixtures can use them outside any event
loop.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
HEARTBEAT_MS = 50
ELECTION_MS = 500
START_GUARD = 30.0  # seconds; a guard against hanging, never an expectation


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class EtcdCluster:
    members: list[Member]
    token: str
    base: Path
    heartbeat_ms: int = HEARTBEAT_MS
    election_ms: int = ELECTION_MS

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        """The store URL of the whole cluster."""
        return "etcd://" + ",".join(self.endpoints)

    def member(self, name: str) -> Member:
        (found,) = [m for m in self.members if m.name == name]
        return found

    def _command(self, member: Member) -> list[str]:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        client = f"http://{member.endpoint}"
        return [
            ETCD,
            "--name", member.name,
            "--data-dir", str(member.data_dir),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
            "--logger", "zap",
            "--log-level", "warn",
        ]  # fmt: skip

    def start(self, name: str) -> None:
        member = self.member(name)
        if member.running:
            return
        with member.log.open("ab") as log:
            member.process = subprocess.Popen(
                self._command(member), stdout=log, stderr=subprocess.STDOUT
            )

    def stop(self, name: str) -> None:
        """A clean shutdown (SIGTERM)."""
        self._signal(name, signal.SIGTERM)

    def kill(self, name: str) -> None:
        """A crash (SIGKILL)."""
        self._signal(name, signal.SIGKILL)

    def freeze(self, name: str) -> None:
        """A hung member (SIGSTOP): its sockets stay open, nothing answers."""
        process = self.member(name).process
        if process is not None:
            process.send_signal(signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        process = self.member(name).process
        if process is not None:
            process.send_signal(signal.SIGCONT)

    def _signal(self, name: str, signum: signal.Signals) -> None:
        member = self.member(name)
        process = member.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout=START_GUARD)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        member.process = None

    def healthy(self, name: str) -> bool:
        """The member runs and has a leader (etcd's own ``/health``)."""
        member = self.member(name)
        if not member.running:
            return False
        try:
            with urllib.request.urlopen(f"http://{member.endpoint}/health", timeout=1) as answer:
                return bool(json.loads(answer.read()).get("health") == "true")
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def wait_healthy(self, names: list[str] | None = None) -> None:
        """Until every named (default: every running) member has a leader."""
        wanted = names if names is not None else [m.name for m in self.members if m.running]
        until = time.monotonic() + START_GUARD
        while not all(self.healthy(name) for name in wanted):
            for name in wanted:
                member = self.member(name)
                if member.process is not None and member.process.poll() is not None:
                    raise RuntimeError(f"etcd {name} exited; see {member.log}")
            if time.monotonic() > until:
                raise TimeoutError(f"etcd members {wanted} not healthy; logs in {self.base}")
            time.sleep(0.05)

    def status(self) -> list[dict[str, object]]:
        """``etcdctl endpoint status`` of the running members."""
        running = [m.endpoint for m in self.members if m.running]
        output = subprocess.run(
            [ETCDCTL, "--endpoints", ",".join(running), "endpoint", "status", "-w", "json"],
            check=True,
            capture_output=True,
            env={"ETCDCTL_API": "3"},
            timeout=START_GUARD,
        ).stdout
        statuses: list[dict[str, object]] = json.loads(output)
        return statuses

    def leader(self) -> str:
        """The name of the current leader (waits for one)."""
        until = time.monotonic() + START_GUARD
        while True:
            for name, entry in zip(
                [m.name for m in self.members if m.running], self.status(), strict=True
            ):
                status = entry["Status"]
                assert isinstance(status, dict)
                if status["header"]["member_id"] == status["leader"]:
                    return name
            if time.monotonic() > until:
                raise TimeoutError("no etcd leader")
            time.sleep(0.05)

    def close(self) -> None:
        for member in self.members:
            self.kill(member.name)
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def running_cluster(
    size: int = 3,
    prefix: str = "kumonet-etcd-",
    *,
    heartbeat_ms: int = HEARTBEAT_MS,
    election_ms: int = ELECTION_MS,
) -> Iterator[EtcdCluster]:
    """Start ``size`` members, wait until they have a leader, and stop and
    remove everything afterwards, whatever happens."""
    # tmpfs when there is one: fsyncs on a shared disk would make every
    # test slow and its timing noisy.
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=shm if shm.is_dir() else None))
    members = [
        Member(
            name=f"member-{i}",
            client_port=free_port(),
            peer_port=free_port(),
            data_dir=base / f"member-{i}",
            log=base / f"member-{i}.log",
        )
        for i in range(1, size + 1)
    ]
    cluster = EtcdCluster(
        members,
        token=f"kumonet-test-{uuid.uuid4().hex[:8]}",
        base=base,
        heartbeat_ms=heartbeat_ms,
        election_ms=election_ms,
    )
    try:
        for member in members:
            cluster.start(member.name)
        cluster.wait_healthy()
        yield cluster
    finally:
        cluster.close()
