"""The agent's configuration, read from an INI file.

Neutron's own section and option names where they exist, so an operator's
``openvswitch_agent.ini`` fragments apply: ``[DEFAULT] host``,
``[ovs] integration_bridge, local_ip, bridge_mappings, datapath_type,
ovsdb_connection``, ``[agent] tunnel_types, report_interval``; kumonet's own
settings live in ``[kumonet]`` (``direct_arp_requests``, default true).

L3 hosts (Neutron's network nodes): ``[agent] l3_agent = true`` (kumonet's
name: one agent process plays every role of the host), ``[agent] agent_mode``
(``legacy`` only: no DVR), ``[agent] ha_vrrp_advert_int`` (seconds, Neutron's
option, default 0.1: see ``kumonet.l3.plan.VrrpSettings``),
``[agent] ha_conntrack_sync`` (default true: a conntrackd per HA router, so
SNATed connections survive a failover; see ``kumonet.l3.conntrackd``) and
``[kumonet] router_namespace_prefix`` (empty on a real host; the lab gives
each simulated host its own so they can share ``/run/netns``) and
``[kumonet] vswitchd_unixctl`` (``ovs-appctl -t`` target, default
``ovs-vswitchd``). Router state
(keepalived files) lives under ``[DEFAULT] state_path``.
"""

from __future__ import annotations

import configparser
import socket
from dataclasses import dataclass, field
from pathlib import Path

from kumonet.dataplane.dhcp import DhcpSettings

DEFAULT_REPORT_INTERVAL = 2.0  # seconds; an agent is dead after 3 missed reports
DEFAULT_STATE_PATH = Path("/var/lib/kumonet")
DEFAULT_VRRP_ADVERT_INT = 0.1
AGENT_MODES = ("legacy",)


class ConfigError(ValueError):
    """The configuration file is missing a setting or has a bad one."""


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def parse_bridge_mappings(value: str) -> dict[str, str]:
    """``physnet1:br-ex,physnet2:br-eth1`` → ``{"physnet1": "br-ex", ...}``."""
    mappings: dict[str, str] = {}
    for item in _split(value):
        physnet, sep, bridge = item.partition(":")
        if not sep or not physnet or not bridge:
            raise ConfigError(f"bad bridge mapping {item!r} (expected physnet:bridge)")
        if physnet in mappings:
            raise ConfigError(f"physical network {physnet!r} mapped twice")
        mappings[physnet] = bridge
    return mappings


