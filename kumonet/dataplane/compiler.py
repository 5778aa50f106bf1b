"""The pure compiler: (intent, host facts) → the host's desired OVS state.

`compile_host(intent, facts)` returns a `HostPlan`: the flows of each bridge
(keyed by their content-derived cookie), the tunnel ports and the patch ports
the host should have.  No I/O, no clock.

The work is cut into compilation units whose inputs are small frozen values:
one unit per local port, per remote port and per network with local ports.
`PlanCompiler` keeps the units of its previous run and reuses every unit whose
inputs did not change, so the agent recompiling after one port change redoes
that port and its network only.  `diff_flows` turns a plan and the cookies
installed on a bridge into what one bundle must delete and add.

Flows per port (the design target is clearly fewer than OVN's 32 per local
port and 3 per remote port):

- local port, port security on, one MAC with n4 IPv4 and n6 IPv6 addresses:
  1 classify + n4 IPv4 + n4 ARP + 2 link-local (IPv6 source, NA target)
  + 2·n6 (IPv6 source, NA target) + 1 L2 lookup  → 6 for a plain IPv4 port;
- local port, port security off: 1 classify + 1 L2 lookup per MAC;
- remote port on a tunnelled network: 1 L2 lookup per MAC; on a provider
  network: none (unknown unicast leaves through the provider patch).

DHCP, DHCPv6 and router solicitations reach the agent through flows per
network (with local ports), not per port: 1 for DHCPv4, 1 for RS when a subnet
has an ipv6_ra_mode, 1 for DHCPv6 when a subnet has a DHCPv6 service.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

from kumonet.dataplane.dhcpv6 import dhcpv6_mode
from kumonet.dataplane.flow import (
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    IPPROTO_ICMPV6,
    IPPROTO_UDP,
    Action,
    Clone,
    Controller,
    Flow,
    Normal,
    Output,
    OutputToField,
    PipelineError,
    PopVlan,
    PushVlan,
    SetField,
)
from kumonet.dataplane.intent import (
    HostFacts,
    Intent,
    Network,
    Port,
    SecurityGroup,
    network_key,
    tunnel_port_name,
)
from kumonet.dataplane.pipeline import (
    IN_PORT_KEY,
    KUMONET_PIPELINE,
    NETWORK,
    ORIGIN,
    OUT_PORT,
    PROVIDER_PIPELINE,
    Pipeline,
)
from kumonet.dataplane.router_advert import RA_MODES
from kumonet.dataplane.security_group import (
    ACL_OFF,
    acl_host_flows,
    acl_mode,
    check_unique,
    conjunction_id,
    egress_flag,
    group_flows,
    group_key,
    group_members,
    ingress_flag,
    is_realisable,
    member_flow,
    port_dispatch_flows,
    remote_references,
    set_flag,
)

# A unit builder: makes the flows of one compilation unit when it is not reused.
_Builder = Callable[[], tuple[Flow, ...]]
Match = dict[str, str | int]

MULTICAST_BIT = "01:00:00:00:00:00/01:00:00:00:00:00"
UNTAGGED = "0x0000/0x1000"  # vlan_tci without the "VLAN present" bit

# Values of the ORIGIN register: 0 is a local port, the register's reset value.
ORIGIN_LOCAL = 0
ORIGIN_BY_TUNNEL_TYPE = {"vxlan": 1, "gre": 2}
ORIGIN_PROVIDER = 3


@dataclass(frozen=True, slots=True)
class TunnelPort:
    """A tunnel port the host needs on br-int (`options:key=flow`)."""

    name: str
    tunnel_type: str
    local_ip: str
    remote_ip: str


@dataclass(frozen=True, slots=True)
class PatchPort:
    """A patch pair between br-int and a provider bridge (bridge_mappings)."""

    physical_network: str
    provider_bridge: str
    integration_port: str  # on br-int, peer of provider_port
    provider_port: str  # on the provider bridge, peer of integration_port


@dataclass(frozen=True)
class HostPlan:
    """Everything one host should have; flows per bridge keyed by cookie."""

    flows: Mapping[str, Mapping[int, Flow]]
    tunnel_ports: frozenset[TunnelPort]
    patch_ports: frozenset[PatchPort]
    # Why an intent item got no flows or lost a conflict; for the agent's log.
    notes: tuple[str, ...] = ()

    def bridge_flows(self, bridge: str) -> Mapping[int, Flow]:
        return self.flows.get(bridge, {})

    def cookies(self, bridge: str) -> frozenset[int]:
        return frozenset(self.bridge_flows(bridge))

    def lines(self, bridge: str) -> list[str]:
        """The bridge's flows as `ovs-ofctl -O OpenFlow15 add-flows` lines, sorted."""
        flows = sorted(self.bridge_flows(bridge).values(), key=_flow_order)
        return [flow.render() for flow in flows]

    def flow_count(self) -> int:
        return sum(len(flows) for flows in self.flows.values())


