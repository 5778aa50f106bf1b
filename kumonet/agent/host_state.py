"""Translation between the dataplane compiler's types and the OVS adapters' types.

The compiler (``kumonet.dataplane``) is pure: it takes ``HostFacts`` (which ofport
each local VIF, tunnel and patch port has) and returns a ``HostPlan`` (flows per
bridge, tunnel ports, patch ports). These functions turn the OVSDB snapshot into
``HostFacts`` and the plan into what ``Ovsdb`` and ``OpenFlowBridge`` apply, so the
agent's reconciler is a few calls::

    facts = host_facts(ovsdb.ports(), host="host1", tunnel_ip="192.0.2.1",
                       integration_bridge="br-int", bridge_mappings={"physnet1": "br-ex"})
    plan = compile_host(intent, facts)
    await ovsdb.reconcile_tunnels("br-int", tunnel_specs(plan, "br-int"))
    await ovsdb.reconcile_patch_ports(patch_specs(plan, "br-int"), bridges=[...])
    for bridge in plan.flows:
        await OpenFlowBridge.for_bridge(rundir, bridge).reconcile(desired_flows(plan, bridge))

New ofports (a tunnel port just created) change the facts, so the agent compiles
again after the port step; the compiler leaves out flows whose ofport is unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import cast

from kumonet.agent.ovsdb import PatchPortSpec, PortState, TunnelPortSpec, TunnelType, patch_pair
from kumonet.dataplane.compiler import HostPlan
from kumonet.dataplane.intent import TUNNEL_TYPES, HostFacts


def tunnel_specs(plan: HostPlan, integration_bridge: str) -> list[TunnelPortSpec]:
    specs = []
    for port in sorted(plan.tunnel_ports, key=lambda p: p.name):
        if port.tunnel_type not in TUNNEL_TYPES:
            raise ValueError(f"unknown tunnel type {port.tunnel_type!r} for {port.name}")
        spec = TunnelPortSpec(
            bridge=integration_bridge,
            kind=cast(TunnelType, port.tunnel_type),
            local_ip=port.local_ip,
            remote_ip=port.remote_ip,
        )
        if spec.name != port.name:
            raise ValueError(f"compiler named {port.name!r} what OVSDB calls {spec.name!r}")
        specs.append(spec)
    return specs


def patch_specs(plan: HostPlan, integration_bridge: str) -> list[PatchPortSpec]:
    specs = []
    for patch in sorted(plan.patch_ports, key=lambda p: p.physical_network):
        specs.append(
            PatchPortSpec(
                bridge=integration_bridge, name=patch.integration_port, peer=patch.provider_port
            )
        )
        specs.append(
            PatchPortSpec(
                bridge=patch.provider_bridge, name=patch.provider_port, peer=patch.integration_port
            )
        )
    return specs


def desired_flows(plan: HostPlan, bridge: str) -> dict[int, str]:
    """``OpenFlowBridge.reconcile``'s input: cookie -> ``add-flows`` line."""
    return {cookie: flow.render() for cookie, flow in plan.bridge_flows(bridge).items()}


def host_facts(
    ports: Iterable[PortState],
    *,
    host: str,
    tunnel_ip: str | None,
    integration_bridge: str,
    tunnel_types: tuple[str, ...] = ("vxlan",),
    bridge_mappings: Mapping[str, str] | None = None,
    direct_arp_requests: bool = False,
) -> HostFacts:
    """What the compiler needs to know about this host's OVS, from an OVSDB snapshot.

    Only ports with an ofport count: a port vswitchd has not (yet) created cannot be
    matched or output to.
    """
    mappings = dict(bridge_mappings or {})
    local: dict[str, int] = {}
    tunnels: dict[str, int] = {}
    patch_by_name: dict[str, int] = {}
    for port in ports:
        if port.bridge != integration_bridge or port.ofport is None:
            continue
        if port.iface_id is not None:
            local[port.iface_id] = port.ofport
        elif port.type in TUNNEL_TYPES:
            tunnels[port.name] = port.ofport
        elif port.type == "patch":
            patch_by_name[port.name] = port.ofport
    patches = {}
    for physnet, bridge in mappings.items():
        integration_end = patch_pair(integration_bridge, bridge)[0].name
        if integration_end in patch_by_name:
            patches[physnet] = patch_by_name[integration_end]
    return HostFacts(
        host=host,
        tunnel_ip=tunnel_ip,
        tunnel_types=tunnel_types,
        local_ofports=local,
        tunnel_ofports=tunnels,
        patch_ofports=patches,
        integration_bridge=integration_bridge,
        bridge_mappings=mappings,
        direct_arp_requests=direct_arp_requests,
    )
