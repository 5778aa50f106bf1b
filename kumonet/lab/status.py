"""What ``kumonet lab status`` reports: hosts, their processes, VMs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int | None

    @property
    def alive(self) -> bool:
        return self.pid is not None


@dataclass(frozen=True)
class HostStatus:
    name: str
    netns: str
    netns_exists: bool
    underlay_ip: str
    processes: tuple[ProcessStatus, ...]
    l3: bool = False
    failure: str | None = None  # how it was made to fail (agent, link, host), if it is
    failed_at: float | None = None
    router_namespaces: tuple[str, ...] = ()
    keepalived: tuple[int, ...] = ()  # pids


@dataclass(frozen=True)
class VmStatus:
    name: str
    host: str
    netns_exists: bool
    mac: str
    port_id: str
    addresses: tuple[str, ...]
    dhclient_pid: int | None
    fixed_ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExternalStatus:
    """The upstream namespace of the external network."""

    netns: str
    netns_exists: bool
    address: str  # 203.0.113.1/24


@dataclass(frozen=True)
class LabStatus:
    prefix: str
    run_dir: Path
    server_urls: tuple[str, ...]
    relay: ProcessStatus | None
    hosts: tuple[HostStatus, ...]
    vms: tuple[VmStatus, ...]
    external: ExternalStatus | None = None
