"""One simulated host's Open vSwitch: its own ovsdb-server and ovs-vswitchd.

Both run inside the host's network namespace with every file (database,
sockets, pid files, logs) in the host's directory, so hosts never share
anything and ``ovs-vsctl``/``ovs-ofctl`` reach a host through its socket
files from any namespace. ``ovs-vswitchd`` uses a fixed ``--unixctl`` socket
so ``ovs-appctl -t DIR/ovs-vswitchd.ctl`` finds it without guessing its pid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kumonet.lab.command import CommandResult, in_netns, run, wait_until

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
OPENFLOW = "OpenFlow15"


@dataclass(frozen=True)
class HostOVS:
    netns: str
    dir: Path

    @property
    def db_sock(self) -> Path:
        return self.dir / "db.sock"

    @property
    def db_file(self) -> Path:
        return self.dir / "conf.db"

    @property
    def ovsdb_pidfile(self) -> Path:
        return self.dir / "ovsdb-server.pid"

    @property
    def vswitchd_pidfile(self) -> Path:
        return self.dir / "ovs-vswitchd.pid"

    @property
    def vswitchd_ctl(self) -> Path:
        return self.dir / "ovs-vswitchd.ctl"

    @property
    def ovsdb_ctl(self) -> Path:
        return self.dir / "ovsdb-server.ctl"

    def mgmt(self, bridge: str) -> Path:
        """The bridge's OpenFlow service socket (no controller target needed)."""
        return self.dir / f"{bridge}.mgmt"

    @property
    def env(self) -> dict[str, str]:
        # Plain `ovs-vsctl` / `ovs-ofctl br-int` inside the host namespace
        # find this host's sockets through these.
        d = str(self.dir)
        return {"OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d}

    async def start_ovsdb(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.db_file.exists():
            await run(["ovsdb-tool", "create", str(self.db_file), str(SCHEMA)])
        await run(
            in_netns(
                self.netns,
                [
                    "ovsdb-server", str(self.db_file),
                    f"--remote=punix:{self.db_sock}",
                    f"--pidfile={self.ovsdb_pidfile}",
                    f"--unixctl={self.ovsdb_ctl}",
                    f"--log-file={self.dir / 'ovsdb-server.log'}",
                    "--detach", "--no-chdir",
                ],
            ),
            env=self.env,
        )
        await wait_for_socket(self.db_sock)

    async def start_vswitchd(self) -> None:
        await run(
            in_netns(
                self.netns,
                [
                    "ovs-vswitchd", f"unix:{self.db_sock}",
                    f"--pidfile={self.vswitchd_pidfile}",
                    f"--unixctl={self.vswitchd_ctl}",
                    f"--log-file={self.dir / 'ovs-vswitchd.log'}",
                    "--detach", "--no-chdir",
                ],
            ),
            env=self.env,
            time_limit=30,
        )

    async def vsctl(self, *args: str, time_limit: int = 10, wait: bool = True) -> str:
        """``ovs-vsctl`` against this host's database. ``wait`` waits until
        ovs-vswitchd has applied the change; ``--timeout`` keeps a dead
        vswitchd from hanging the lab."""
        argv = ["ovs-vsctl", f"--db=unix:{self.db_sock}", f"--timeout={time_limit}"]
        if not wait:
            argv.append("--no-wait")
        result = await run([*argv, *args], time_limit=time_limit + 5)
        return result.stdout

    async def ofctl(self, command: str, bridge: str, *args: str, stdin: str | None = None) -> str:
        result = await run(
            ["ovs-ofctl", "-O", OPENFLOW, command, f"unix:{self.mgmt(bridge)}", *args],
            stdin=stdin,
        )
        return result.stdout

    async def appctl(self, *args: str, check: bool = True) -> CommandResult:
        return await run(["ovs-appctl", "-t", str(self.vswitchd_ctl), *args], check=check)

    async def dump_flows(self, bridge: str = "br-int") -> list[str]:
        """The bridge's flows, one text line each, without the reply header."""
        out = await self.ofctl("dump-flows", bridge)
        return [line.strip() for line in out.splitlines() if "actions=" in line]


async def wait_for_socket(path: Path, time_limit: float = 10.0) -> None:
    await wait_until(path.is_socket, f"{path} did not appear", time_limit=time_limit)