def _flow_order(flow: Flow) -> tuple[int, int, str]:
    return (flow.table.number, -flow.priority, flow.body)


# A flow as the compiler makes it, or as the `add-flows` line it renders to (the
# agent's tools and tests that hold flows as text).
FlowT = TypeVar("FlowT", Flow, str)


@dataclass(frozen=True)
class FlowDiff(Generic[FlowT]):
    """What one bundle must do on a bridge: delete by exact cookie, then add."""

    delete_cookies: tuple[int, ...]
    add: tuple[FlowT, ...]

    @property
    def empty(self) -> bool:
        return not self.delete_cookies and not self.add

    def add_lines(self) -> list[str]:
        return [flow if isinstance(flow, str) else flow.render() for flow in self.add]

    def bundle_lines(self) -> list[str]:
        """The change as one `ovs-ofctl -O OpenFlow15 --bundle add-flows` input.

        Deletes go first and name exact cookies (mask -1), so only kumonet's
        obsolete flows go; a flow that replaces one with the same match and
        priority then lands in the same atomic bundle (a packet never sees both,
        nor neither).
        """
        lines = [f"delete cookie={cookie:#x}/-1" for cookie in self.delete_cookies]
        return lines + [f"add {line}" for line in self.add_lines()]

    def bundle_text(self) -> str:
        """`bundle_lines` as the text `add-flows -` reads."""
        return "".join(f"{line}\n" for line in self.bundle_lines())


def diff_flows(
    desired: Mapping[int, FlowT], installed: Mapping[int, int] | Iterable[int]
) -> FlowDiff[FlowT]:
    """Desired flows vs the kumonet cookies installed: nothing still wanted is touched.

    ``installed`` is the installed cookies, or each cookie with how many installed
    flows carry it (what a dump of the switch gives). A cookie carried by more than
    one flow is not what the compiler produced (an operator copied a flow, or a
    bug): it is deleted and, if still wanted, its one desired flow added back.
    """
    if isinstance(installed, Mapping):
        present: Collection[int] = installed.keys()
        duplicated = {cookie for cookie, count in installed.items() if count > 1}
    else:
        present = installed if isinstance(installed, (set, frozenset)) else set(installed)
        duplicated = set()
    delete = sorted({cookie for cookie in present if cookie not in desired} | duplicated)
    wanted = [
        (cookie, flow)
        for cookie, flow in desired.items()
        if cookie not in present or cookie in duplicated
    ]
    # Flows in pipeline order, so a bundle reads like `kumonet pipeline`; text by cookie.
    wanted.sort(key=lambda item: _flow_order(item[1]) if isinstance(item[1], Flow) else item[0])
    return FlowDiff(delete_cookies=tuple(delete), add=tuple(flow for _, flow in wanted))


# ----------------------------------------------------------------- directed ARP

BROADCAST = "ff:ff:ff:ff:ff:ff"


