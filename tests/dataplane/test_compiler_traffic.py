"""Real packets through a compiled plan: two VM namespaces on one OVS (userspace
datapath) ping each other, and a spoofed source address gets nowhere."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from kumonet.dataplane.compiler import compile_host
from tests.dataplane.cloud import MAC, OFPORT, cloud_intent, h1_facts
from tests.dataplane.conftest import OvsSandbox

VMS = {"a1": "10.0.0.11/24", "a2": "10.0.0.12/24"}


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr}")
    return result


@pytest.fixture
def vms(ovs: OvsSandbox) -> Iterator[dict[str, str]]:
    """VM namespaces a1 and a2, plugged into the sandbox's bridge at their ofports."""
    bridge = ovs.name
    ovs.add_bridge(bridge)
    namespaces = {name: f"{ovs.name}{name}" for name in VMS}
    try:
        for name, address in VMS.items():
            vm, outside = namespaces[name], f"{ovs.name}{name[-1]}"
            sh("ip", "netns", "add", vm)
            sh("ip", "link", "add", outside, "netns", ovs.name, "type", "veth",
               "peer", "name", "eth0", "netns", vm)  # fmt: skip
            sh("ip", "-n", vm, "link", "set", "eth0", "address", MAC[name], "up")
            sh("ip", "-n", vm, "link", "set", "lo", "up")
            sh("ip", "-n", vm, "addr", "add", address, "dev", "eth0")
            sh("ip", "-n", ovs.name, "link", "set", outside, "up")
            # The userspace datapath does not fill in offloaded checksums (DESIGN.md traps).
            sh("ip", "netns", "exec", vm, "ethtool", "-K", "eth0", "tx", "off")
            sh("ip", "netns", "exec", ovs.name, "ethtool", "-K", outside, "tx", "off")
            ovs.vsctl("add-port", bridge, outside, "--", "set", "interface", outside,
                      f"ofport_request={OFPORT[f'port-{name}']}")  # fmt: skip
        plan = compile_host(cloud_intent(), h1_facts(bridge))
        ovs.ofctl(
            "--bundle", "add-flows", ovs.mgmt(bridge), "-", stdin="\n".join(plan.lines(bridge))
        )
        yield namespaces
    finally:
        for vm in namespaces.values():
            sh("ip", "netns", "del", vm, check=False)


def ping(vm: str, address: str, source: str | None = None) -> bool:
    args = ["ip", "netns", "exec", vm, "ping", "-c", "2", "-i", "0.2", "-W", "1", address]
    if source:
        args += ["-I", source]
    return sh(*args, check=False).returncode == 0


@pytest.mark.slow
def test_vms_on_one_host_ping_and_a_spoofed_source_is_dropped(vms: dict[str, str]) -> None:
    assert ping(vms["a1"], "10.0.0.12")
    assert ping(vms["a2"], "10.0.0.11")
    # a1 takes a2's neighbour's address by hand: its packets (and ARP) are dropped.
    sh("ip", "-n", vms["a1"], "addr", "add", "10.0.0.99/24", "dev", "eth0")
    sh("ip", "-n", vms["a2"], "neigh", "flush", "all")
    assert not ping(vms["a1"], "10.0.0.12", source="10.0.0.99")
    # An allowed address pair of a1 (10.0.0.100, with a1's MAC) does get through.
    sh("ip", "-n", vms["a1"], "addr", "add", "10.0.0.100/24", "dev", "eth0")
    assert ping(vms["a1"], "10.0.0.12", source="10.0.0.100")
