"""Real packets through compiled plans: two VM namespaces on one OVS (userspace
datapath) ping each other and a spoofed source address gets nowhere; VMs on two
hosts ping over a VXLAN tunnel between the hosts' OVS instances."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest

from kumonet.dataplane.compiler import compile_host
from kumonet.dataplane.intent import HostFacts
from tests.dataplane.cloud import H1, H2, MAC, OFPORT, cloud_intent, h1_facts
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


def plug_vm(ovs: OvsSandbox, bridge: str, name: str, address: str, ofport: int) -> str:
    vm, outside = f"{ovs.name}{name}", f"{ovs.name}{name[-1]}"
    sh("ip", "netns", "add", vm)
    sh("ip", "link", "add", outside, "netns", ovs.name, "type", "veth",
       "peer", "name", "eth0", "netns", vm)  # fmt: skip
    sh("ip", "-n", vm, "link", "set", "eth0", "address", MAC[name], "up")
    sh("ip", "-n", vm, "addr", "add", address, "dev", "eth0")
    sh("ip", "-n", ovs.name, "link", "set", outside, "up")
    sh("ip", "netns", "exec", vm, "ethtool", "-K", "eth0", "tx", "off")
    sh("ip", "netns", "exec", ovs.name, "ethtool", "-K", outside, "tx", "off")
    ovs.vsctl("add-port", bridge, outside, "--", "set", "interface", outside,
              f"ofport_request={ofport}")  # fmt: skip
    return vm


@pytest.mark.slow
def test_vms_on_two_hosts_ping_over_a_vxlan_tunnel(
    two_ovs: tuple[OvsSandbox, OvsSandbox],
) -> None:
    hosts = {"h1": (two_ovs[0], H1, "a1", "10.0.0.11/24"),
             "h2": (two_ovs[1], H2, "a3", "10.0.0.13/24")}  # fmt: skip
    first, second = two_ovs
    # The underlay: one veth between the hosts, each end on the host's br-phy,
    # which holds the host's tunnel IP (the userspace datapath's recipe).
    sh("ip", "link", "add", f"{first.name}u", "netns", first.name, "type", "veth",
       "peer", "name", f"{second.name}u", "netns", second.name)  # fmt: skip
    vms: list[str] = []
    try:
        for host, (ovs, tunnel_ip, vm_name, address) in hosts.items():
            phy, underlay = f"{ovs.name}p", f"{ovs.name}u"
            ovs.vsctl("add-br", phy, "--", "set", "bridge", phy, "datapath_type=netdev",
                      "--", "add-port", phy, underlay)  # fmt: skip
            sh("ip", "-n", ovs.name, "link", "set", underlay, "up")
            sh("ip", "netns", "exec", ovs.name, "ethtool", "-K", underlay, "tx", "off")
            sh("ip", "-n", ovs.name, "addr", "add", f"{tunnel_ip}/24", "dev", phy)
            sh("ip", "-n", ovs.name, "link", "set", phy, "up")
            bridge = ovs.name
            ovs.add_bridge(bridge)
            vms.append(plug_vm(ovs, bridge, vm_name, address, 1))
            remote = H2 if tunnel_ip == H1 else H1
            facts = HostFacts(host, tunnel_ip, ("vxlan",), {f"port-{vm_name}": 1},
                              {f"vxlan-{remote}": 20}, integration_bridge=bridge)  # fmt: skip
            plan = compile_host(cloud_intent(), facts)
            tunnel = next(t for t in plan.tunnel_ports if t.remote_ip == remote)
            ovs.vsctl("add-port", bridge, tunnel.name, "--", "set", "interface", tunnel.name,
                      "type=vxlan", "options:key=flow", f"options:local_ip={tunnel.local_ip}",
                      f"options:remote_ip={tunnel.remote_ip}", "ofport_request=20")  # fmt: skip
            ovs.ofctl("--bundle", "add-flows", ovs.mgmt(bridge), "-",
                      stdin="\n".join(plan.lines(bridge)))  # fmt: skip
        # The first packets towards a tunnel endpoint go while OVS resolves it: retry.
        for _ in range(10):
            if sh("ip", "netns", "exec", vms[0], "ping", "-c", "1", "-W", "1", "10.0.0.13",
                  check=False).returncode == 0:  # fmt: skip
                break
        assert ping(vms[0], "10.0.0.13")
        assert ping(vms[1], "10.0.0.11")
        # The tunnel carried them, with the network's VNI as the key.
        dump = first.ofctl("dump-flows", first.mgmt(first.name), "table=10")
        assert re.search(r"n_packets=[1-9]\d*,.*tun_id=0x64", dump), dump
    finally:
        for vm in vms:
            sh("ip", "netns", "del", vm, check=False)
