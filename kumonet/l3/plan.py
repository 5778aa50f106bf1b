"""The pure planner: a `RouterIntent` in, everything the host must build out.

`plan_router` decides names (Neutron's: ``qrouter-<id>``, ``qr-``/``qg-``/``ha-``
plus the first 11 characters of the port id), MACs and MTUs, the addresses and
routes, the namespace's sysctls, the nftables ruleset and, for HA routers, the
keepalived configuration. It does no I/O, so every decision is unit-tested.

HA routers follow Neutron's l3 agent: only the ``ha-`` address is configured
statically; the ``qr-``/``qg-`` addresses, the floating IPs and the routes are
keepalived's ``virtual_ipaddress_excluded`` and ``virtual_routes``, held only by
the VRRP master. All instances start ``BACKUP`` with equal priority and
``nopreempt``, so the instance with the highest ``ha-`` address wins the first
election and a recovered host never takes the role back.

Floating IPs are stateless 1:1 NAT (the destination rewritten in the raw
prerouting hook with ``notrack``, the source rewritten on the way out of
``qg-``): no conntrack entry is needed, so a TCP connection through a floating
IP survives a failover to a router that never saw it. Project subnets are
masqueraded (SNAT) to the gateway address, statefully, as in Neutron; a new
master has no conntrack state for them, and survives them by dropping (not
resetting) unknown mid-stream segments to the gateway address until the VM's
side re-creates the entry (see ``nft_ruleset``) — which fails when the
outside speaks first and the VM only answers. The complete answer is the
router's conntrackd (`kumonet.l3.conntrackd`), on unless
``L3Settings.conntrack_sync`` is off.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kumonet.l3.conntrackd import ConntrackdFiles, conntrackd_conf
from kumonet.l3.conntrackd import notify_script as conntrackd_notify_script
from kumonet.l3.intent import DEFAULT_MTU, RouterIntent

NAMESPACE_PREFIX = "qrouter-"
NFT_TABLE = "kumonet"
ARP_RETRANS_MS = 100
TRACK_FILE = "priority_offset"

InterfaceKind = Literal["qr", "qg", "ha"]


def namespace_name(router_id: str, prefix: str = "") -> str:
    """``qrouter-<router id>``; ``prefix`` lets several simulated hosts share a machine."""
    return f"{prefix}{NAMESPACE_PREFIX}{router_id}"


def interface_name(kind: InterfaceKind, port_id: str) -> str:
    """Neutron's device names: at most 15 characters, the kernel's limit."""
    return f"{kind}-{port_id[:11]}"


def router_id_of_namespace(namespace: str, prefix: str = "") -> str | None:
    """The router id a namespace name belongs to, or ``None`` if it is not a router's."""
    head = f"{prefix}{NAMESPACE_PREFIX}"
    if namespace.startswith(head) and len(namespace) > len(head):
        return namespace[len(head) :]
    return None


@dataclass(frozen=True, slots=True)
class VrrpSettings:
    """VRRP timing. Failover takes the master-down interval, 3 × ``advert_int`` plus
    a skew of (256 − priority)/256 × ``advert_int``: 0.1 s adverts give ≈ 0.38 s,
    which keeps the measured outage under the 0.5 s median / 1 s max target with
    margin for a loaded host; 0.2 s adverts measured ≈ 0.6–0.8 s."""

    advert_int: float = 0.1
    priority: int = 50
    garp_master_delay: int = 1  # seconds until the second burst of gratuitous ARPs
    garp_master_repeat: int = 3
    # While master, re-announce every address each second. The qr-/qg- MACs are
    # the same on every host: a dead master whose namespace lives on (keepalived
    # and agent killed) still sends from them (ARP probes for its stale neighbours)
    # and pulls learning switches back to itself; and when its agent returns and
    # drops the stale addresses, that traffic is black-holed until the master
    # speaks again. Measured: outages of 1.5-2 s with a 10 s refresh.
    garp_master_refresh: int = 1
    ha_vip_network: str = "169.254.0.0/24"  # Neutron's per-router VRRP VIP range

    def __post_init__(self) -> None:
        # VRRPv3 carries the interval in centiseconds.
        if not 0.01 <= self.advert_int <= 40.95:
            raise ValueError(f"advert_int {self.advert_int} outside 0.01..40.95 s")
        if not 1 <= self.priority <= 254:
            raise ValueError(f"priority {self.priority} outside 1..254")


