"""A throwaway Open vSwitch (ovsdb-server + ovs-vswitchd, userspace datapath) per test."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.environment import needs

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


@dataclass(frozen=True)
class OvsSandbox:
    """The daemons run in their own network namespace (named ``prefix``): the netdev
    datapath creates an ``ovs-netdev`` tap and one tap per bridge in its namespace,
    which would collide with any other userspace OVS in the root namespace. The
    sockets are files in ``rundir``, reachable from the test process."""

    rundir: Path
    netns: str
    prefix: str  # unique per test: bridge, veth and namespace names start with it

    @property
    def db_remote(self) -> str:
        return f"unix:{self.rundir}/db.sock"

    def mgmt(self, bridge: str) -> str:
        return f"unix:{self.rundir}/{bridge}.mgmt"

    def mgmt_path(self, bridge: str) -> Path:
        return self.rundir / f"{bridge}.mgmt"

    def name(self, suffix: str) -> str:
        name = f"{self.prefix}{suffix}"
        assert len(name) <= 15, name  # bridges of the netdev datapath are tap devices
        return name

    def vsctl(self, *args: str) -> str:
        return _run("ovs-vsctl", f"--db={self.db_remote}", "--timeout=10", *args, env=self.env)

    def bridges(self) -> list[str]:
        """This test's bridges (others in the shared OVS are left out)."""
        return [b for b in self.vsctl("list-br").split() if b.startswith(self.prefix)]

    def ofctl(self, *args: str) -> str:
        return _run("ovs-ofctl", "-O", "OpenFlow15", *args, env=self.env)

    def appctl(self, *args: str) -> str:
        return _run("ovs-appctl", "-t", str(self.rundir / "vswitchd.ctl"), *args, env=self.env)

    @property
    def env(self) -> dict[str, str]:
        d = str(self.rundir)
        return {**os.environ, "OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d}

    def start_vswitchd(self) -> None:
        d = self.rundir
        _run(
            "ip",
            "netns",
            "exec",
            self.netns,
            "ovs-vswitchd",
            self.db_remote,
            f"--pidfile={d}/ovs-vswitchd.pid",
            f"--unixctl={d}/vswitchd.ctl",
            f"--log-file={d}/ovs-vswitchd.log",
            "--detach",
            env=self.env,
        )

    def start_ovsdb_server(self) -> None:
        d = self.rundir
        _run(
            "ip", "netns", "exec", self.netns, "ovsdb-server", f"{d}/conf.db",
            f"--remote=punix:{d}/db.sock", f"--pidfile={d}/ovsdb-server.pid",
            f"--unixctl={d}/ovsdb-server.ctl", f"--log-file={d}/ovsdb-server.log", "--detach",
            env=self.env,
        )  # fmt: skip

    def stop_ovsdb_server(self) -> None:
        _stop_daemon(self.rundir / "ovsdb-server.ctl", self.rundir / "ovsdb-server.pid", self.env)

    def stop_vswitchd(self) -> None:
        _stop_daemon(self.rundir / "vswitchd.ctl", self.rundir / "ovs-vswitchd.pid", self.env)


def _run(*argv: str, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: rc={proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _stop_daemon(ctl: Path, pidfile: Path, env: dict[str, str]) -> None:
    """``ovs-appctl exit`` is immediate, where SIGTERM takes the daemons about 2 s."""
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    subprocess.run(
        ["ovs-appctl", "-t", str(ctl), "exit"],
        env=env,
        capture_output=True,
        timeout=10,
        check=False,
    )
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.025)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def ovs_daemons() -> Iterator[OvsSandbox]:
    """One OVS per test module (stopping vswitchd takes over a second); each test gets
    its own name prefix through ``ovs`` and its bridges are deleted after it."""
    needs(tools=("ovs-vswitchd", "ovsdb-server"))
    # A short path: unix socket paths (RUNDIR/<bridge>.mgmt) are limited to 107 bytes.
    rundir = Path(tempfile.mkdtemp(prefix="kn6-", dir="/tmp"))
    netns = f"k6{uuid.uuid4().hex[:5]}"
    sandbox = OvsSandbox(rundir=rundir, netns=netns, prefix=netns)
    env = sandbox.env
    d = rundir
    try:
        _run("ip", "netns", "add", netns, env=env)
        _run("ovsdb-tool", "create", f"{d}/conf.db", str(SCHEMA), env=env)
        sandbox.start_ovsdb_server()
        sandbox.vsctl("--no-wait", "init")
        sandbox.start_vswitchd()
        yield sandbox
    finally:
        sandbox.stop_vswitchd()
        sandbox.stop_ovsdb_server()
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True, check=False)
        shutil.rmtree(rundir, ignore_errors=True)


@pytest.fixture
def ovs(ovs_daemons: OvsSandbox) -> Iterator[OvsSandbox]:
    sandbox = dataclasses.replace(ovs_daemons, prefix=f"k6{uuid.uuid4().hex[:5]}")
    try:
        yield sandbox
    finally:
        for bridge in sandbox.vsctl("list-br").split():
            if bridge.startswith(sandbox.prefix):
                sandbox.vsctl("--if-exists", "del-br", bridge)
