"""One conntrackd per HA router, syncing the namespace's conntrack table to its peers.

Floating IPs need no state (stateless NAT, see `kumonet.l3.plan`), but SNAT does:
a new master that does not know a connection's translation drops (or rewrites
differently) the replies. conntrackd, in FTFW mode (reliable, with sequence
numbers and retransmission), sends every conntrack change of the master's
namespace over the router's ``ha-`` link to the standbys, which keep them in
their external cache. keepalived calls the router's notify script on every
transition, following conntrackd's ``primary-backup.sh``: a new master commits
the external cache into its kernel table (``-c``), flushes both caches (``-f``)
and re-reads the kernel table (``-R``); a new standby shortens the timers of
its stale kernel entries (``-t``) and asks the master for a full resync
(``-n``). keepalived runs the script itself, so the commit does not wait for
(or depend on) the agent.

Each router has its own configuration, lock file and UNIX socket, so several
routers live on one host. Only the router's forwarded traffic is synced: the
HA network's own traffic (VRRP, conntrackd's messages) is filtered out in the
kernel. Multicast on the ``ha-`` link reaches every peer (up to
max_l3_agents_per_router); routers of one project share their HA network, so
each uses its own UDP port, derived from its VRRP id (unique in that network).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kumonet.l3.command import in_namespace, run
from kumonet.l3.process import cmdline, wait_until

CONNTRACKD = "conntrackd"
MULTICAST_GROUP = "225.0.0.50"
BASE_PORT = 3780
#: UNIX socket paths are limited to 108 bytes (sun_path); longer ones move to RUN_DIR.
MAX_SOCKET_PATH = 100
RUN_DIR = Path("/run/kumonet")


class ConntrackdError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class ConntrackdFiles:
    """Where one router's conntrackd lives (the router's directory under the state path)."""

    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "conntrackd.conf"

    @property
    def lock(self) -> Path:
        return self.directory / "conntrackd.lock"

    @property
    def log(self) -> Path:
        return self.directory / "conntrackd.log"

    @property
    def notify_script(self) -> Path:
        return self.directory / "conntrackd-notify.sh"

    @property
    def socket(self) -> Path:
        path = self.directory / "conntrackd.ctl"
        if len(str(path)) <= MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha256(str(self.directory).encode()).hexdigest()[:24]
        return RUN_DIR / f"conntrackd-{digest}.ctl"


def sync_port(vrrp_id: int) -> int:
    return BASE_PORT + vrrp_id


def conntrackd_conf(
    *, files: ConntrackdFiles, ha_interface: str, ha_cidr: str, vrrp_id: int, vip_network: str
) -> str:
    """conntrackd.conf for one router: FTFW over multicast on its ``ha-`` interface."""
    ha = ipaddress.ip_interface(ha_cidr)
    return "\n".join(
        [
            "Sync {",
            "    Mode FTFW {",
            # Entries committed on takeover live at most this long without updates.
            "        CommitTimeout 180",
            "        PurgeTimeout 5",
            "    }",
            "    Multicast {",
            f"        IPv4_address {MULTICAST_GROUP}",
            f"        Group {sync_port(vrrp_id)}",
            f"        IPv4_interface {ha.ip}",
            f"        Interface {ha_interface}",
            "        SndSocketBuffer 1249280",
            "        RcvSocketBuffer 1249280",
            "        Checksum on",
            "    }",
            "}",
            "General {",
            "    HashSize 8192",
            "    HashLimit 65536",
            "    Syslog off",
            f"    LogFile {files.log}",
            f"    LockFile {files.lock}",
            "    UNIX {",
            f"        Path {files.socket}",
            "        Backlog 20",
            "    }",
            "    NetlinkBufferSize 2097152",
            "    NetlinkBufferSizeMaxGrowth 8388608",
            "    Filter From Kernelspace {",
            "        Protocol Accept {",
            "            TCP",
            "            UDP",
            "            ICMP",
            "        }",
            # The HA link's own traffic (VRRP, conntrackd) and loopback are not the
            # router's: only what it forwards (SNAT) is worth syncing.
            "        Address Ignore {",
            "            IPv4_address 127.0.0.1",
            f"            IPv4_address {ha.network}",
            f"            IPv4_address {ipaddress.ip_network(vip_network)}",
            "        }",
            "    }",
            "}",
            "",
        ]
    )


def notify_script(files: ConntrackdFiles) -> str:
    """The script keepalived runs as ``notify_master``/``_backup``/``_fault``
    with ``primary``/``backup``/``fault`` (conntrackd's ``primary-backup.sh``)."""
    ctl = f"{CONNTRACKD} -C {files.config}"
    return "\n".join(
        [
            "#!/bin/sh",
            "# Written by the kumonet agent; run by keepalived on VRRP transitions.",
            'case "$1" in',
            "primary)",
            f"    {ctl} -c",  # commit the peers' connections into the kernel
            f"    {ctl} -f",  # flush the internal and external caches
            f"    {ctl} -R",  # re-read the kernel table into the internal cache
            "    ;;",
            "backup)",
            f"    {ctl} -t",  # shorten timers of the entries left from mastership
            f"    {ctl} -n",  # ask the master for a full resync
            "    ;;",
            "fault)",
            f"    {ctl} -t",
            "    ;;",
            "esac",
            "exit 0",
            "",
        ]
    )


@dataclass(frozen=True, slots=True)
class ConntrackdProcess:
    """conntrackd for one router: ``files`` under the state path, in ``namespace``."""

    files: ConntrackdFiles
    namespace: str

    def _argv(self) -> list[str]:
        return [CONNTRACKD, "-C", str(self.files.config), "-d"]

    @property
    def pid(self) -> int | None:
        # conntrackd writes no pid file: it is the process running our configuration.
        wanted = self._argv()
        for name in os.listdir("/proc"):
            if name.isdigit():
                argv = cmdline(int(name))
                if argv and Path(argv[0]).name == CONNTRACKD and argv[1:] == wanted[1:]:
                    return int(name)
        return None

    @property
    def running(self) -> bool:
        return self.pid is not None

    async def ensure(self, config: str, script: str) -> bool:
        """Run conntrackd with ``config``; True if it was (re)started. An unchanged
        configuration leaves a running daemon alone (its caches are the state)."""
        self.files.directory.mkdir(parents=True, exist_ok=True)
        try:
            current = self.files.config.read_text()
        except FileNotFoundError:
            current = None
        pid = self.pid
        if pid is not None and current == config:
            self._write_script(script)
            return False
        if pid is not None:
            await self.stop()
        self._write_script(script)
        self.files.config.write_text(config)
        # A killed conntrackd leaves its lock file and socket; it refuses to start
        # while the lock file exists.
        self.files.lock.unlink(missing_ok=True)
        self.files.socket.parent.mkdir(parents=True, exist_ok=True)
        self.files.socket.unlink(missing_ok=True)
        result = await run(in_namespace(self.namespace, self._argv()), check=False)
        if not result.ok:
            raise ConntrackdError(
                f"conntrackd for {self.namespace} did not start: {result.stderr.strip()}"
            )
        await self._wait_for(self.files.socket.exists, "start")
        return True

    def _write_script(self, script: str) -> None:
        path = self.files.notify_script
        try:
            if path.read_text() == script:
                return
        except FileNotFoundError:
            pass
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(script)
        tmp.chmod(0o755)
        tmp.replace(path)

    async def control(self, *flags: str) -> bool:
        """Run ``conntrackd -C conf FLAG…`` against the daemon; False on failure."""
        result = await run(
            in_namespace(self.namespace, [CONNTRACKD, "-C", str(self.files.config), *flags]),
            check=False,
        )
        return result.ok

    async def stop(self, *, grace: float = 5.0) -> None:
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            try:
                await self._wait_for(lambda: self.pid is None, "stop", time_limit=grace)
            except ConntrackdError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.files.lock.unlink(missing_ok=True)
        self.files.socket.unlink(missing_ok=True)
        self.files.config.unlink(missing_ok=True)
        self.files.notify_script.unlink(missing_ok=True)

    async def _wait_for(
        self, done: Callable[[], bool], what: str, *, time_limit: float = 10.0
    ) -> None:
        if not await wait_until(done, time_limit=time_limit):
            raise ConntrackdError(f"conntrackd for {self.namespace} did not {what}")