@dataclass(frozen=True, slots=True)
class _SharedAddresses:
    """The addresses of a network that some port may claim through an allowed
    address pair (a VIP moving between VMs): ARP requests for those keep
    being flooded, since their owner can change without the intent saying so."""

    exact: frozenset[str]
    networks: tuple[ipaddress.IPv4Network, ...]
    enabled: bool = True  # False: every ARP request is flooded

    @classmethod
    def of(cls, addresses: Iterable[str], enabled: bool = True) -> _SharedAddresses:
        exact, networks = set(), []
        for text in addresses:
            if "/" in text:
                with contextlib.suppress(ValueError):
                    net = ipaddress.ip_network(text, strict=False)
                    if isinstance(net, ipaddress.IPv4Network):
                        networks.append(net)
            else:
                exact.add(text)
        return cls(frozenset(exact), tuple(networks), enabled)

    def owned_by(self, port: Port) -> tuple[str, ...]:
        """The IPv4 fixed addresses ARP requests for which go straight to ``port``:
        only ports with port security, which can answer for nothing else."""
        if not self.enabled or not port.enforces_port_security:
            return ()
        owned = []
        for fixed in port.fixed_ips:
            address = fixed.ip_address
            if ":" in address or address in self.exact:
                continue
            if self.networks and any(
                ipaddress.IPv4Address(address) in net for net in self.networks
            ):
                continue
            owned.append(address)
        return tuple(owned)


def _arp_requests_for(addresses: Iterable[str]) -> list[Match]:
    """Broadcast ARP requests asking for one of ``addresses``. Sent to the
    address's port alone instead of flooded: a bring-up of N VMs that all ARP
    at once then costs N deliveries, not N² (every VM of the network woken by
    every request), as OVN's and Neutron's ARP responders avoid it too."""
    return [
        {"dl_dst": BROADCAST, "dl_type": hex(ETH_ARP), "arp_op": 1, "arp_tpa": address}
        for address in addresses
    ]


# ----------------------------------------------------------------- compiler


@dataclass(frozen=True, slots=True)
class _LocalPort:
    port: Port
    ofport: int
    acl: str = ACL_OFF  # how its security groups filter it (security_group.acl_mode)


@dataclass(frozen=True, slots=True)
class _NetworkView:
    """A network as one host sees it: the inputs of its network unit."""

    network: Network
    key: int
    local: tuple[tuple[int, bool, int], ...]  # (ofport, port security, ACL flag) of local ports
    flood_tunnels: tuple[int, ...]  # tunnel ofports of remote hosts with ports here
    unknown_tunnels: tuple[int, ...]  # those whose remote ports have port security off
    patch_ofport: int | None
    dhcp: bool
    router_solicitations: bool = False  # some IPv6 subnet has an ipv6_ra_mode
    dhcpv6: bool = False  # some IPv6 subnet has a DHCPv6 service