@dataclass(frozen=True)
class AgentConfig:
    host: str
    server_urls: tuple[str, ...]
    ovsdb_connection: str
    ovs_rundir: Path
    local_ip: str | None
    integration_bridge: str = "br-int"
    datapath_type: str = "netdev"
    tunnel_types: tuple[str, ...] = ("vxlan",)
    bridge_mappings: dict[str, str] = field(default_factory=dict)
    report_interval: float = DEFAULT_REPORT_INTERVAL
    dhcp: DhcpSettings = field(default_factory=DhcpSettings)
    state_path: Path | None = None
    # Broadcast ARP requests for a known port's address go to that port only
    # (not flooded to every VM of the network): what keeps a bring-up of
    # hundreds of VMs from an ARP storm (bench/bringup_bench.py).
    direct_arp_requests: bool = True
    l3_agent: bool = False
    agent_mode: str = "legacy"
    router_namespace_prefix: str = ""
    ha_vrrp_advert_int: float = DEFAULT_VRRP_ADVERT_INT
    ha_conntrack_sync: bool = True
    # ``ovs-appctl -t`` target of ovs-vswitchd (a name found in OVS_RUNDIR, or
    # the control socket's path): the L3 role flushes provider bridges' MAC
    # tables after a failover to here.
    vswitchd_unixctl: str = "ovs-vswitchd"

    @property
    def l3_state_path(self) -> Path:
        """Where routers' keepalived files live (``state_path``, or the default)."""
        return self.state_path or DEFAULT_STATE_PATH

    def bridge_target(self, bridge: str) -> str:
        """The ``ovs-ofctl`` target of a bridge's service socket."""
        return f"unix:{self.ovs_rundir / bridge}.mgmt"

    @classmethod
    def from_file(cls, path: Path) -> AgentConfig:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with path.open() as handle:
                parser.read_file(handle)
        except OSError as error:
            raise ConfigError(f"cannot read {path}: {error.strerror}") from error
        except configparser.Error as error:
            raise ConfigError(f"{path}: {error}") from error
        return cls.from_parser(parser)

    @classmethod
    def from_parser(cls, parser: configparser.ConfigParser) -> AgentConfig:
        def get(section: str, option: str, default: str | None = None) -> str | None:
            if parser.has_option(section, option):
                return parser.get(section, option)
            return default

        server_urls = _split(get("kumonet", "server_urls", "") or "")
        if not server_urls:
            raise ConfigError("[kumonet] server_urls is required (comma-separated URLs)")
        ovsdb = get("ovs", "ovsdb_connection", "unix:/run/openvswitch/db.sock") or ""
        rundir = Path(get("kumonet", "ovs_rundir", "/run/openvswitch") or "/run/openvswitch")
        tunnel_types = _split(get("agent", "tunnel_types", "vxlan") or "")
        for kind in tunnel_types:
            if kind not in ("vxlan", "gre"):
                raise ConfigError(f"unsupported tunnel type {kind!r} (vxlan, gre)")
        local_ip = get("ovs", "local_ip") or None
        if tunnel_types and local_ip is None:
            raise ConfigError("[ovs] local_ip is required when tunnel_types is set")
        try:
            report_interval = float(
                get("agent", "report_interval", str(DEFAULT_REPORT_INTERVAL)) or 0
            )
        except ValueError as error:
            raise ConfigError(f"[agent] report_interval: {error}") from error
        if report_interval <= 0:
            raise ConfigError("[agent] report_interval must be positive")
        datapath_type = get("ovs", "datapath_type", "system") or "system"
        if datapath_type not in ("netdev", "system"):
            raise ConfigError(f"[ovs] datapath_type {datapath_type!r} (netdev or system)")
        state_path = get("DEFAULT", "state_path")
        direct_arp = (get("kumonet", "direct_arp_requests", "true") or "").strip().lower()
        if direct_arp not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"[kumonet] direct_arp_requests: {direct_arp!r} (true or false)")
        flags = ("true", "false", "1", "0", "yes", "no")
        l3_agent = (get("agent", "l3_agent", "false") or "").strip().lower()
        if l3_agent not in flags:
            raise ConfigError(f"[agent] l3_agent: {l3_agent!r} (true or false)")
        agent_mode = (get("agent", "agent_mode", "legacy") or "legacy").strip()
        if agent_mode not in AGENT_MODES:
            raise ConfigError(f"[agent] agent_mode {agent_mode!r} (only legacy; no DVR)")
        try:
            advert_int = float(
                get("agent", "ha_vrrp_advert_int", str(DEFAULT_VRRP_ADVERT_INT)) or 0
            )
        except ValueError as error:
            raise ConfigError(f"[agent] ha_vrrp_advert_int: {error}") from error
        if not 0.01 <= advert_int <= 40.95:
            raise ConfigError("[agent] ha_vrrp_advert_int must be 0.01..40.95 seconds")
        conntrack_sync = (get("agent", "ha_conntrack_sync", "true") or "").strip().lower()
        if conntrack_sync not in flags:
            raise ConfigError(f"[agent] ha_conntrack_sync: {conntrack_sync!r} (true or false)")
        return cls(
            host=get("DEFAULT", "host") or socket.gethostname(),
            server_urls=tuple(url.rstrip("/") for url in server_urls),
            ovsdb_connection=ovsdb,
            ovs_rundir=rundir,
            local_ip=local_ip,
            integration_bridge=get("ovs", "integration_bridge", "br-int") or "br-int",
            datapath_type=datapath_type,
            tunnel_types=tunnel_types,
            bridge_mappings=parse_bridge_mappings(get("ovs", "bridge_mappings", "") or ""),
            report_interval=report_interval,
            dhcp=DhcpSettings(
                lease_time=int(get("DEFAULT", "dhcp_lease_duration", "86400") or 86400),
                domain=get("DEFAULT", "dns_domain", "openstacklocal") or "openstacklocal",
            ),
            state_path=Path(state_path) if state_path else None,
            direct_arp_requests=direct_arp in ("true", "1", "yes"),
            l3_agent=l3_agent in ("true", "1", "yes"),
            agent_mode=agent_mode,
            router_namespace_prefix=(get("kumonet", "router_namespace_prefix", "") or "").strip(),
            ha_vrrp_advert_int=advert_int,
            ha_conntrack_sync=conntrack_sync in ("true", "1", "yes"),
            vswitchd_unixctl=(get("kumonet", "vswitchd_unixctl", "") or "").strip()
            or "ovs-vswitchd",
        )
