"""Running the real ISC dhclient in a VM namespace.

Each VM gets its own config, pid file, lease file and log in its directory,
and the lab's own script (``kumonet.lab.dhclient_script``) instead of the
stock one. ``dhclient -1`` tries for ``timeout`` seconds and exits 2 without
a lease, leaving no process; with a lease it stays in the background to
renew, like a real VM, until ``vm del``/``down`` stops it by its pid file.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from kumonet.lab.command import in_netns, run
from kumonet.lab.errors import LabError

_CONF = """\
# written by kumonet lab: one VM's dhclient
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
timeout {timeout};
retry 60;
initial-interval 1;
request subnet-mask, broadcast-address, time-offset, routers, domain-name,
        domain-name-servers, domain-search, host-name, interface-mtu,
        rfc3442-classless-static-routes;
"""


@dataclass(frozen=True)
class DhcpLease:
    address: str
    prefixlen: int
    gateway: str | None
    dns: tuple[str, ...]
    mtu: int | None
    domain: str | None
    routes: tuple[tuple[str, str], ...]
    server: str | None

    def describe(self) -> str:
        return (
            f"address {self.address}/{self.prefixlen} gateway {self.gateway or '-'}"
            f" dns {','.join(self.dns) or '-'} mtu {self.mtu or '-'}"
            f" domain {self.domain or '-'}"
        )


@dataclass(frozen=True)
class DhclientFiles:
    vm_dir: Path

    @property
    def conf(self) -> Path:
        return self.vm_dir / "dhclient.conf"

    @property
    def pidfile(self) -> Path:
        return self.vm_dir / "dhclient.pid"

    @property
    def leases(self) -> Path:
        return self.vm_dir / "dhclient.leases"

    @property
    def log(self) -> Path:
        return self.vm_dir / "dhclient.log"

    @property
    def lease_json(self) -> Path:
        return self.vm_dir / "lease.json"


def write_script(path: Path) -> None:
    """The ``-sf`` executable: this interpreter running the lab's script."""
    path.write_text(
        f"#!{sys.executable}\n"
        "from kumonet.lab.dhclient_script import main\n"
        "raise SystemExit(main())\n"
    )
    path.chmod(0o755)


def read_lease(path: Path) -> DhcpLease:
    data = json.loads(path.read_text())
    return DhcpLease(
        address=data["address"],
        prefixlen=int(data["prefixlen"]),
        gateway=data.get("gateway"),
        dns=tuple(data.get("dns") or ()),
        mtu=data.get("mtu"),
        domain=data.get("domain"),
        routes=tuple((dest, gw) for dest, gw in data.get("routes") or ()),
        server=data.get("server"),
    )


async def obtain_lease(
    netns: str, files: DhclientFiles, script: Path, *, interface: str = "eth0", time_limit: int = 15
) -> DhcpLease:
    files.conf.write_text(_CONF.format(timeout=time_limit))
    files.lease_json.unlink(missing_ok=True)
    argv = [
        "dhclient", "-4", "-1", "-v",
        "-cf", str(files.conf), "-sf", str(script),
        "-pf", str(files.pidfile), "-lf", str(files.leases),
        "-e", f"KUMONET_LAB_VM_DIR={files.vm_dir}",
        interface,
    ]
    result = await run(in_netns(netns, argv), check=False, time_limit=time_limit + 10)
    with files.log.open("a") as log:
        log.write(result.stdout + result.stderr)
    if result.returncode != 0 or not files.lease_json.exists():
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise LabError(f"dhclient in {netns} got no lease within {time_limit} s:\n{tail}")
    return read_lease(files.lease_json)
