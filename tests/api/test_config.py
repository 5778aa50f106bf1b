from __future__ import annotations

from pathlib import Path

import pytest

from kumonet.api.config import load_config
from kumonet.model.segment import IdRange

SAMPLE = Path(__file__).resolve().parents[2] / "etc" / "kumonet.ini"


def test_neutron_option_names(tmp_path: Path) -> None:
    ini = tmp_path / "n.ini"
    ini.write_text("""
[DEFAULT]
global_physnet_mtu = 9000
base_mac = FA:16:3E:4A:00:00
l3_ha = True
max_l3_agents_per_router = 2
[ml2]
type_drivers = flat,vlan,vxlan
tenant_network_types = vlan,vxlan
path_mtu = 1550
[ml2_type_flat]
flat_networks = public
[ml2_type_vlan]
network_vlan_ranges = physnet1:10:20,physnet2
[ml2_type_vxlan]
vni_ranges = 100:200
[keystone_authtoken]
auth_url = http://keystone:5000
""")
    config = load_config(ini)
    types = config.types
    assert types.tenant_network_types == ("vlan", "vxlan")
    assert types.vlan_ranges == {"physnet1": (IdRange(10, 20),), "physnet2": ()}
    assert types.tunnel_ranges["vxlan"] == (IdRange(100, 200),)
    assert types.flat_networks == ("public",)
    assert types.mtu_for("vxlan") == 1500 and types.mtu_for("vlan") == 9000
    assert config.base_mac == "fa:16:3e:4a:00:00"
    assert config.l3.l3_ha and config.l3.max_l3_agents_per_router == 2
    assert config.keystone_authtoken == {"auth_url": "http://keystone:5000"}


def test_sample_config_loads() -> None:
    config = load_config(SAMPLE)
    assert config.types.tenant_network_types == ("vxlan",)
    assert config.types.mtu_for("vxlan") == 1450


def test_tenant_type_must_be_a_driver(tmp_path: Path) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text("[ml2]\ntype_drivers = vlan\ntenant_network_types = vxlan\n")
    with pytest.raises(ValueError, match="tenant_network_types"):
        load_config(ini)
