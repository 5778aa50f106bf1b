"""Removing a lab completely: with or without its state, after a crash, twice.

Order matters: the API ports of its VMs first (while the state still says
which), then every process (pid files, then a scan for any process naming
the run directory, which finds what a crashed ``up`` never recorded, then
whatever still runs inside the lab's namespaces), then the namespaces by
prefix (their veths go with them), interfaces named after the lab in the
machine's namespace (defensive: the lab creates none there), and last the
run directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kumonet.lab.command import run
from kumonet.lab.errors import LabError
from kumonet.lab.layout import LabLayout
from kumonet.lab.neutron import NeutronClient
from kumonet.lab.process import find_by_marker, is_alive, netns_list, owned_pid, stop_pids
from kumonet.lab.state import VmRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeardownReport:
    processes: tuple[int, ...]
    namespaces: tuple[str, ...]
    interfaces: tuple[str, ...]
    run_dir_removed: bool
    logs: Path | None = None

    @property
    def anything(self) -> bool:
        return bool(self.processes or self.namespaces or self.interfaces or self.run_dir_removed)


async def teardown(layout: LabLayout, *, keep_logs: Path | None = None) -> TeardownReport:
    """Remove everything of the lab at ``layout``; safe to repeat. With
    ``keep_logs``, the logs (OVS, agents, relay, dhclient) are first copied
    below that directory."""
    prefix = layout.prefix
    marker = f"{layout.run_dir}/"
    await _release_ports(layout)
    pids = set(find_by_marker(marker))
    for pidfile in layout.run_dir.glob("**/*.pid") if layout.run_dir.exists() else ():
        pid = owned_pid(pidfile, marker)
        if pid is not None:
            pids.add(pid)
    namespaces = [ns for ns in await netns_list() if ns.startswith(layout.netns_prefix)]
    for ns in namespaces:
        pids.update(await netns_pids(ns))
    await stop_pids(pids)
    await delete_netns(namespaces)
    interfaces = await _stray_interfaces(layout.netns_prefix)
    for name in interfaces:
        await run(["ip", "link", "del", name], check=False)
    removed = layout.run_dir.exists()
    kept = None
    if removed and keep_logs is not None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        kept = _copy_logs(layout.run_dir, keep_logs / f"{prefix}-{stamp}")
    if removed:
        shutil.rmtree(layout.run_dir)
    with contextlib.suppress(OSError):
        layout.root.rmdir()  # only when no other lab is left
    return TeardownReport(
        tuple(sorted(pids)), tuple(namespaces), tuple(interfaces), removed, kept
    )


def _copy_logs(run_dir: Path, target: Path) -> Path:
    for log_file in run_dir.glob("**/*.log"):
        dest = target / log_file.relative_to(run_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(log_file, dest)
    return target


async def release_port(vm: VmRecord) -> None:
    """As Nova on delete: the port it created goes, a given port is unbound."""
    if not vm.server_url:
        return
    try:
        client = NeutronClient(vm.server_url, timeout=5)
        if vm.created_port:
            await client.delete_port(vm.port_id)
        else:
            await client.unbind_port(vm.port_id)
    except LabError as exc:
        log.warning("VM %s: port %s left in the API: %s", vm.name, vm.port_id, exc)


async def _release_ports(layout: LabLayout) -> None:
    if not layout.vms_dir.exists():
        return
    for path in layout.vms_dir.glob("*/vm.json"):
        try:
            vm = VmRecord.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError):
            continue
        await release_port(vm)


async def netns_pids(netns: str) -> list[int]:
    result = await run(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in result.stdout.split() if p.isdigit() and is_alive(int(p))]


async def delete_netns(namespaces: Sequence[str]) -> None:
    existing = set(await netns_list())
    for ns in namespaces:
        if ns in existing:
            await run(["ip", "netns", "del", ns])


async def _stray_interfaces(netns_prefix: str) -> list[str]:
    """Interfaces named after the lab in the machine's own namespace (the lab
    creates none there; a crash between steps must not leave one either)."""
    result = await run(["ip", "-o", "link", "show"], check=False)
    names = []
    for line in result.stdout.splitlines():
        fields = line.split(":", 2)
        if len(fields) > 1:
            name = fields[1].strip().split("@")[0]
            if name.startswith(netns_prefix):
                names.append(name)
    return names
