"""Failure injection on a lab host: what fails, how it is found and killed,
and the record that ``recover`` and ``status`` read.

Four kinds (``lab host fail HOST --how ...``; ``management`` only through
`Lab.fail_host` for now, the command line offers the other three):

``agent``
    the host's kumonet-agent, every keepalived of its routers and any other
    process naming a file under the agent's state path are killed (SIGKILL:
    no priority-0 advert, no cleanup, the addresses stay where they were).
    OVS keeps forwarding. Recover: the agent starts again (and brings its
    keepalived back itself).
``link``
    both ends of every cable of the host are set down: the underlay veth (so
    tunnels to and from its router namespaces die) and, on L3 hosts, the
    external veth. Everything keeps running, cut off. The agent still reaches
    the servers (a separate management network) unless ``management`` is
    asked too: then an nftables table in the host's namespace drops its
    connections to the relayed servers, as when a host's only NIC is cut
    (heartbeats and watches stall, the server declares the agent dead).
    Recover: links up, the table deleted.
``management``
    only the management network: the agent's connections to the relayed
    servers are dropped (the nftables table of ``link --management``), the
    data links stay up. Recover: the table deleted.
``host``
    the machine dies: ovs-vswitchd, ovsdb-server, the agent, keepalived and
    whatever else runs in the host's namespaces (SIGKILL). Recover: OVS
    starts again from its database (bridges, ports and their external_ids
    persist; flows do not), the bridges get their addresses back, the agent
    starts and pushes its flows again.

keepalived is found two ways, so neither a change of the L3 library's file
layout nor a process outside the state path escapes: its command line names
a file under the host's directory (the agent's ``state_path``), or its
network namespace is the host's or one of the host's router namespaces
(``<prefix>-<host>-qrouter-<id>``, compared by the namespace's inode). A host
has at most one failure at a time, recorded in ``<host dir>/failure.json``
(one file per host: concurrent commands on different hosts never share one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from kumonet.lab.errors import LabError
from kumonet.lab.process import cmdline, find_by_marker, is_alive
from kumonet.lab.state import write_json_atomically

KEEPALIVED = "keepalived"
FAILURE_FILE = "failure.json"


class FailureKind(StrEnum):
    AGENT = "agent"
    LINK = "link"
    MANAGEMENT = "management"
    HOST = "host"


def failure_kind(how: str) -> FailureKind:
    try:
        return FailureKind(how)
    except ValueError:
        kinds = ", ".join(kind.value for kind in FailureKind)
        raise LabError(f"unknown failure {how!r} (one of {kinds})") from None


@dataclass(frozen=True)
class Failure:
    host: str
    how: FailureKind
    at: float  # wall clock when it was injected
    killed: tuple[int, ...] = ()  # pids
    links: tuple[tuple[str, str], ...] = ()  # (namespace, interface) set down
    management: bool = False  # the agent cut from the servers too

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Failure:
        return cls(
            host=data["host"],
            how=FailureKind(data["how"]),
            at=float(data["at"]),
            killed=tuple(int(pid) for pid in data.get("killed", ())),
            links=tuple((ns, name) for ns, name in data.get("links", ())),
            management=bool(data.get("management", False)),
        )


def read_failure(host_dir: Path) -> Failure | None:
    try:
        return Failure.from_json(json.loads((host_dir / FAILURE_FILE).read_text()))
    except FileNotFoundError:
        return None


def write_failure(host_dir: Path, failure: Failure) -> None:
    write_json_atomically(host_dir / FAILURE_FILE, failure.to_json())


def clear_failure(host_dir: Path) -> None:
    (host_dir / FAILURE_FILE).unlink(missing_ok=True)


def claim_failure(host_dir: Path, failure: Failure) -> None:
    """Record ``failure`` unless the host has one already (atomic: of two
    concurrent ``fail`` commands one wins, the other is told)."""
    path = host_dir / FAILURE_FILE
    try:
        with path.open("x") as handle:
            handle.write(json.dumps(failure.to_json()))
    except FileExistsError:
        current = read_failure(host_dir)
        what = current.how.value if current else "?"
        raise LabError(
            f"{failure.host} has failed already ({what}); run `kumonet lab host recover"
            f" {failure.host}` first"
        ) from None


# -- the management network -------------------------------------------------------

MANAGEMENT_TABLE = "kumonet_lab_cut"


def management_cut_rules(servers: Sequence[tuple[str, int]]) -> str:
    """An nftables table dropping what the host sends to the relayed servers
    (the relay listens on the servers' loopback addresses inside the host)."""
    rules = "".join(
        f"    ip daddr {address} tcp dport {port} drop\n" for address, port in servers
    )
    return (
        f"table inet {MANAGEMENT_TABLE} {{\n"
        "  chain output {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"{rules}"
        "  }\n"
        "}\n"
    )


# -- finding the host's processes ------------------------------------------------


def _netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _program(pid: int) -> str:
    line = cmdline(pid).split(" ", 1)[0]
    return os.path.basename(line)


def processes_in(namespaces: Iterable[str]) -> list[int]:
    """Live processes whose network namespace is one of ``namespaces`` (names
    under /run/netns), never this process."""
    inodes = {ino for ns in namespaces if (ino := _netns_inode(f"/run/netns/{ns}")) is not None}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        if _netns_inode(f"/proc/{pid}/ns/net") in inodes and is_alive(pid):
            found.append(pid)
    return sorted(found)


def keepalived_pids(host_dir: Path, namespaces: Sequence[str]) -> list[int]:
    """keepalived of the host: naming a file under ``host_dir``, or running in
    one of ``namespaces`` (the host's and its router namespaces)."""
    by_file = {pid for pid in find_by_marker(f"{host_dir}/") if _program(pid) == KEEPALIVED}
    by_netns = {pid for pid in processes_in(namespaces) if _program(pid) == KEEPALIVED}
    return sorted(by_file | by_netns)


def host_pids(host_dir: Path, namespaces: Sequence[str]) -> list[int]:
    """Everything of the host: processes naming a file under its directory
    (OVS, agent, keepalived) and whatever runs in its namespaces."""
    return sorted(set(find_by_marker(f"{host_dir}/")) | set(processes_in(namespaces)))


async def kill_at_once(pids: Iterable[int], *, time_limit: float = 5.0) -> list[int]:
    """Kill ``pids`` as one event: all are stopped (SIGSTOP) first, so none
    reacts to another's death (keepalived's parent respawning its VRRP child,
    an agent restarting keepalived), then all get SIGKILL. Returns the pids
    that were alive; LabError if one survives."""
    targets = [pid for pid in pids if is_alive(pid)]
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + time_limit
    while any(is_alive(pid) for pid in targets):
        if loop.time() > deadline:
            alive = [pid for pid in targets if is_alive(pid)]
            raise LabError(f"processes {alive} survived SIGKILL")
        await asyncio.sleep(0.01)
    return targets