class PlanCompiler:
    """Compiles host plans, reusing the units of the previous compile.

    Results are exactly those of `compile_host`; the reuse only saves time.
    """

    def __init__(self, pipeline: Pipeline = KUMONET_PIPELINE) -> None:
        self._pipeline = pipeline
        self._units: dict[Hashable, tuple[Flow, ...]] = {}

    def compile(self, intent: Intent, facts: HostFacts) -> HostPlan:
        previous, self._units = self._units, {}
        notes: list[str] = []

        def unit(key: Hashable, build: _Builder) -> tuple[Flow, ...]:
            flows = previous.get(key)
            if flows is None:
                flows = build()
            self._units[key] = flows
            return flows

        networks = _realisable_networks(intent, facts, notes)
        local_by_net: dict[str, list[_LocalPort]] = {}
        remote_by_net: dict[str, list[Port]] = {}
        paired: dict[str, set[str]] = {}  # network → addresses some port may take over
        for port in sorted(intent.ports.values(), key=lambda port: port.id):
            network = networks.get(port.network_id)
            if network is not None and port.allowed_address_pairs:
                paired.setdefault(port.network_id, set()).update(
                    pair.ip_address for pair in port.allowed_address_pairs
                )
            if network is None or not port.host:
                continue
            if port.host == facts.host:
                ofport = facts.local_ofports.get(port.id)
                if ofport is None:
                    notes.append(f"port {port.id}: bound here but not plugged (no ofport)")
                elif port.admin_state_up:
                    mode = acl_mode(port, intent.security_groups)
                    local_by_net.setdefault(port.network_id, []).append(
                        _LocalPort(port, ofport, mode)
                    )
            else:
                remote_by_net.setdefault(port.network_id, []).append(port)

        tunnel_ports: set[TunnelPort] = set()
        # Remote ports share their host's tunnel: look it up once per host and type.
        tunnel_of_host: dict[tuple[str, str], int | None] = {}
        tunnels_here = tuple(sorted(facts.tunnel_ofports.items()))
        unit_flows = [unit(("host", tunnels_here), self._host_unit(tunnels_here))]
        dhcp_networks = {
            s.network_id for s in intent.subnets.values() if s.enable_dhcp and s.ip_version == 4
        }
        ra_networks = {
            s.network_id
            for s in intent.subnets.values()
            if s.ip_version == 6 and s.ipv6_ra_mode in RA_MODES
        }
        dhcpv6_networks = {
            s.network_id for s in intent.subnets.values() if dhcpv6_mode(s) is not None
        }
        for network_id in sorted(local_by_net):
            network = networks[network_id]
            key = network_key(network_id)
            locals_ = local_by_net[network_id]
            flood: set[int] = set()
            unknown: set[int] = set()
            shared = _SharedAddresses.of(paired.get(network_id, ()), facts.direct_arp_requests)
            for local in locals_:
                owned = shared.owned_by(local.port)
                unit_flows.append(
                    unit(("local", local, owned), self._local_port_unit(local, key, owned))
                )
            for port in remote_by_net.get(network_id, []):
                where = (network.network_type, port.host)
                if where in tunnel_of_host:
                    tunnel_ofport = tunnel_of_host[where]
                else:
                    tunnel_ofport = self._remote_tunnel(
                        intent, facts, network, port, tunnel_ports, notes
                    )
                    tunnel_of_host[where] = tunnel_ofport
                if network.is_tunneled and tunnel_ofport is not None:
                    flood.add(tunnel_ofport)
                    if not port.enforces_port_security:
                        unknown.add(tunnel_ofport)
                    owned = shared.owned_by(port)
                    unit_flows.append(
                        unit(
                            ("remote", port, network, tunnel_ofport, owned),
                            self._remote_port_unit(port, network, key, tunnel_ofport, owned),
                        )
                    )
            view = _NetworkView(
                network=network,
                key=key,
                local=tuple(
                    (lp.ofport, lp.port.enforces_port_security, ingress_flag(lp.acl))
                    for lp in locals_
                ),
                flood_tunnels=tuple(sorted(flood)),
                unknown_tunnels=tuple(sorted(unknown)),
                patch_ofport=(
                    facts.patch_ofports.get(network.physical_network or "")
                    if network.is_provider
                    else None
                ),
                dhcp=network_id in dhcp_networks,
                router_solicitations=network_id in ra_networks,
                dhcpv6=network_id in dhcpv6_networks,
            )
            unit_flows.append(unit(("network", view), self._network_unit(view)))
        filtered = [
            local for locals_ in local_by_net.values() for local in locals_ if local.acl != ACL_OFF
        ]
        unit_flows += self._security_group_units(intent, filtered, unit, notes)

        integration: dict[int, Flow] = {}
        keys: dict[str, Flow] = {}
        for flows in unit_flows:
            for flow in flows:
                other = keys.setdefault(flow.entry, flow)
                if other is not flow and other.cookie != flow.cookie:
                    notes.append(f"conflict, kept the first: {other.body} | dropped {flow.body}")
                    continue
                if integration.setdefault(flow.cookie, flow) is not flow and (
                    integration[flow.cookie].body != flow.body
                ):
                    raise PipelineError(f"cookie collision: {flow.body}")  # 2^-48 odds
        bridges: dict[str, Mapping[int, Flow]] = {facts.integration_bridge: integration}
        patch_ports = set()
        for physnet, bridge in sorted(facts.bridge_mappings.items()):
            patch_ports.add(PatchPort(physnet, bridge, f"int-{bridge}", f"phy-{bridge}"))
            normal = PROVIDER_PIPELINE.table("provider_forward").flow(0, actions=[Normal()])
            bridges[bridge] = {normal.cookie: normal}
        return HostPlan(
            flows=bridges,
            tunnel_ports=frozenset(tunnel_ports),
            patch_ports=frozenset(patch_ports),
            notes=tuple(notes),
        )

    # ---------------------------------------------------------------- units

    def _security_group_units(
        self,
        intent: Intent,
        filtered: list[_LocalPort],
        unit: Callable[[Hashable, _Builder], tuple[Flow, ...]],
        notes: list[str],
    ) -> list[tuple[Flow, ...]]:
        """The ACL units: one per filtered port (its groups), one per group in use
        here (its rules), one per member address of each remote group those
        rules name (so a member joining touches one unit per referencing group)."""
        p = self._pipeline
        found: list[tuple[Flow, ...]] = []
        keys: dict[int, str] = {}
        used: dict[str, SecurityGroup] = {}
        for local in filtered:
            port_keys = []
            for group_id in local.port.security_groups:
                key = group_key(group_id)
                check_unique("security group", keys, key, group_id)
                port_keys.append(key)
                group = intent.security_groups.get(group_id)
                if group is None:
                    notes.append(f"port {local.port.id}: security group {group_id} unknown")
                else:
                    used[group_id] = group
            dispatch = tuple(port_keys)
            found.append(
                unit(
                    ("acl-port", local.ofport, dispatch),
                    partial(port_dispatch_flows, p, local.ofport, dispatch),
                )
            )
        if not used:
            return found
        members = group_members(intent)
        conj_keys: dict[int, str] = {}
        for group_id in sorted(used):
            group = used[group_id]
            key = group_key(group_id)

            def build(group: SecurityGroup = group) -> tuple[Flow, ...]:
                return group_flows(p, group)[0]

            found.append(unit(("acl-group", group), build))
            # Every compile says which rules are not applied (the unit may be reused).
            notes += [
                f"security group {group_id} rule {rule.id}: ports of protocol {rule.protocol} "
                "cannot be matched by OpenFlow; rule not applied"
                for rule in group.rules
                if not is_realisable(rule)
            ]
            # address → conjunctions it belongs to, per direction
            dimension: dict[tuple[str, str], list[int]] = {}
            for (direction, remote_id), versions in sorted(remote_references(group).items()):
                conj = conjunction_id(direction, group_id, remote_id)
                check_unique(f"{direction} conjunction", conj_keys, conj, f"{group_id}/{remote_id}")
                for address in members.get(remote_id, ()):
                    if (6 if ":" in address else 4) in versions:
                        dimension.setdefault((direction, address), []).append(conj)
            for (direction, address), conj_ids in dimension.items():
                conj_tuple = tuple(sorted(conj_ids))
                found.append(
                    unit(
                        ("acl-member", direction, key, address, conj_tuple),
                        partial(_one, member_flow, p, direction, key, address, conj_tuple),
                    )
                )
        return found

    def _remote_tunnel(  # noqa: PLR0917 - private helper, called once
        self,
        intent: Intent,
        facts: HostFacts,
        network: Network,
        port: Port,
        tunnel_ports: set[TunnelPort],
        notes: list[str],
    ) -> int | None:
        """The tunnel ofport towards a remote port's host (None if not yet there)."""
        if not network.is_tunneled:
            return None
        host = intent.hosts.get(port.host)
        if host is None:
            notes.append(f"port {port.id}: host {port.host} has no known tunnel IP")
            return None
        if host.tunnel_ip == facts.tunnel_ip or facts.tunnel_ip is None:
            return None
        name = tunnel_port_name(network.network_type, host.tunnel_ip)
        tunnel_ports.add(TunnelPort(name, network.network_type, facts.tunnel_ip, host.tunnel_ip))
        return facts.tunnel_ofports.get(name)

    def _host_unit(self, tunnels: tuple[tuple[str, int], ...]) -> _Builder:
        p = self._pipeline

        def build() -> tuple[Flow, ...]:
            classify = p.table("classify")
            security = p.table("port_security")
            flows = p.miss_flows()
            flows += acl_host_flows(p)
            flows.append(p.table("output").flow(100, actions=[OutputToField(OUT_PORT.field)]))
            for name, ofport in tunnels:
                tunnel_type = name.split("-", 1)[0]
                origin = ORIGIN_BY_TUNNEL_TYPE.get(tunnel_type)
                if origin is None:
                    continue
                flows.append(
                    classify.flow(
                        100,
                        {"in_port": ofport},
                        [SetField(ORIGIN.field, str(origin)), classify.goto("tunnel_classify")],
                    )
                )
            to_dhcp: list[Action] = [security.goto("dhcp")]
            udp4: Match = {"dl_type": hex(ETH_IPV4), "nw_proto": IPPROTO_UDP}
            udp6: Match = {"dl_type": hex(ETH_IPV6), "nw_proto": IPPROTO_UDP}
            icmp6: Match = {"dl_type": hex(ETH_IPV6), "nw_proto": IPPROTO_ICMPV6}
            dhcp_client: Match = {"nw_src": "0.0.0.0", "nw_dst": "255.255.255.255"}
            generic: list[tuple[int, Match, list[Action]]] = [
                # A VM answering DHCP as a server, or advertising itself as an IPv6 router.
                (300, {**udp4, "tp_src": 67}, []),
                (300, {**udp6, "tp_src": 547}, []),
                (300, {**icmp6, "icmpv6_type": 134}, []),
                # DHCP DISCOVER/REQUEST before the client has an address.
                (250, {**udp4, **dhcp_client, "tp_src": 68, "tp_dst": 67}, to_dhcp),
                # ARP probes (RFC 5227) carry no sender address; they poison no cache.
                (250, {"dl_type": hex(ETH_ARP), "arp_op": 1, "arp_spa": "0.0.0.0"}, to_dhcp),
                # Duplicate address detection and MLD reports come from "::".
                (250, {**icmp6, "ipv6_src": "::", "icmpv6_type": 135, "icmpv6_code": 0}, to_dhcp),
                (250, {**icmp6, "ipv6_src": "::", "icmpv6_type": 143}, to_dhcp),
                # Router solicitations may come from "::" before an address is configured.
                (250, {**icmp6, "ipv6_src": "::", "icmpv6_type": 133}, to_dhcp),
                # Neighbour advertisements only for the port's own addresses (allowed at 220).
                (210, {**icmp6, "icmpv6_type": 136}, []),
            ]
            flows += [security.flow(priority, match, acts) for priority, match, acts in generic]
            return tuple(flows)

        return build

    def _local_port_unit(self, local: _LocalPort, key: int, arp_owned: tuple[str, ...]) -> _Builder:
        p = self._pipeline

        def build() -> tuple[Flow, ...]:
            port, ofport = local.port, local.ofport
            classify = p.table("classify")
            lookup = p.table("l2_lookup")
            enter: list[Action] = [
                SetField(NETWORK.field, hex(key)),
                SetField(IN_PORT_KEY.field, str(ofport)),
            ]
            to_port: list[Action] = [SetField(OUT_PORT.field, str(ofport))]
            if local.acl != ACL_OFF:
                enter.append(set_flag(egress_flag(local.acl)))
                to_port.append(set_flag(ingress_flag(local.acl)))
            # VMs send untagged frames only: a tag would leak onto a provider network's
            # wire as another VLAN (OVN and Neutron drop them too).
            untagged: Match = {"in_port": ofport, "vlan_tci": UNTAGGED}
            flows: list[Flow] = []
            for mac in port.macs():
                flows.append(
                    lookup.flow(
                        100,
                        {NETWORK.field: hex(key), "dl_dst": mac},
                        [*to_port, lookup.goto("ingress_ct")],
                    )
                )
            flows += [
                lookup.flow(
                    110, {NETWORK.field: hex(key), **match}, [*to_port, lookup.goto("ingress_ct")]
                )
                for match in _arp_requests_for(arp_owned)
            ]
            if not port.enforces_port_security:
                flows.append(classify.flow(90, untagged, [*enter, classify.goto("dhcp")]))
                return tuple(flows)
            security = p.table("port_security")
            to_dhcp: list[Action] = [security.goto("dhcp")]
            for mac, addresses in port.addresses_by_mac().items():
                flows.append(
                    classify.flow(
                        100,
                        {**untagged, "dl_src": mac},
                        [*enter, classify.goto("port_security")],
                    )
                )
                source: Match = {"in_port": ofport, "dl_src": mac}
                na: Match = {**source, "dl_type": hex(ETH_IPV6), "nw_proto": IPPROTO_ICMPV6}
                for address in [_link_local(mac), *addresses]:
                    if ":" in address:
                        flows.append(
                            security.flow(
                                200,
                                {**source, "dl_type": hex(ETH_IPV6), "ipv6_src": address},
                                to_dhcp,
                            )
                        )
                        flows.append(
                            security.flow(
                                220,
                                {
                                    **na,
                                    "icmpv6_type": 136,
                                    "icmpv6_code": 0,
                                    "nd_target": address,
                                },
                                to_dhcp,
                            )
                        )
                    else:
                        flows.append(
                            security.flow(
                                200,
                                {**source, "dl_type": hex(ETH_IPV4), "nw_src": address},
                                to_dhcp,
                            )
                        )
                        arp: Match = {"dl_type": hex(ETH_ARP), "arp_spa": address, "arp_sha": mac}
                        flows.append(security.flow(200, {**source, **arp}, to_dhcp))
            return tuple(flows)

        return build

    def _remote_port_unit(
        self,
        port: Port,
        network: Network,
        key: int,
        tunnel_ofport: int,
        arp_owned: tuple[str, ...],
    ) -> _Builder:
        p = self._pipeline

        def build() -> tuple[Flow, ...]:
            lookup = p.table("l2_lookup")
            to_tunnel: list[Action] = [
                SetField("tun_id", hex(network.segmentation_id or 0)),
                Output(tunnel_ofport),
            ]
            from_local: Match = {NETWORK.field: hex(key), ORIGIN.field: ORIGIN_LOCAL}
            # Below local entries (priority 100/110): during a migration the local copy wins.
            flows = [
                lookup.flow(90, {**from_local, "dl_dst": mac}, to_tunnel) for mac in port.macs()
            ]
            flows += [
                lookup.flow(95, {**from_local, **match}, to_tunnel)
                for match in _arp_requests_for(arp_owned)
            ]
            return tuple(flows)

        return build

    def _network_unit(self, view: _NetworkView) -> _Builder:
        p = self._pipeline

        def build() -> tuple[Flow, ...]:
            network, key = view.network, hex(view.key)
            lookup = p.table("l2_lookup")
            flows: list[Flow] = []
            if network.is_tunneled:
                tunnel_classify = p.table("tunnel_classify")
                flows.append(
                    tunnel_classify.flow(
                        100,
                        {ORIGIN.field: ORIGIN_BY_TUNNEL_TYPE[network.network_type],
                         "tun_id": hex(network.segmentation_id or 0)},
                        [SetField(NETWORK.field, key), tunnel_classify.goto("l2_lookup")],
                    )
                )  # fmt: skip
            elif view.patch_ofport is not None:
                classify = p.table("classify")
                enter: list[Action] = [
                    SetField(NETWORK.field, key),
                    SetField(ORIGIN.field, str(ORIGIN_PROVIDER)),
                ]
                # Untagged (flat) or the network's VLAN, which br-int pops.
                vlan_tci = "0x0000/0x1fff"
                if network.network_type == "vlan":
                    vlan_tci = f"{0x1000 | (network.segmentation_id or 0):#06x}/0x1fff"
                    enter.insert(0, PopVlan())
                patch: Match = {"in_port": view.patch_ofport, "vlan_tci": vlan_tci}
                flows.append(classify.flow(100, patch, [*enter, classify.goto("l2_lookup")]))
            if view.dhcp:
                dhcp_client: Match = {"dl_type": hex(ETH_IPV4), "nw_proto": IPPROTO_UDP}
                dhcp_client |= {NETWORK.field: key, "tp_src": 68, "tp_dst": 67}
                flows.append(p.table("dhcp").flow(100, dhcp_client, [Controller()]))
            # IPv6: one flow per network each, not per port (the agent finds the port
            # from the packet-in's in_port), so a port costs no more flows than before.
            if view.router_solicitations:
                solicitation: Match = {"dl_type": hex(ETH_IPV6), "nw_proto": IPPROTO_ICMPV6}
                solicitation |= {NETWORK.field: key, "icmpv6_type": 133}
                flows.append(p.table("dhcp").flow(100, solicitation, [Controller()]))
            if view.dhcpv6:
                dhcpv6_client: Match = {"dl_type": hex(ETH_IPV6), "nw_proto": IPPROTO_UDP}
                dhcpv6_client |= {NETWORK.field: key, "tp_src": 546, "tp_dst": 547}
                flows.append(p.table("dhcp").flow(100, dhcpv6_client, [Controller()]))

            def deliver(ports: Iterable[tuple[int, int]]) -> list[Action]:
                actions: list[Action] = []
                for ofport, flag in ports:
                    inner: list[Action] = [SetField(OUT_PORT.field, str(ofport))]
                    if flag:
                        inner.append(set_flag(flag))
                    actions.append(Clone((*inner, lookup.resubmit("ingress_ct"))))
                return actions

            def leave(tunnels: tuple[int, ...]) -> list[Action]:
                if network.is_tunneled and tunnels:
                    tun_id = SetField("tun_id", hex(network.segmentation_id or 0))
                    return [tun_id, *(Output(ofport) for ofport in tunnels)]
                if view.patch_ofport is not None:
                    push: list[Action] = []
                    if network.network_type == "vlan":
                        push = [PushVlan(network.segmentation_id or 0)]
                    return [*push, Output(view.patch_ofport)]
                return []

            everyone = [(ofport, flag) for ofport, _, flag in view.local]
            unsecured = [(ofport, flag) for ofport, secured, flag in view.local if not secured]
            network_only: Match = {NETWORK.field: key}
            from_local: Match = {NETWORK.field: key, ORIGIN.field: ORIGIN_LOCAL}
            multicast: Match = {"dl_dst": MULTICAST_BIT}
            floods: list[tuple[int, Match, list[Action]]] = [
                (60, from_local | multicast, deliver(everyone) + leave(view.flood_tunnels)),
                (50, network_only | multicast, deliver(everyone)),
                # Unknown unicast: only ports without port security may own unknown MACs.
                (20, from_local, deliver(unsecured) + leave(view.unknown_tunnels)),
                (10, network_only, deliver(unsecured)),
            ]
            flows += [lookup.flow(prio, match, acts) for prio, match, acts in floods if acts]
            return tuple(flows)

        return build


