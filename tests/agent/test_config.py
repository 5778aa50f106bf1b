"""Agent configuration: Neutron's option names, clear errors."""

from pathlib import Path

import pytest

from kumonet.agent.config import AgentConfig, ConfigError, parse_bridge_mappings

GOOD = """
[DEFAULT]
host = host1
[kumonet]
server_urls = http://192.0.2.254:9696/, http://192.0.2.253:9696
ovs_rundir = /tmp/h1
[ovs]
ovsdb_connection = unix:/tmp/h1/db.sock
local_ip = 192.0.2.1
bridge_mappings = external:br-ex
datapath_type = netdev
[agent]
tunnel_types = vxlan,gre
report_interval = 1.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.ini"
    path.write_text(text)
    return path


def test_reads_neutron_option_names(tmp_path: Path) -> None:
    config = AgentConfig.from_file(write(tmp_path, GOOD))
    assert config.host == "host1"
    assert config.server_urls == ("http://192.0.2.254:9696", "http://192.0.2.253:9696")
    assert config.bridge_mappings == {"external": "br-ex"}
    assert config.tunnel_types == ("vxlan", "gre")
    assert config.report_interval == 1.5
    assert config.bridge_target("br-int") == "unix:/tmp/h1/br-int.mgmt"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("server_urls = http://192.0.2.254:9696/, http://192.0.2.253:9696", "", "server_urls"),
        ("tunnel_types = vxlan,gre", "tunnel_types = geneve", "geneve"),
        ("local_ip = 192.0.2.1", "", "local_ip"),
        ("report_interval = 1.5", "report_interval = soon", "report_interval"),
        ("report_interval = 1.5", "report_interval = 0", "positive"),
        ("datapath_type = netdev", "datapath_type = dpdk", "datapath_type"),
        ("bridge_mappings = external:br-ex", "bridge_mappings = external", "bad bridge mapping"),
    ],
)
def test_bad_settings_say_what_is_wrong(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AgentConfig.from_file(write(tmp_path, GOOD.replace(old, new)))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        AgentConfig.from_file(tmp_path / "absent.ini")


def test_a_physnet_mapped_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="twice"):
        parse_bridge_mappings("a:br-a,a:br-b")


def test_l3_role_settings(tmp_path: Path) -> None:
    assert not AgentConfig.from_file(write(tmp_path, GOOD)).l3_agent
    text = GOOD.replace(
        "[agent]\n",
        "[agent]\nl3_agent = true\nagent_mode = legacy\nha_vrrp_advert_int = 0.2\n",
    ).replace("ovs_rundir = /tmp/h1\n", "ovs_rundir = /tmp/h1\nrouter_namespace_prefix = x-\n")
    config = AgentConfig.from_file(write(tmp_path, text))
    assert (config.l3_agent, config.agent_mode, config.ha_vrrp_advert_int) == (True, "legacy", 0.2)
    assert config.router_namespace_prefix == "x-"
    assert config.l3_state_path == Path("/var/lib/kumonet")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("l3_agent = maybe", "l3_agent"),
        ("agent_mode = dvr", "no DVR"),
        ("ha_vrrp_advert_int = 0", "ha_vrrp_advert_int"),
        ("ha_vrrp_advert_int = often", "ha_vrrp_advert_int"),
    ],
)
def test_bad_l3_settings(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AgentConfig.from_file(write(tmp_path, GOOD.replace("[agent]\n", f"[agent]\n{line}\n")))
