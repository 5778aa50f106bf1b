"""The per-host agent configuration file."""

from __future__ import annotations

import configparser
from pathlib import Path

from kumonet.lab.agent import AgentConfig, agent_argv


def test_agent_config_uses_neutron_option_names() -> None:
    config = AgentConfig(
        host="host2",
        server_urls=("http://127.0.0.1:9696", "http://127.0.0.2:9696"),
        host_dir=Path("/run/kumonet-lab/kl/hosts/host2"),
        local_ip="192.0.2.2",
        bridge_mappings=(("physnet1", "br-ex"),),
    )
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.read_string(config.render())
    assert parsed["DEFAULT"]["host"] == "host2"
    assert parsed["ovs"]["ovsdb_connection"] == "unix:/run/kumonet-lab/kl/hosts/host2/db.sock"
    assert parsed["ovs"]["integration_bridge"] == "br-int"
    assert parsed["ovs"]["datapath_type"] == "netdev"
    assert parsed["ovs"]["local_ip"] == "192.0.2.2"
    assert parsed["ovs"]["bridge_mappings"] == "physnet1:br-ex"
    assert parsed["agent"]["tunnel_types"] == "vxlan"
    assert parsed["kumonet"]["server_urls"] == "http://127.0.0.1:9696,http://127.0.0.2:9696"
    assert parsed["kumonet"]["integration_bridge_mgmt"] == (
        "unix:/run/kumonet-lab/kl/hosts/host2/br-int.mgmt"
    )


def test_agent_is_started_with_its_config() -> None:
    argv = agent_argv(Path("/x/agent.ini"))
    assert list(argv[-2:]) == ["--config", "/x/agent.ini"]
