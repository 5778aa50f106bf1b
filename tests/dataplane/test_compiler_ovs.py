"""Compiled plans on a real Open vSwitch: ovs-ofctl takes every line as rendered,
the switch holds exactly the plan, and `ofproto/trace` agrees with the
in-memory model on where packets go (a differential test)."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest

from kumonet.dataplane.compiler import HostPlan, compile_host, diff_flows
from kumonet.dataplane.oftable import OpenFlowTables, make_packet
from tests.dataplane.cloud import (
    MAC,
    OFPORT,
    PAIR_MAC,
    PATCH,
    TUN_H2,
    cloud_intent,
    h1_facts,
)
from tests.dataplane.conftest import OvsSandbox

BROADCAST = "ff:ff:ff:ff:ff:ff"


def install_cloud(ovs: OvsSandbox) -> tuple[str, str, HostPlan]:
    bridge, provider = ovs.name, f"{ovs.name}x"
    ovs.add_bridge(bridge)
    ovs.add_bridge(provider)
    for port_id, ofport in OFPORT.items():
        name = f"{ovs.name}-{port_id[-2:]}"
        ovs.vsctl("add-port", bridge, name, "--", "set", "interface", name, "type=dummy",
                  f"ofport_request={ofport}")  # fmt: skip
    facts = h1_facts(bridge, bridge_mappings={"physnet1": provider})
    plan = compile_host(cloud_intent(), facts)
    for tunnel in plan.tunnel_ports:  # named as the plan says: vxlan-192.0.2.2
        ovs.vsctl("add-port", bridge, tunnel.name, "--", "set", "interface", tunnel.name,
                  f"type={tunnel.tunnel_type}", "options:key=flow",
                  f"options:remote_ip={tunnel.remote_ip}", f"options:local_ip={tunnel.local_ip}",
                  f"ofport_request={facts.tunnel_ofports[tunnel.name]}")  # fmt: skip
    [patch] = plan.patch_ports
    ovs.vsctl(
        "add-port", bridge, patch.integration_port, "--", "set", "interface",
        patch.integration_port, "type=patch", f"options:peer={patch.provider_port}",
        f"ofport_request={PATCH}", "--", "add-port", provider, patch.provider_port, "--", "set",
        "interface", patch.provider_port, "type=patch", f"options:peer={patch.integration_port}",
    )  # fmt: skip
    for name in (bridge, provider):
        ovs.ofctl("--bundle", "add-flows", ovs.mgmt(name), "-", stdin="\n".join(plan.lines(name)))
    return bridge, provider, plan


def installed_cookies(ovs: OvsSandbox, bridge: str) -> list[int]:
    dump = ovs.ofctl("dump-flows", "--no-stats", ovs.mgmt(bridge))
    return [int(cookie, 16) for cookie in re.findall(r"cookie=(0x[0-9a-f]+)", dump)]


@pytest.mark.slow
def test_every_compiled_flow_is_installed_as_rendered(ovs: OvsSandbox) -> None:
    bridge, provider, plan = install_cloud(ovs)
    for name in (bridge, provider):
        cookies = installed_cookies(ovs, name)
        assert sorted(cookies) == sorted(plan.cookies(name))
        assert diff_flows(plan.bridge_flows(name), cookies).empty
        # diff-flows compares matches and actions as OVS parsed them: no difference.
        flow_file = ovs.run_dir / f"{name}.flows"
        flow_file.write_text("\n".join(plan.lines(name)) + "\n")
        assert ovs.ofctl("diff-flows", ovs.mgmt(name), str(flow_file)) == ""


PROTOCOL_KEYWORDS = {
    ("0x0800", None): "ip", ("0x0800", 6): "tcp", ("0x0800", 17): "udp", ("0x0806", None): "arp",
    ("0x86dd", None): "ipv6", ("0x86dd", 6): "tcp6", ("0x86dd", 58): "icmp6",
    ("0x0800", 1): "icmp", ("0x86dd", 17): "udp6",
}  # fmt: skip


def trace_flow(packet: dict[str, object]) -> str:
    """ofproto/trace wants protocol keywords before L4 fields, not dl_type/nw_proto."""
    fields = dict(packet)
    protocol = (str(fields.pop("dl_type")), fields.pop("nw_proto", None))
    keyword = PROTOCOL_KEYWORDS[protocol]  # type: ignore[index]
    # The exact-flow parser reads tp_src as tcp_src; name the UDP ports as such.
    if keyword in ("udp", "udp6"):
        fields = {
            {"tp_src": "udp_src", "tp_dst": "udp_dst"}.get(k, k): v for k, v in fields.items()
        }
    return ",".join([keyword, *(f"{name}={value}" for name, value in fields.items())])


def traced(
    ovs: OvsSandbox, bridge: str, packet: dict[str, object], *options: str
) -> tuple[set[int], bool, str]:
    """(ports the trace outputs to, whether it reaches the controller, datapath actions).

    `options` go after the flow (e.g. `--ct-next`, `trk,est` for each ct pass)."""
    text = ovs.appctl("ofproto/trace", bridge, trace_flow(packet), *options)
    ports: list[int] = []
    controller = False
    datapath = ""
    for line in text.splitlines():
        stripped = line.strip()
        match = re.fullmatch(r"output:(\d+)|-> output port is (\d+)", stripped)
        if match:
            ports.append(int(match.group(1) or match.group(2)))
        elif stripped.startswith(">> skipping output to input port"):
            ports.pop()
        elif stripped.startswith("Datapath actions:"):
            # One line per pass: conntrack recirculates the packet.
            datapath = f"{datapath} {stripped}".strip()
            controller = controller or "controller(" in stripped
    return set(ports), controller, datapath


def ip_from(name: str, src: str, dst_mac: str, **extra: object) -> dict[str, object]:
    packet: dict[str, object] = {"in_port": OFPORT[f"port-{name}"], "dl_src": MAC[name]}
    packet |= {"dl_dst": dst_mac, "dl_type": "0x0800", "nw_src": src, "nw_dst": "10.0.0.99"}
    # A TCP SYN: the ACL tables let a new connection start with a SYN only.
    return packet | {"nw_proto": 6, "tcp_flags": "syn", **extra}


def udp(packet: dict[str, object], source: int, destination: int) -> dict[str, object]:
    fields = {k: v for k, v in packet.items() if k != "tcp_flags"}
    return fields | {"nw_proto": 17, "tp_src": source, "tp_dst": destination}


def arp_from(name: str, sha: str, spa: str) -> dict[str, object]:
    return {"in_port": OFPORT[f"port-{name}"], "dl_src": MAC[name], "dl_dst": BROADCAST,
            "dl_type": "0x0806", "arp_op": 1, "arp_sha": sha, "arp_spa": spa,
            "arp_tpa": "10.0.0.13"}  # fmt: skip


CASES: dict[str, dict[str, object]] = {
    "same host": ip_from("a1", "10.0.0.11", MAC["a2"]),
    "to h2": ip_from("a1", "10.0.0.11", MAC["a3"]),
    "to h3": ip_from("a2", "10.0.0.12", MAC["a4"]),
    "broadcast": arp_from("a1", MAC["a1"], "10.0.0.11"),
    "arp spoof": arp_from("a1", MAC["a1"], "10.0.0.12"),
    "arp sha spoof": arp_from("a1", MAC["a2"], "10.0.0.11"),
    "ip spoof": ip_from("a1", "10.0.0.12", MAC["a2"]),
    "mac spoof": {**ip_from("a1", "10.0.0.11", MAC["a2"]), "dl_src": "fa:16:3e:de:ad:00"},
    "pair": {**ip_from("a1", "10.0.0.200", MAC["a2"]), "dl_src": PAIR_MAC},
    "pair crossed": {**ip_from("a1", "10.0.0.100", MAC["a2"]), "dl_src": PAIR_MAC},
    "unknown unicast": ip_from("a1", "10.0.0.11", "fa:16:3e:99:99:99"),
    "isolation": ip_from("b1", "10.0.0.11", MAC["a1"]),
    "dhcp discover": udp({**ip_from("a1", "0.0.0.0", BROADCAST), "nw_dst": "255.255.255.255"},
                         68, 67),
    "dhcp server": udp(ip_from("a1", "10.0.0.11", BROADCAST), 67, 68),
    "from tunnel": {"in_port": TUN_H2, "tun_id": "0x64", "dl_src": MAC["a3"],
                    "dl_dst": MAC["a1"], "dl_type": "0x0800"},
    "tunnel broadcast": {"in_port": TUN_H2, "tun_id": "0x64", "dl_src": MAC["a3"],
                         "dl_dst": BROADCAST, "dl_type": "0x0800"},
    "wrong vni": {"in_port": TUN_H2, "tun_id": "0xc8", "dl_src": MAC["a3"],
                  "dl_dst": MAC["a1"], "dl_type": "0x0800"},
    "vlan out": {"in_port": OFPORT["port-v1"], "dl_src": MAC["v1"], "dl_dst": MAC["v2"],
                 "dl_type": "0x0800", "nw_src": "10.1.0.11", "nw_dst": "10.1.0.12"},
    "vlan in": {"in_port": PATCH, "vlan_tci": "0x102a", "dl_src": MAC["v2"],
                "dl_dst": MAC["v1"], "dl_type": "0x0800"},
    "flat in": {"in_port": PATCH, "dl_src": MAC["x"], "dl_dst": BROADCAST,
                "dl_type": "0x0800"},
    "vm tagged": {"in_port": OFPORT["port-f1"], "vlan_tci": "0x102a", "dl_src": MAC["f1"],
                  "dl_dst": BROADCAST, "dl_type": "0x0800"},
    "ipv6 ok": {"in_port": OFPORT["port-a1"], "dl_src": MAC["a1"], "dl_dst": MAC["a2"],
                "dl_type": "0x86dd", "ipv6_src": "2001:db8::11", "nw_proto": 6,
                "tcp_flags": "syn"},
    "ipv6 spoof": {"in_port": OFPORT["port-a1"], "dl_src": MAC["a1"], "dl_dst": MAC["a2"],
                   "dl_type": "0x86dd", "ipv6_src": "2001:db8::12", "nw_proto": 6,
                   "tcp_flags": "syn"},
}  # fmt: skip


@pytest.mark.slow
def test_ofproto_trace_agrees_with_the_model(ovs: OvsSandbox) -> None:
    bridge, _, plan = install_cloud(ovs)
    model = OpenFlowTables(plan.bridge_flows(bridge).values())
    disagreements = []
    for name, packet in CASES.items():
        verdict = model.process(make_packet(**packet))
        ports, controller, datapath = traced(ovs, bridge, packet)
        if (ports, controller) != (verdict.ports(), bool(verdict.to_controller)):
            disagreements.append(
                f"{name}: ovs {sorted(ports)} controller={controller} ({datapath}); "
                f"model {sorted(verdict.ports())} controller={bool(verdict.to_controller)}"
            )
    assert not disagreements, "\n".join(disagreements)
    # The cases are not vacuous: some deliver, some drop, one reaches the controller.
    verdicts = [model.process(make_packet(**packet)) for packet in CASES.values()]
    assert sum(v.dropped for v in verdicts) >= 5 and sum(not v.dropped for v in verdicts) >= 10
    # The VLAN is pushed towards, and popped from, the physical network.
    assert "push_vlan(vid=42" in traced(ovs, bridge, CASES["vlan out"])[2]
    assert "pop_vlan" in traced(ovs, bridge, CASES["vlan in"])[2]


def apply(ovs: OvsSandbox, bridge: str, plan: HostPlan) -> None:
    """What the agent does: one bundle deleting obsolete cookies and adding the missing flows."""
    change = diff_flows(plan.bridge_flows(bridge), installed_cookies(ovs, bridge))
    ovs.ofctl(
        "--bundle", "add-flows", ovs.mgmt(bridge), "-", stdin="\n".join(change.bundle_lines())
    )


def durations(ovs: OvsSandbox, bridge: str) -> dict[int, float]:
    dump = ovs.ofctl("dump-flows", ovs.mgmt(bridge))
    found = re.findall(r"cookie=(0x[0-9a-f]+), duration=([0-9.]+)s", dump)
    return {int(cookie, 16): float(duration) for cookie, duration in found}


@pytest.mark.slow
def test_reapplying_and_changing_touch_only_what_changed(ovs: OvsSandbox) -> None:
    bridge, provider, plan = install_cloud(ovs)
    facts = h1_facts(bridge, bridge_mappings={"physnet1": provider})
    time.sleep(1.1)  # let installed flows age, so a re-added flow would show
    apply(ovs, bridge, compile_host(cloud_intent(), facts))  # an agent restart
    assert min(durations(ovs, bridge).values()) >= 1.0
    # a2 re-plugged on another ofport: only the flows that mention it are replaced.
    moved_facts = dataclasses.replace(facts, local_ofports={**OFPORT, "port-a2": 12})
    moved = compile_host(cloud_intent(), moved_facts)
    change = diff_flows(moved.bridge_flows(bridge), plan.cookies(bridge))
    apply(ovs, bridge, moved)
    ages = durations(ovs, bridge)
    assert sorted(ages) == sorted(moved.cookies(bridge))
    fresh = {cookie for cookie, age in ages.items() if age < 1.0}
    assert fresh == {flow.cookie for flow in change.add}
    assert 0 < len(fresh) < 15
