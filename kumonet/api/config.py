"""The server's configuration, read from an INI file with Neutron's own
section and option names, so that an operator's ``neutron.conf`` and
``ml2_conf.ini`` fragments apply unchanged."""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from pathlib import Path

from kumonet.model.segment import IdRange, TypeDriverConfig


@dataclass(frozen=True, slots=True)
class L3HAConfig:
    """``[DEFAULT] l3_ha*`` options, used by the router resources."""

    l3_ha: bool = False
    max_l3_agents_per_router: int = 3
    min_l3_agents_per_router: int = 2
    l3_ha_net_cidr: str = "169.254.192.0/18"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    types: TypeDriverConfig = field(default_factory=TypeDriverConfig)
    base_mac: str = "fa:16:3e:00:00:00"
    l3: L3HAConfig = field(default_factory=L3HAConfig)
    max_request_body_size: int = 114688  # Neutron's oslo.middleware default
    keystone_authtoken: dict[str, str] = field(default_factory=dict)
    # The INI holding [keystone_authtoken]: keystonemiddleware reads it too.
    keystone_config_file: str | None = None
    # ``[restconf] username/password``: OpenDaylight's northbound basic
    # credentials (RESTCONF view, networking-odl, status paths), admin:admin
    # by default as in ODL.
    restconf_username: str = "admin"
    restconf_password: str = "admin"


def _list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _ranges(value: str, option: str) -> tuple[IdRange, ...]:
    ranges = []
    for item in _list(value):
        low, sep, high = item.partition(":")
        if not sep:
            raise ValueError(f"{option}: '{item}' is not LOW:HIGH")
        ranges.append(IdRange(int(low), int(high)))
    return tuple(ranges)


def _vlan_ranges(value: str) -> dict[str, tuple[IdRange, ...]]:
    """``physnet1:100:200,physnet2`` (a bare physnet: no tenant ranges)."""
    out: dict[str, list[IdRange]] = {}
    for item in _list(value):
        parts = item.split(":")
        ranges = out.setdefault(parts[0], [])
        if len(parts) == 3:
            ranges.append(IdRange(int(parts[1]), int(parts[2])))
        elif len(parts) != 1:
            raise ValueError(f"network_vlan_ranges: '{item}' is not PHYSNET[:LOW:HIGH]")
    return {k: tuple(v) for k, v in out.items()}


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def load_config(path: str | Path | None) -> ServerConfig:
    parser = configparser.ConfigParser(interpolation=None)
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    default = parser.defaults()

    def opt(section: str, name: str) -> str | None:
        if section == "DEFAULT":
            return default.get(name)
        if parser.has_section(section) and parser.has_option(section, name):
            return parser.get(section, name)
        return None

    base = ServerConfig()
    types = base.types
    tunnel = dict(types.tunnel_ranges)
    if (vni := opt("ml2_type_vxlan", "vni_ranges")) is not None:
        tunnel["vxlan"] = _ranges(vni, "vni_ranges")
    if (tids := opt("ml2_type_gre", "tunnel_id_ranges")) is not None:
        tunnel["gre"] = _ranges(tids, "tunnel_id_ranges")
    if (gvni := opt("ml2_type_geneve", "vni_ranges")) is not None:
        tunnel["geneve"] = _ranges(gvni, "vni_ranges")
    type_drivers = opt("ml2", "type_drivers")
    tenant_types = opt("ml2", "tenant_network_types")
    flat = opt("ml2_type_flat", "flat_networks")
    vlan = opt("ml2_type_vlan", "network_vlan_ranges")
    mtu = opt("DEFAULT", "global_physnet_mtu")
    path_mtu = opt("ml2", "path_mtu")
    types = TypeDriverConfig(
        type_drivers=_list(type_drivers) if type_drivers is not None else types.type_drivers,
        tenant_network_types=_list(tenant_types) if tenant_types is not None
        else types.tenant_network_types,
        flat_networks=_list(flat) if flat is not None else types.flat_networks,
        vlan_ranges=_vlan_ranges(vlan) if vlan is not None else types.vlan_ranges,
        tunnel_ranges=tunnel,
        global_physnet_mtu=int(mtu) if mtu else types.global_physnet_mtu,
        path_mtu=int(path_mtu) if path_mtu else types.path_mtu,
    )
    for kind in types.tenant_network_types:
        if kind not in types.type_drivers:
            raise ValueError(f"tenant_network_types: '{kind}' is not in type_drivers")
    l3 = L3HAConfig(
        l3_ha=_bool(opt("DEFAULT", "l3_ha") or "false"),
        max_l3_agents_per_router=int(opt("DEFAULT", "max_l3_agents_per_router") or 3),
        min_l3_agents_per_router=int(opt("DEFAULT", "min_l3_agents_per_router") or 2),
        l3_ha_net_cidr=opt("DEFAULT", "l3_ha_net_cidr") or base.l3.l3_ha_net_cidr,
    )
    keystone = dict(parser.items("keystone_authtoken", raw=True)) \
        if parser.has_section("keystone_authtoken") else {}
    for name in default:
        keystone.pop(name, None)
    body_size = opt("oslo_middleware", "max_request_body_size")
    return ServerConfig(
        types=types,
        base_mac=(opt("DEFAULT", "base_mac") or base.base_mac).lower(),
        l3=l3,
        max_request_body_size=int(body_size) if body_size else base.max_request_body_size,
        keystone_authtoken=keystone,
        keystone_config_file=str(path) if keystone and path is not None else None,
        restconf_username=opt("restconf", "username") or base.restconf_username,
        restconf_password=opt("restconf", "password") or base.restconf_password,
    )
