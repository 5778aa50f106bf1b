"""OvsVethDriver against a real OVS: the veth pair, its Neutron identity on br-int,
and finding/unplugging a router's ports."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kumonet.l3.command import run
from kumonet.l3.interface import OvsVethDriver, host_end_name
from kumonet.l3.namespace import RouterNamespace, delete_namespace, ensure_namespace
from kumonet.l3.plan import PlannedInterface
from tests.l3.netlab import NetLab

pytestmark = pytest.mark.lab


def test_host_end_name_is_a_vm_style_tap_name() -> None:
    assert host_end_name("0123456789abcdef") == "tap0123456789a"


async def test_plug_unplug(netlab: NetLab) -> None:
    host = netlab.hosts["h1"]
    driver = OvsVethDriver(ovsdb=host.ovsdb, ovs_namespace=host.netns)
    ns_name = netlab.ns("r-plug")
    await ensure_namespace(ns_name)
    try:
        ns = RouterNamespace(ns_name)
        iface = PlannedInterface("qr-0123456789", "qr", "0123456789ab-port", "fa:16:3e:00:00:aa",
                                 mtu=1450)  # fmt: skip
        await driver.plug(ns_name, iface, "router-1", None)
        link = (await ns.links())["qr-0123456789"]
        assert link.mac == "fa:16:3e:00:00:aa" and link.mtu == 1450 and link.up
        tap = host_end_name(iface.port_id)
        external = host.vsctl("get", "Interface", tap, "external_ids")
        assert 'iface-id="0123456789ab-port"' in external
        assert 'attached-mac="fa:16:3e:00:00:aa"' in external
        assert "kumonet-router=router-1" in external
        offload = await run(["ip", "netns", "exec", ns_name, "ethtool", "-k", "qr-0123456789"])
        assert "tx-checksumming: off" in offload.stdout
        assert await driver.router_ports() == {"router-1": ["0123456789ab-port"]}

        # A changed MTU is corrected in place.
        await driver.plug(ns_name, replace(iface, mtu=1400), "router-1", link)
        assert (await ns.links())["qr-0123456789"].mtu == 1400

        await driver.unplug(iface.port_id)
        assert await driver.router_ports() == {}
        assert tap not in host.vsctl("list-ports", "br-int").split()
    finally:
        await delete_namespace(ns_name)
