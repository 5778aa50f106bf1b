"""What a lab consists of, as JSON in its run directory.

``lab.json`` is written once by ``up`` (hosts, servers, options); each VM has
its own ``vms/<name>/vm.json`` so concurrent ``vm add`` commands never rewrite
one shared file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_VERSION = 1


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class HostRecord:
    name: str
    netns: str
    dir: str
    underlay_ip: str
    # L3-capable: br-ex on the external network, the agent's L3 role on
    l3: bool = False


@dataclass(frozen=True)
class LabState:
    prefix: str
    hosts: tuple[HostRecord, ...]
    server_urls: tuple[str, ...] = ()
    agents: bool = False
    underlay_mtu: int = 1500
    tunnel_types: tuple[str, ...] = ("vxlan",)
    # what `up` started the agents with, so `host recover` restarts the same
    agent_command: tuple[str, ...] | None = None
    report_interval: float | None = None
    version: int = STATE_VERSION

    @property
    def external(self) -> bool:
        """Whether the lab has the external network (it has L3 hosts)."""
        return any(host.l3 for host in self.hosts)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        return cls(
            prefix=data["prefix"],
            hosts=tuple(HostRecord(**host) for host in data["hosts"]),
            server_urls=tuple(data.get("server_urls", ())),
            agents=bool(data.get("agents", False)),
            underlay_mtu=int(data.get("underlay_mtu", 1500)),
            tunnel_types=tuple(data.get("tunnel_types", ("vxlan",))),
            agent_command=(
                tuple(data["agent_command"]) if data.get("agent_command") is not None else None
            ),
            report_interval=(
                float(data["report_interval"]) if data.get("report_interval") is not None
                else None
            ),
            version=int(data.get("version", STATE_VERSION)),
        )


@dataclass(frozen=True)
class VmRecord:
    name: str
    host: str
    netns: str
    port_id: str
    mac: str
    tap: str
    network_id: str | None = None
    server_url: str | None = None
    # Nova deletes the ports it created for ``--nic net-id`` and only unbinds
    # the ports it was given.
    created_port: bool = False
    mtu: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VmRecord:
        return cls(**data)