@dataclass(frozen=True, slots=True)
class L3Settings:
    """Per-host settings: ``state_path`` holds each router's keepalived files;
    ``namespace_prefix`` is empty on a real host and unique per simulated host."""

    state_path: Path
    namespace_prefix: str = ""
    vrrp: VrrpSettings = field(default_factory=VrrpSettings)
    # conntrackd per HA router, so SNATed connections survive a failover
    # (``[agent] ha_conntrack_sync``; see `kumonet.l3.conntrackd`).
    conntrack_sync: bool = True

    def router_dir(self, router_id: str) -> Path:
        return self.state_path / "ha_confs" / router_id


@dataclass(frozen=True, slots=True)
class PlannedInterface:
    name: str
    kind: InterfaceKind
    port_id: str
    mac: str
    mtu: int = DEFAULT_MTU


@dataclass(frozen=True, slots=True, order=True)
class Address:
    cidr: str
    device: str


@dataclass(frozen=True, slots=True, order=True)
class Route:
    destination: str
    via: str | None
    device: str | None = None


@dataclass(frozen=True, slots=True)
class KeepalivedFiles:
    """Where one router's keepalived lives under the agent's state path."""

    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "keepalived.conf"

    @property
    def pid(self) -> Path:
        return self.directory / "keepalived.pid"

    @property
    def vrrp_pid(self) -> Path:
        return self.directory / "keepalived-vrrp.pid"

    @property
    def notify_fifo(self) -> Path:
        return self.directory / "notify.fifo"

    @property
    def state(self) -> Path:
        """The last HA state reported, for operators (``active``/``standby``/``fault``)."""
        return self.directory / "state"

    @property
    def priority_offset(self) -> Path:
        """keepalived's ``track_file``: an integer added to the VRRP priority.

        The agent writes it (a new master raises itself, a stale or isolated
        one lowers itself); keepalived follows the file by inotify, so the
        priority changes within milliseconds and without a reload."""
        return self.directory / "priority_offset"


@dataclass(frozen=True, slots=True)
class RouterPlan:
    """What the host builds for one router. ``addresses``/``routes`` are configured
    statically by the shell; ``virtual_*`` are keepalived's (empty for non-HA)."""

    router_id: str
    namespace: str
    interfaces: tuple[PlannedInterface, ...]
    addresses: tuple[Address, ...]
    routes: tuple[Route, ...]
    virtual_addresses: tuple[Address, ...]
    virtual_routes: tuple[Route, ...]
    sysctls: tuple[tuple[str, str], ...]
    nft_ruleset: str
    keepalived_conf: str | None
    keepalived_files: KeepalivedFiles | None
    conntrackd_conf: str | None = None
    conntrackd_script: str | None = None

    @property
    def is_ha(self) -> bool:
        return self.keepalived_conf is not None

    @property
    def link_sysctls(self) -> tuple[tuple[str, str], ...]:
        """Per-interface settings, applied once the interfaces exist.

        A new master knows no neighbours (as a standby it held no addresses): its
        first packets towards a VM or the upstream router wait for ARP, and a lost
        ARP reply would hold them for the default 1 s retransmit time: outages
        measured at ~1.1 s instead of ~0.1 s. A namespace has no ``neigh.default``,
        so this is set per interface.
        """
        return tuple(
            (f"net.ipv4.neigh.{interface.name}.retrans_time_ms", str(ARP_RETRANS_MS))
            for interface in self.interfaces
        )

    @property
    def all_addresses(self) -> tuple[Address, ...]:
        """Every address the router has when it is active (static and virtual)."""
        return tuple(sorted(self.addresses + self.virtual_addresses))


