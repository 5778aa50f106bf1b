"""The pure part of the lab's dhclient script: env → commands and lease."""

from __future__ import annotations

import pytest

from kumonet.lab.dhclient_script import classless_routes, plan

BOUND = {
    "reason": "BOUND",
    "interface": "eth0",
    "new_ip_address": "10.0.0.5",
    "new_subnet_mask": "255.255.255.0",
    "new_routers": "10.0.0.1",
    "new_domain_name_servers": "10.0.0.2 10.0.0.3",
    "new_domain_name": "openstacklocal",
    "new_interface_mtu": "1450",
    "new_dhcp_lease_time": "86400",
}


def test_classless_routes_decode_rfc3442() -> None:
    value = "0 10 0 0 1 24 192 168 1 10 0 0 254 32 8 8 8 8 10 0 0 9 8 10 10 0 0 7"
    assert classless_routes(value) == [
        ("0.0.0.0/0", "10.0.0.1"),
        ("192.168.1.0/24", "10.0.0.254"),
        ("8.8.8.8/32", "10.0.0.9"),
        ("10.0.0.0/8", "10.0.0.7"),
    ]


def test_truncated_classless_route_is_an_error() -> None:
    with pytest.raises(ValueError):
        classless_routes("24 192 168 1 10 0")


def test_bound_sets_mtu_address_default_route_and_dns() -> None:
    result = plan(BOUND)
    assert result.commands == [
        ["ip", "link", "set", "dev", "eth0", "mtu", "1450"],
        ["ip", "-4", "addr", "replace", "10.0.0.5/24", "dev", "eth0"],
        ["ip", "-4", "route", "replace", "0.0.0.0/0", "via", "10.0.0.1", "dev", "eth0"],
    ]
    assert result.resolv_conf == "search openstacklocal\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"
    assert result.lease is not None
    assert result.lease["address"] == "10.0.0.5" and result.lease["prefixlen"] == 24
    assert result.lease["mtu"] == 1450 and result.lease["lease_time"] == 86400


def test_classless_routes_replace_the_router_option() -> None:
    env = {**BOUND, "new_rfc3442_classless_static_routes": "0 10 0 0 254 16 172 16 0 0 0 0"}
    routes = [c for c in plan(env).commands if c[2] == "route"]
    assert routes == [
        ["ip", "-4", "route", "replace", "0.0.0.0/0", "via", "10.0.0.254", "dev", "eth0"],
        ["ip", "-4", "route", "replace", "172.16.0.0/16", "dev", "eth0"],
    ]


def test_renew_with_a_new_address_flushes_the_old_one() -> None:
    commands = plan({**BOUND, "reason": "RENEW", "old_ip_address": "10.0.0.4"}).commands
    assert commands[0] == ["ip", "-4", "addr", "flush", "dev", "eth0"]


def test_other_reasons() -> None:
    assert plan({"reason": "PREINIT", "interface": "eth0"}).commands == [
        ["ip", "link", "set", "dev", "eth0", "up"]
    ]
    assert plan({"reason": "EXPIRE", "interface": "eth0"}).commands == [
        ["ip", "-4", "addr", "flush", "dev", "eth0"]
    ]
    failed = plan({"reason": "FAIL", "interface": "eth0"})
    assert failed.commands == [] and failed.lease is None
