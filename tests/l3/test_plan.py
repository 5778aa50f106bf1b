from __future__ import annotations

from pathlib import Path

import pytest

from kumonet.l3.intent import (
    ExtraRoute,
    FloatingIp,
    GatewayInterface,
    HaInterface,
    HaSettings,
    InternalInterface,
    RouterIntent,
)
from kumonet.l3.plan import (
    Address,
    L3Settings,
    Route,
    VrrpSettings,
    interface_name,
    namespace_name,
    plan_router,
    router_id_of_namespace,
)

ROUTER = "9a1b2c3d-0000-4000-8000-000000000001"
QR1 = "11111111-aaaa-4000-8000-000000000001"
QR2 = "22222222-bbbb-4000-8000-000000000002"
QG = "33333333-cccc-4000-8000-000000000003"
HA = "44444444-dddd-4000-8000-000000000004"


def _intent(*, ha: bool, snat: bool = True, fips: bool = True) -> RouterIntent:
    return RouterIntent(
        id=ROUTER,
        project_id="p1",
        internal=(
            InternalInterface(QR1, "fa:16:3e:00:00:01", ("192.168.1.1/24",), mtu=1450),
            InternalInterface(QR2, "fa:16:3e:00:00:02", ("192.168.2.1/24",), mtu=1450),
        ),
        gateway=GatewayInterface(
            QG, "fa:16:3e:00:00:03", ("203.0.113.101/24",), ("203.0.113.1",), enable_snat=snat
        ),
        floating_ips=(FloatingIp("203.0.113.105", "192.168.1.5"),) if fips else (),
        routes=(ExtraRoute("10.99.0.0/16", "192.168.2.254"),),
        ha=HaSettings(7, HaInterface(HA, "fa:16:3e:00:00:04", "169.254.192.3/18")) if ha else None,
    )


@pytest.fixture
def settings(tmp_path: Path) -> L3Settings:
    return L3Settings(state_path=tmp_path, namespace_prefix="h1-")


def test_names_follow_neutron_and_fit_the_kernel_limit() -> None:
    assert namespace_name(ROUTER) == f"qrouter-{ROUTER}"
    assert interface_name("qr", QR1) == "qr-11111111-aa"
    assert len(interface_name("qg", QG)) == 14
    assert router_id_of_namespace(f"h1-qrouter-{ROUTER}", "h1-") == ROUTER
    assert router_id_of_namespace(f"qrouter-{ROUTER}", "h1-") is None
    assert router_id_of_namespace("qdhcp-x") is None


def test_non_ha_router_has_every_address_and_route_static(settings: L3Settings) -> None:
    plan = plan_router(_intent(ha=False), settings)
    assert plan.namespace == f"h1-qrouter-{ROUTER}"
    assert [(i.name, i.kind, i.mtu) for i in plan.interfaces] == [
        ("qr-11111111-aa", "qr", 1450),
        ("qr-22222222-bb", "qr", 1450),
        ("qg-33333333-cc", "qg", 1500),
    ]
    assert set(plan.addresses) == {
        Address("192.168.1.1/24", "qr-11111111-aa"),
        Address("192.168.2.1/24", "qr-22222222-bb"),
        Address("203.0.113.101/24", "qg-33333333-cc"),
        Address("203.0.113.105/32", "qg-33333333-cc"),
    }
    assert plan.routes == (
        Route("0.0.0.0/0", "203.0.113.1", "qg-33333333-cc"),
        Route("10.99.0.0/16", "192.168.2.254"),
    )
    assert plan.virtual_addresses == () and plan.virtual_routes == ()
    assert plan.keepalived_conf is None and not plan.is_ha
    assert ("net.ipv4.ip_forward", "1") in plan.sysctls


def test_ha_router_holds_only_the_ha_address_statically(settings: L3Settings) -> None:
    plan = plan_router(_intent(ha=True), settings)
    assert plan.addresses == (Address("169.254.192.3/18", "ha-44444444-dd"),)
    assert plan.routes == ()
    assert Address("169.254.0.7/24", "ha-44444444-dd") in plan.virtual_addresses
    assert Address("203.0.113.105/32", "qg-33333333-cc") in plan.virtual_addresses
    assert Address("192.168.1.1/24", "qr-11111111-aa") in plan.virtual_addresses
    assert Route("0.0.0.0/0", "203.0.113.1", "qg-33333333-cc") in plan.virtual_routes
    # Active, it has everything the non-HA router has, plus the VRRP VIP.
    non_ha = plan_router(_intent(ha=False), settings)
    assert set(plan.all_addresses) - set(non_ha.addresses) == {
        Address("169.254.192.3/18", "ha-44444444-dd"),
        Address("169.254.0.7/24", "ha-44444444-dd"),
    }
    assert plan.keepalived_files is not None
    assert plan.keepalived_files.directory == settings.state_path / "ha_confs" / ROUTER