def _one(make: Callable[..., Flow], *args: object) -> tuple[Flow, ...]:
    return (make(*args),)


def _realisable_networks(intent: Intent, facts: HostFacts, notes: list[str]) -> dict[str, Network]:
    """Networks this host can carry: its tunnel types, or a mapped, patched physnet."""
    usable: dict[str, Network] = {}
    for network in intent.networks.values():
        if not network.admin_state_up:
            continue
        if network.is_tunneled:
            if network.network_type not in facts.tunnel_types or network.segmentation_id is None:
                notes.append(f"network {network.id}: {network.network_type} not enabled here")
                continue
        elif network.is_provider:
            physnet = network.physical_network or ""
            if physnet not in facts.bridge_mappings or physnet not in facts.patch_ofports:
                notes.append(f"network {network.id}: physnet {physnet!r} not mapped or patched")
                continue
            if network.network_type == "vlan" and network.segmentation_id is None:
                continue
        else:
            notes.append(f"network {network.id}: type {network.network_type} not supported")
            continue
        usable[network.id] = network
    return usable


def _link_local(mac: str) -> str:
    """The EUI-64 IPv6 link-local address of a MAC (what the VM's kernel configures)."""
    octets = bytearray(int(part, 16) for part in mac.split(":"))
    octets[0] ^= 0x02
    eui = bytes(octets[:3]) + b"\xff\xfe" + bytes(octets[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\x00" * 6 + eui))


def compile_host(
    intent: Intent, facts: HostFacts, pipeline: Pipeline = KUMONET_PIPELINE
) -> HostPlan:
    """The desired OVS state of one host (flows per bridge, tunnel and patch ports)."""
    return PlanCompiler(pipeline).compile(intent, facts)