#: Routers forward; ARP is answered only for addresses on the asking interface
#: (many addresses share an L2 segment with peers holding the same MAC), and a
#: secondary address survives the removal of the primary (FIPs on qg-).
ROUTER_SYSCTLS: tuple[tuple[str, str], ...] = (
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.arp_ignore", "1"),
    ("net.ipv4.conf.all.arp_announce", "2"),
    ("net.ipv4.conf.all.promote_secondaries", "1"),
    ("net.ipv4.conf.default.arp_ignore", "1"),
    ("net.ipv4.conf.default.arp_announce", "2"),
    ("net.ipv4.conf.default.promote_secondaries", "1"),
    # The qr-/qg- ports of an HA router have the same MAC on every host. An IPv6
    # link-local address would make a standby send (DAD, MLD, router solicitations)
    # from that MAC, and the switches would learn the active router's MAC at the
    # standby: traffic black-holed until the master sends again (seen as ~0.5 s
    # ping gaps). Routers are IPv4-only for now, so IPv6 is off in the namespace.
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
)


def plan_router(intent: RouterIntent, settings: L3Settings) -> RouterPlan:
    interfaces: list[PlannedInterface] = []
    addresses: list[Address] = []  # held while active
    routes: list[Route] = []
    for internal in intent.internal:
        name = interface_name("qr", internal.port_id)
        interfaces.append(
            PlannedInterface(name, "qr", internal.port_id, internal.mac, internal.mtu)
        )
        addresses.extend(Address(cidr, name) for cidr in internal.cidrs)
    gateway_name: str | None = None
    if intent.gateway is not None:
        gw = intent.gateway
        gateway_name = interface_name("qg", gw.port_id)
        interfaces.append(PlannedInterface(gateway_name, "qg", gw.port_id, gw.mac, gw.mtu))
        addresses.extend(Address(cidr, gateway_name) for cidr in gw.cidrs)
        addresses.extend(
            Address(f"{fip.floating_ip}/32", gateway_name) for fip in intent.floating_ips
        )
        v4_gateways = [ip for ip in gw.gateway_ips if ipaddress.ip_address(ip).version == 4]
        if v4_gateways:
            routes.append(Route("0.0.0.0/0", v4_gateways[0], gateway_name))
    routes.extend(Route(r.destination, r.nexthop) for r in intent.routes)

    ruleset = nft_ruleset(intent, gateway_name)
    namespace = namespace_name(intent.id, settings.namespace_prefix)
    if intent.ha is None:
        return RouterPlan(
            router_id=intent.id,
            namespace=namespace,
            interfaces=tuple(interfaces),
            addresses=tuple(sorted(addresses)),
            routes=tuple(routes),
            virtual_addresses=(),
            virtual_routes=(),
            sysctls=ROUTER_SYSCTLS,
            nft_ruleset=ruleset,
            keepalived_conf=None,
            keepalived_files=None,
        )

    ha = intent.ha
    ha_name = interface_name("ha", ha.interface.port_id)
    interfaces.append(
        PlannedInterface(ha_name, "ha", ha.interface.port_id, ha.interface.mac, ha.interface.mtu)
    )
    files = KeepalivedFiles(settings.router_dir(intent.id))
    vip_network = ipaddress.ip_network(settings.vrrp.ha_vip_network)
    ha_vip = Address(f"{vip_network[ha.vrrp_id]}/{vip_network.prefixlen}", ha_name)
    virtual_addresses = tuple(sorted(addresses))
    ct_files = ConntrackdFiles(files.directory)
    ct_conf = ct_script = None
    if settings.conntrack_sync:
        ct_conf = conntrackd_conf(
            files=ct_files,
            ha_interface=ha_name,
            ha_cidr=ha.interface.cidr,
            vrrp_id=ha.vrrp_id,
            vip_network=settings.vrrp.ha_vip_network,
        )
        ct_script = conntrackd_notify_script(ct_files)
    conf = keepalived_conf(
        router_id=intent.id,
        vrrp_id=ha.vrrp_id,
        ha_interface=ha_name,
        ha_vip=ha_vip,
        excluded=virtual_addresses,
        virtual_routes=tuple(routes),
        vrrp=settings.vrrp,
        notify_fifo=files.notify_fifo,
        priority_offset=files.priority_offset,
        notify_script=ct_files.notify_script if settings.conntrack_sync else None,
    )
    return RouterPlan(
        router_id=intent.id,
        namespace=namespace,
        interfaces=tuple(interfaces),
        addresses=(Address(ha.interface.cidr, ha_name),),
        routes=(),
        virtual_addresses=(ha_vip, *virtual_addresses),
        virtual_routes=tuple(routes),
        sysctls=ROUTER_SYSCTLS,
        nft_ruleset=ruleset,
        keepalived_conf=conf,
        keepalived_files=files,
        conntrackd_conf=ct_conf,
        conntrackd_script=ct_script,
    )


