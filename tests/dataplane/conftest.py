"""A throwaway Open vSwitch (ovsdb-server + ovs-vswitchd, userspace datapath) per test.

Everything lives in a fresh run directory under /tmp (unix socket paths must
stay short) and carries a unique `kdp<hex>` name.  The daemons run inside a
network namespace of that name: the userspace datapath creates tap devices
(`ovs-netdev`, one per bridge) and two instances in one namespace collide on
`ovs-netdev`.  The ovs-* tools reach the daemons through unix sockets, from
outside.  Teardown stops the daemons by their pid files, then deletes the
namespace and the run directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.environment import needs

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


def _run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    result = subprocess.run(
        args, capture_output=True, text=True, env=env, input=stdin, check=False, timeout=30
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


@dataclass
class OvsSandbox:
    run_dir: Path
    name: str  # unique prefix for bridges and ports

    @property
    def env(self) -> dict[str, str]:
        run = str(self.run_dir)
        return {**os.environ, "OVS_RUNDIR": run, "OVS_DBDIR": run, "OVS_LOGDIR": run}

    def vsctl(self, *args: str) -> str:
        return _run("ovs-vsctl", f"--db=unix:{self.run_dir}/db.sock", "--timeout=10", *args)

    def ofctl(self, *args: str, stdin: str | None = None) -> str:
        return _run("ovs-ofctl", "-O", "OpenFlow15", *args, stdin=stdin)

    def mgmt(self, bridge: str) -> str:
        return f"unix:{self.run_dir}/{bridge}.mgmt"

    def appctl(self, *args: str) -> str:
        return _run("ovs-appctl", "-t", f"{self.run_dir}/vswitchd.ctl", *args)

    def add_bridge(self, bridge: str) -> None:
        self.vsctl(
            "add-br", bridge, "--", "set", "bridge", bridge,
            "datapath_type=netdev", "fail_mode=secure",
        )  # fmt: skip

    def bridges(self) -> list[str]:
        return self.vsctl("list-br").split()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stop(pid_file: Path, control: Path) -> None:
    """Ask the daemon to exit on its control socket; SIGKILL it if it lingers."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    subprocess.run(["ovs-appctl", "-t", str(control), "exit"], capture_output=True, check=False)
    for _ in range(100):
        if not _alive(pid):
            return
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def ovs_sandbox() -> Iterator[OvsSandbox]:
    """One throwaway OVS in its own network namespace; everything removed on exit."""
    run_dir = Path(tempfile.mkdtemp(prefix="kdp-", dir="/tmp"))
    sandbox = OvsSandbox(run_dir, f"kdp{secrets.token_hex(3)}")
    db = run_dir / "conf.db"
    netns = ("ip", "netns", "exec", sandbox.name)
    try:
        _run("ip", "netns", "add", sandbox.name)
        _run("ip", "-n", sandbox.name, "link", "set", "lo", "up")
        _run("ovsdb-tool", "create", str(db), str(SCHEMA))
        _run(
            *netns, "ovsdb-server", str(db), f"--remote=punix:{run_dir}/db.sock",
            f"--pidfile={run_dir}/ovsdb-server.pid", f"--log-file={run_dir}/ovsdb-server.log",
            f"--unixctl={run_dir}/ovsdb-server.ctl", "--detach", env=sandbox.env,
        )  # fmt: skip
        _run(
            *netns, "ovs-vswitchd", f"unix:{run_dir}/db.sock", f"--pidfile={run_dir}/vswitchd.pid",
            f"--log-file={run_dir}/vswitchd.log", f"--unixctl={run_dir}/vswitchd.ctl",
            # Dummy ports stand in for VMs: OpenFlow ports with no kernel device.
            "--enable-dummy", "--detach", env=sandbox.env,
        )  # fmt: skip
        sandbox.vsctl("--no-wait", "init")
        yield sandbox
    finally:
        try:
            for bridge in sandbox.bridges():
                sandbox.vsctl("--if-exists", "del-br", bridge)
        except RuntimeError:
            pass
        _stop(run_dir / "vswitchd.pid", run_dir / "vswitchd.ctl")
        _stop(run_dir / "ovsdb-server.pid", run_dir / "ovsdb-server.ctl")
        subprocess.run(["ip", "netns", "del", sandbox.name], capture_output=True, check=False)
        shutil.rmtree(run_dir, ignore_errors=True)


def _require_ovs() -> None:
    needs(tools=("ovs-vswitchd", "ovsdb-server"))


@pytest.fixture
def ovs() -> Iterator[OvsSandbox]:
    _require_ovs()
    with ovs_sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def two_ovs() -> Iterator[tuple[OvsSandbox, OvsSandbox]]:
    """Two hosts, each an OVS in its own namespace."""
    _require_ovs()
    with ovs_sandbox() as first, ovs_sandbox() as second:
        yield first, second
