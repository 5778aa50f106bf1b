"""A non-HA router on real namespaces, veths and OVS: routing, SNAT, floating IPs,
idempotent re-apply, reconcile and removal."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from kumonet.l3.ha_state import RouterHAState
from kumonet.l3.interface import host_end_name
from kumonet.l3.namespace import RouterNamespace, list_namespaces
from kumonet.l3.plan import Address
from kumonet.l3.router import L3Host
from tests.l3.netlab import (
    EXTERNAL_IP,
    FLOATING_IP,
    GATEWAY_IP,
    VM2_IP,
    VM_IP,
    NetLab,
    RouterPorts,
    netns_exec,
    router_intent,
)

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def ping(ns: str, address: str, count: int = 3) -> bool:
    result = subprocess.run(
        ["ip", "netns", "exec", ns, "ping", "-c", str(count), "-i", "0.1", "-W", "1", address],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def ping_eventually(ns: str, address: str) -> bool:
    # The first packet may wait for ARP and MAC learning: retry a few times.
    return any(ping(ns, address, count=1) for _ in range(20))


@contextmanager
def tcp_server(ns: str, address: str, port: int) -> Iterator[None]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.l3.tcp_probe", "serve",
         address, str(port)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def whoami(ns: str, address: str, port: int) -> str:
    return netns_exec(
        ns, sys.executable, "-c",
        f"import sys; sys.path.insert(0, {str(REPO)!r}); from tests.l3.tcp_probe import whoami;"
        f" whoami({address!r}, {port})",
    ).strip()  # fmt: skip


def _ignore(router_id: str, state: RouterHAState) -> None:
    raise AssertionError(f"a non-HA router reported {state}")


async def test_non_ha_router_routes_nats_and_cleans_up(netlab: NetLab) -> None:
    h1 = netlab.hosts["h1"]
    ports = RouterPorts()
    settings = h1.settings(netlab.root / "state", netlab.prefix, 0.1)
    async with L3Host(settings, h1.driver(), on_ha_state=_ignore) as l3:
        report = await l3.apply(router_intent(ports, ha_ip=None))
        plan = report.plan
        assert report.changed and report.namespace_created and report.keepalived is None
        ns = RouterNamespace(plan.namespace)
        assert await ns.addresses() == set(plan.addresses)
        assert Address(FLOATING_IP + "/32", f"qg-{ports.qg[:11]}") in plan.addresses

        vm, vm2, ext = netlab.ns("vm"), netlab.ns("vm2"), netlab.ns("ext")
        assert ping_eventually(vm, EXTERNAL_IP)
        assert ping_eventually(ext, FLOATING_IP)
        with tcp_server(ext, EXTERNAL_IP, 7001):
            # SNAT: a VM without a floating IP is seen as the gateway address...
            assert whoami(vm2, EXTERNAL_IP, 7001) == GATEWAY_IP
            # ...and one with a floating IP as its floating IP.
            assert whoami(vm, EXTERNAL_IP, 7001) == FLOATING_IP
        with tcp_server(vm, VM_IP, 7002):
            # DNAT: the floating IP reaches the VM, which sees the real client address.
            assert whoami(ext, FLOATING_IP, 7002) == EXTERNAL_IP
            # No NAT inside: the other VM is seen as itself.
            assert whoami(vm2, VM_IP, 7002) == VM2_IP

        # Applying the same intent again changes nothing.
        again = await l3.apply(router_intent(ports, ha_ip=None))
        assert not again.changed, again

        # Disassociating the floating IP removes its address and its NAT.
        fipless = await l3.apply(router_intent(ports, ha_ip=None, fips=False))
        assert fipless.addresses_changed == 1 and fipless.nft_replaced
        assert Address(FLOATING_IP + "/32", f"qg-{ports.qg[:11]}") not in await ns.addresses()
        assert not ping(ext, FLOATING_IP, count=2)
        with tcp_server(ext, EXTERNAL_IP, 7003):
            assert whoami(vm, EXTERNAL_IP, 7003) == GATEWAY_IP

        # Administratively down: torn down; up again: rebuilt.
        down = await l3.apply(replace(router_intent(ports, ha_ip=None), admin_state_up=False))
        assert not down.changed and plan.namespace not in list_namespaces()
        assert (await l3.apply(router_intent(ports, ha_ip=None))).namespace_created

        await l3.remove(ports.router_id)
        assert plan.namespace not in list_namespaces()
        assert await h1.driver().router_ports() == {}
        assert host_end_name(ports.qr) not in h1.vsctl("list-ports", "br-int").split()
        assert not settings.router_dir(ports.router_id).exists()


async def test_reconcile_removes_unwanted_routers_and_keeps_wanted_ones(netlab: NetLab) -> None:
    h1 = netlab.hosts["h1"]
    settings = h1.settings(netlab.root / "state", netlab.prefix, 0.1)
    keep, drop = RouterPorts(), RouterPorts()
    async with L3Host(settings, h1.driver(), on_ha_state=lambda r, s: None) as l3:
        kept = (await l3.apply(router_intent(keep, ha_ip="169.254.192.1", ha_port=keep.ha1))).plan
        dropped = (await l3.apply(router_intent(drop, ha_ip=None))).plan
        keepalived_pid = l3.keepalived(keep.router_id).pid
        assert keepalived_pid is not None

    # A restarted agent that wants only `keep`.
    async with L3Host(settings, h1.driver(), on_ha_state=lambda r, s: None) as l3:
        reports = await l3.reconcile([router_intent(keep, ha_ip="169.254.192.1", ha_port=keep.ha1)])
        assert not reports[keep.router_id].changed
        assert l3.keepalived(keep.router_id).pid == keepalived_pid
        assert dropped.namespace not in list_namespaces()
        assert kept.namespace in list_namespaces()
        assert set(await h1.driver().router_ports()) == {keep.router_id}
        await l3.reconcile([])
        assert kept.namespace not in list_namespaces()
        assert await h1.driver().router_ports() == {}
        assert l3.present_routers() == set()