# -- nftables ---------------------------------------------------------------------


def nft_ruleset(intent: RouterIntent, gateway_name: str | None) -> str:
    """The router's one nftables table, as ``nft -f`` input (without the atomic
    delete/re-create wrapper the shell adds).

    Internal subnets are never NATed among themselves: SNAT and the floating
    IPs' source rewrite apply only to packets leaving through ``qg-``.
    """
    lines = [f"table ip {NFT_TABLE} {{"]
    fips = sorted(intent.floating_ips, key=lambda f: ipaddress.ip_address(f.floating_ip))
    fips = [f for f in fips if ipaddress.ip_address(f.floating_ip).version == 4]
    lines += [
        "\tchain fip_prerouting {",
        "\t\ttype filter hook prerouting priority raw; policy accept;",
    ]
    if gateway_name is not None:
        for fip in fips:
            # From anywhere (external or another project subnet: hairpin) to the FIP.
            lines.append(f"\t\tip daddr {fip.floating_ip} notrack ip daddr set {fip.fixed_ip}")
        for fip in fips:
            # The VM's own packets stay out of conntrack too, so neither direction
            # depends on state a new master lacks.
            lines.append(f'\t\tiifname != "{gateway_name}" ip saddr {fip.fixed_ip} notrack')
    lines.append("\t}")
    lines += [
        "\tchain fip_postrouting {",
        "\t\ttype filter hook postrouting priority srcnat; policy accept;",
    ]
    if gateway_name is not None:
        for fip in fips:
            lines.append(
                f'\t\toifname "{gateway_name}" ip saddr {fip.fixed_ip} '
                f"ip saddr set {fip.floating_ip}"
            )
    lines.append("\t}")
    lines += [
        "\tchain snat_postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
    ]
    gateway = intent.gateway
    snat_ip = gateway.snat_ip if gateway is not None else None
    if gateway is not None and gateway_name is not None and gateway.enable_snat and snat_ip:
        subnets = sorted(
            {
                str(ipaddress.ip_interface(cidr).network)
                for internal in intent.internal
                for cidr in internal.cidrs
                if ipaddress.ip_interface(cidr).version == 4
            },
            key=ipaddress.ip_network,
        )
        if subnets:
            lines.append(
                f'\t\toifname "{gateway_name}" ip saddr {{ {", ".join(subnets)} }} '
                f"snat to {snat_ip}"
            )
    lines.append("\t}")
    lines += [
        "\tchain snat_input {",
        "\t\ttype filter hook input priority filter; policy accept;",
    ]
    if gateway is not None and gateway_name is not None and gateway.enable_snat and snat_ip:
        # After a failover the new master has no conntrack entry for SNATed flows.
        # A mid-stream segment from outside would be delivered to the router itself
        # and answered with a reset; dropped instead (its entry is never confirmed),
        # it is retransmitted after the VM's next segment has re-created the entry
        # (conntrack picks up mid-stream TCP, and SNAT keeps the source port when
        # free), so the connection survives without conntrackd.
        lines.append(
            f'\t\tiifname "{gateway_name}" ip daddr {snat_ip} ct state new '
            "tcp flags & syn != syn drop"
        )
    lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- keepalived -------------------------------------------------------------------