def test_keepalived_conf_is_vrrp3_equal_priority_nopreempt(settings: L3Settings) -> None:
    conf = plan_router(_intent(ha=True), settings).keepalived_conf
    assert conf is not None
    lines = [line.strip() for line in conf.splitlines()]
    assert "vrrp_version 3" in lines
    assert f"vrrp_instance {ROUTER} {{" in lines
    assert "state BACKUP" in lines and "state MASTER" not in lines
    assert "nopreempt" in lines
    assert "priority 50" in lines
    assert "virtual_router_id 7" in lines
    assert "interface ha-44444444-dd" in lines
    assert "advert_int 0.1" in lines
    assert "garp_master_repeat 3" in lines
    assert "garp_master_refresh 1" in lines
    assert f"vrrp_notify_fifo {settings.state_path}/ha_confs/{ROUTER}/notify.fifo" in lines
    # The ha- VIP is advertised; the rest is excluded from adverts but still moved.
    vip_block = conf.split("virtual_ipaddress {")[1].split("}")[0]
    assert vip_block.split() == ["169.254.0.7/24", "dev", "ha-44444444-dd"]
    excluded = conf.split("virtual_ipaddress_excluded {")[1].split("}")[0]
    assert "203.0.113.105/32 dev qg-33333333-cc" in excluded
    assert "192.168.2.1/24 dev qr-22222222-bb" in excluded
    routes = conf.split("virtual_routes {")[1].split("}")[0]
    assert "0.0.0.0/0 via 203.0.113.1 dev qg-33333333-cc" in routes
    assert "10.99.0.0/16 via 192.168.2.254" in routes


def test_advert_interval_is_configurable_and_checked(tmp_path: Path) -> None:
    settings = L3Settings(state_path=tmp_path, vrrp=VrrpSettings(advert_int=0.25))
    conf = plan_router(_intent(ha=True), settings).keepalived_conf
    assert conf is not None and "advert_int 0.25" in conf
    with pytest.raises(ValueError):
        VrrpSettings(advert_int=0.001)


def test_nat_snat_and_stateless_floating_ips(settings: L3Settings) -> None:
    ruleset = plan_router(_intent(ha=False), settings).nft_ruleset
    assert ruleset.startswith("table ip kumonet {")
    assert "ip daddr 203.0.113.105 notrack ip daddr set 192.168.1.5" in ruleset
    assert 'iifname != "qg-33333333-cc" ip saddr 192.168.1.5 notrack' in ruleset
    assert 'oifname "qg-33333333-cc" ip saddr 192.168.1.5 ip saddr set 203.0.113.105' in ruleset
    assert (
        'oifname "qg-33333333-cc" ip saddr { 192.168.1.0/24, 192.168.2.0/24 } '
        "snat to 203.0.113.101" in ruleset
    )
    assert (
        'iifname "qg-33333333-cc" ip daddr 203.0.113.101 ct state new tcp flags & syn != syn drop'
        in ruleset
    )
    # Only traffic leaving through the gateway is translated: never between subnets.
    for line in ruleset.splitlines():
        if "snat to" in line or "saddr set" in line:
            assert 'oifname "qg-33333333-cc"' in line


def test_no_snat_when_disabled_but_floating_ips_still_work(settings: L3Settings) -> None:
    ruleset = plan_router(_intent(ha=False, snat=False), settings).nft_ruleset
    assert "snat to" not in ruleset
    assert "ip daddr set 192.168.1.5" in ruleset


def test_router_without_gateway_has_no_nat(settings: L3Settings) -> None:
    intent = RouterIntent(
        id=ROUTER, internal=(InternalInterface(QR1, "fa:16:3e:00:00:01", ("10.0.0.1/24",)),)
    )
    plan = plan_router(intent, settings)
    assert "notrack" not in plan.nft_ruleset and "snat to" not in plan.nft_ruleset
    assert plan.routes == ()


def test_plan_is_deterministic(settings: L3Settings) -> None:
    assert plan_router(_intent(ha=True), settings) == plan_router(_intent(ha=True), settings)


def test_sysctls_forwarding_no_ipv6_and_fast_arp_retries(settings: L3Settings) -> None:
    plan = plan_router(_intent(ha=True), settings)
    assert ("net.ipv6.conf.all.disable_ipv6", "1") in plan.sysctls
    assert ("net.ipv4.conf.all.arp_ignore", "1") in plan.sysctls
    assert set(plan.link_sysctls) == {
        (f"net.ipv4.neigh.{i.name}.retrans_time_ms", "100") for i in plan.interfaces
    }
    assert len(plan.link_sysctls) == 4
