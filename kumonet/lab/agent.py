"""Each host's kumonet-agent: its configuration file and how it is started.

The file is INI with Neutron's section and option names where they exist
(``openvswitch_agent.ini``: ``[ovs] integration_bridge, local_ip,
bridge_mappings, datapath_type, ovsdb_connection``, ``[agent]
tunnel_types``; ``neutron.conf``: ``[DEFAULT] host``), plus a ``[kumonet]``
section for what Neutron has no name for. The agent runs inside its host's
namespace with ``OVS_RUNDIR`` set to the host directory; it reaches the
servers through the lab's relay (see ``kumonet.lab.relay``).

L3 hosts (``lab up --l3-hosts M``) get, in addition::

    [agent]
    l3_agent = true                 # this host runs routers (false on the others)
    agent_mode = legacy             # Neutron's l3_agent.ini agent_mode (no DVR)
    [ovs]
    bridge_mappings = external:br-ex
    [kumonet]
    router_namespace_prefix = kl-host1-   # router namespaces: kl-host1-qrouter-<id>

Router namespaces carry the host's prefix because all simulated hosts share
one machine's ``/run/netns``: the prefix tells hosts apart, lets failure
injection find a host's routers (and their keepalived), and lets ``lab down``
remove them with the rest of the lab. Per-router keepalived state lives
under ``[DEFAULT] state_path`` (``<host dir>/agent``). ``[agent]
report_interval`` is written only when ``lab up --report-interval`` is given.
"""

from __future__ import annotations

import configparser
import importlib.util
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

AGENT_MODULE = "kumonet.agent.main"


@dataclass(frozen=True)
class AgentConfig:
    host: str
    server_urls: tuple[str, ...]
    host_dir: Path
    local_ip: str
    tunnel_types: tuple[str, ...] = ("vxlan",)
    bridge_mappings: tuple[tuple[str, str], ...] = ()
    integration_bridge: str = "br-int"
    datapath_type: str = "netdev"
    l3: bool = False
    router_namespace_prefix: str = ""
    report_interval: float | None = None

    def render(self) -> str:
        parser = configparser.ConfigParser(interpolation=None)
        d = self.host_dir
        parser["DEFAULT"] = {"host": self.host, "state_path": str(d / "agent")}
        parser["kumonet"] = {
            "server_urls": ",".join(self.server_urls),
            "ovs_rundir": str(d),
            "integration_bridge_mgmt": f"unix:{d / (self.integration_bridge + '.mgmt')}",
            "vswitchd_unixctl": str(d / "ovs-vswitchd.ctl"),
        }
        parser["ovs"] = {
            "ovsdb_connection": f"unix:{d / 'db.sock'}",
            "integration_bridge": self.integration_bridge,
            "datapath_type": self.datapath_type,
            "local_ip": self.local_ip,
            "bridge_mappings": ",".join(f"{net}:{br}" for net, br in self.bridge_mappings),
        }
        if self.l3:
            parser["kumonet"]["router_namespace_prefix"] = self.router_namespace_prefix
        agent = {"tunnel_types": ",".join(self.tunnel_types),
                 "l3_agent": "true" if self.l3 else "false"}
        if self.l3:
            agent["agent_mode"] = "legacy"
        if self.report_interval is not None:
            agent["report_interval"] = f"{self.report_interval:g}"
        parser["agent"] = agent
        out = io.StringIO()
        out.write("# kumonet-agent configuration, written by `kumonet lab up`\n")
        parser.write(out)
        return out.getvalue()


def agent_available() -> bool:
    try:
        return importlib.util.find_spec(AGENT_MODULE) is not None
    except ModuleNotFoundError:
        return False


def in_host_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` in the host's network namespace but the machine's mount namespace.

    Not ``ip netns exec``: it gives the command a private mount namespace, so
    the router namespaces the L3 agent creates (``ip netns add`` bind-mounts
    them under /run/netns) would exist for the agent alone; the lab (failure
    injection, ``router_exec``, ``down``) could not enter or delete them.
    nsenter execs, so the recorded pid is the agent's."""
    return ["nsenter", f"--net=/run/netns/{netns}", "--", *argv]


def agent_argv(config_file: Path, command: Sequence[str] | None = None) -> Sequence[str]:
    """``command`` if given, else the installed ``kumonet-agent`` script next
    to this interpreter, else the module run by this interpreter; plus
    ``--config FILE``."""
    if command is not None:
        return [*command, "--config", str(config_file)]
    script = Path(sys.executable).with_name("kumonet-agent")
    if script.exists():
        return [str(script), "--config", str(config_file)]
    return [sys.executable, "-m", AGENT_MODULE, "--config", str(config_file)]