def _format_interval(seconds: float) -> str:
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


def keepalived_conf(
    *,
    router_id: str,
    vrrp_id: int,
    ha_interface: str,
    ha_vip: Address,
    excluded: tuple[Address, ...],
    virtual_routes: tuple[Route, ...],
    vrrp: VrrpSettings,
    notify_fifo: Path,
    priority_offset: Path | None = None,
    notify_script: Path | None = None,
) -> str:
    """keepalived.conf for one router (one VRRP instance named after the router).

    The addresses beyond the ha- VIP go to ``virtual_ipaddress_excluded``: they
    are not carried in adverts (VRRP limits an advert to 20 addresses) yet are
    added, announced by gratuitous ARP and removed with the master role.

    ``priority_offset`` names a ``track_file`` whose integer is added to the
    priority (weight 1; created holding 0 when missing): the agent's way to
    decide who keeps the master role when a partition heals.

    ``notify_script`` (conntrackd's, see `kumonet.l3.conntrackd`) is run by
    keepalived itself on each transition: the commit of synced connections on
    takeover must not wait for the agent, which may be slow or down.
    """
    out = [
        "global_defs {",
        f"    router_id {router_id}",
        "    vrrp_version 3",
        # Scripts run as root and only from paths only root can write. Always, and
        # before the FIFO: keepalived 2.2 gives the FIFO the script user known when
        # it parses the FIFO's line; on a reload that finds none (no keepalived_script
        # user on the host) it silently stops writing the FIFO, and transitions go
        # unreported. Measured: a reload between configurations with and without
        # notify scripts (``ha_conntrack_sync`` toggled) broke it the same way.
        "    script_user root",
        "    enable_script_security",
        f"    vrrp_notify_fifo {notify_fifo}",
        "}",
        "",
    ]
    if priority_offset is not None:
        out += [
            f"track_file {TRACK_FILE} {{",
            f'    file "{priority_offset}"',
            "    weight 1",
            "    init_file 0",
            "}",
            "",
        ]
    out += [
        f"vrrp_instance {router_id} {{",
        "    state BACKUP",
        f"    interface {ha_interface}",
        f"    virtual_router_id {vrrp_id}",
        f"    priority {vrrp.priority}",
        "    nopreempt",
        f"    advert_int {_format_interval(vrrp.advert_int)}",
        f"    garp_master_delay {vrrp.garp_master_delay}",
        f"    garp_master_repeat {vrrp.garp_master_repeat}",
        f"    garp_master_refresh {vrrp.garp_master_refresh}",
        "    virtual_ipaddress {",
        f"        {ha_vip.cidr} dev {ha_vip.device}",
        "    }",
    ]
    if priority_offset is not None:
        out += ["    track_file {", f"        {TRACK_FILE}", "    }"]
    if notify_script is not None:
        out += [
            f'    notify_master "{notify_script} primary"',
            f'    notify_backup "{notify_script} backup"',
            f'    notify_fault "{notify_script} fault"',
        ]
    if excluded:
        out.append("    virtual_ipaddress_excluded {")
        out += [f"        {a.cidr} dev {a.device}" for a in excluded]
        out.append("    }")
    if virtual_routes:
        out.append("    virtual_routes {")
        for route in virtual_routes:
            line = f"        {route.destination}"
            if route.via is not None:
                line += f" via {route.via}"
            if route.device is not None:
                line += f" dev {route.device}"
            out.append(line)
        out.append("    }")
    out.append("}")
    return "\n".join(out) + "\n"
