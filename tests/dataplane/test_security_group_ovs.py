"""Security groups on a real Open vSwitch (userspace datapath, real conntrack).

First the compiled ACL flows (conntrack, conjunctions, port masks) are
installed as rendered and `ofproto/trace` agrees with the in-memory model on
the verdicts; then VM namespaces exchange real ping, TCP and UDP while
groups, rules and memberships change underneath, applied as the agent does
(one bundle: delete obsolete cookies, add missing flows).
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kumonet.dataplane.compiler import PlanCompiler, diff_flows
from kumonet.dataplane.intent import HostFacts, Intent, from_neutron
from kumonet.dataplane.oftable import OpenFlowTables, ct_states, make_packet
from tests.dataplane.cloud import H1, H2, MAC, group, network, port, rule, subnet
from tests.dataplane.conftest import OvsSandbox
from tests.dataplane.test_compiler_ovs import installed_cookies, traced
from tests.dataplane.test_security_group import (
    CLI,
    DB,
    OFPORT,
    RTR,
    U1,
    WEB,
    facts,
    from_tunnel,
    icmp,
    sg_intent,
    tcp,
    udp,
)

# ----------------------------------------------- trace vs model (dummy ports)

TRACE_CASES: dict[str, tuple[dict[str, object], tuple[str, ...]]] = {
    "ssh": (tcp(CLI, WEB, 22), ("trk,new", "trk,new")),
    "telnet": (tcp(CLI, WEB, 23), ("trk,new", "trk,new")),
    **{f"range {p}": (tcp(CLI, WEB, p), ("trk,new", "trk,new")) for p in (999, 1000, 1999, 2000)},
    "pg from member": (tcp(WEB, DB, 5432), ("trk,new", "trk,new")),
    "pg from non-member": (tcp(CLI, DB, 5432), ("trk,new", "trk,new")),
    "ping code 0": (icmp(CLI, DB, 8, 0), ("trk,new", "trk,new")),
    "ping code 1": (icmp(CLI, DB, 8, 1), ("trk,new", "trk,new")),
    "reply": (tcp(WEB, CLI, 40000, sport=22, flags="ack"), ("trk,est,rpl", "trk,est,rpl")),
    # Replies and related packets of a connection cut (ct_mark 0x1) are dropped.
    "cut reply": (tcp(WEB, CLI, 40000, sport=22, flags="ack", ct_mark=1),
                  ("trk,est,rpl", "trk,est,rpl")),
    "cut related": (icmp(DB, CLI, 3, 3, ct_mark=1), ("trk,rel", "trk,rel")),
    # The original direction of an established connection runs the rules again:
    # allowed (also when cut: the cut is lifted) or dropped, cutting it.
    "established ssh": (tcp(CLI, WEB, 22, flags="ack"), ("trk,est", "trk,est")),
    "established ssh, cut": (tcp(CLI, WEB, 22, flags="ack", ct_mark=1), ("trk,est", "trk,est")),
    "established telnet": (tcp(CLI, WEB, 23, flags="ack"), ("trk,est", "trk,est")),
    "established, no rule": (tcp(WEB, CLI, 40000, sport=22, flags="ack"), ("trk,est", "trk,est")),
    "invalid": (tcp(CLI, WEB, 22), ("trk,inv",)),
    "ack pickup": (tcp(CLI, WEB, 22, flags="ack"), ("trk,new", "trk,new")),
    "related": (icmp(DB, CLI, 3, 3), ("trk,rel", "trk,rel")),
    "udp /28": (udp(CLI, DB, 7000), ("trk,new", "trk,new")),
    "member via tunnel": (from_tunnel(CLI, "10.0.0.33", nw_proto=1, icmp_type=8), ("trk,new",)),
    "pair member": (from_tunnel(CLI, "10.0.0.66", nw_proto=1, icmp_type=8), ("trk,new",)),
    "non-member": (from_tunnel(CLI, "10.0.0.99", nw_proto=1, icmp_type=8), ("trk,new",)),
    "unfiltered": (tcp(U1, RTR, 4242, flags="ack"), ()),
    "dhcp offer": (udp(RTR, WEB, 68, sport=67), ()),
    # A broadcast reaches each local port through its own conntrack pass (ct in a
    # clone): web takes UDP 53 over IPv6 only, db any UDP from 10.0.0.0/28 ...
    "broadcast udp": (udp(CLI, WEB, 53, dl_dst="ff:ff:ff:ff:ff:ff", nw_dst="10.0.0.255"),
                      ("trk,new",) * 8),
    "broadcast tcp 22": (tcp(CLI, WEB, 22, dl_dst="ff:ff:ff:ff:ff:ff", nw_dst="10.0.0.255"),
                         ("trk,new",) * 8),
}  # fmt: skip


def _trace_packet(packet: dict[str, object]) -> dict[str, object]:
    fields = dict(packet)
    fields["dl_type"] = f"{int(str(fields['dl_type']), 0):#06x}"
    return fields


@pytest.mark.slow
def test_acl_flows_install_and_ofproto_trace_agrees_with_the_model(ovs: OvsSandbox) -> None:
    bridge = ovs.name
    ovs.add_bridge(bridge)
    for port_id, ofport in OFPORT.items():
        name = f"{ovs.name}-{port_id[-2:]}"
        ovs.vsctl("add-port", bridge, name, "--", "set", "interface", name, "type=dummy",
                  f"ofport_request={ofport}")  # fmt: skip
    host = facts()
    plan = PlanCompiler().compile(sg_intent(), dataclasses.replace(host, integration_bridge=bridge))
    for tunnel in plan.tunnel_ports:
        ovs.vsctl("add-port", bridge, tunnel.name, "--", "set", "interface", tunnel.name,
                  f"type={tunnel.tunnel_type}", "options:key=flow",
                  f"options:remote_ip={tunnel.remote_ip}", f"options:local_ip={tunnel.local_ip}",
                  f"ofport_request={host.tunnel_ofports[tunnel.name]}")  # fmt: skip
    lines = plan.lines(bridge)
    assert any("conjunction(" in line for line in lines)
    assert any("tp_dst=0x" in line for line in lines)  # a port mask
    ovs.ofctl("--bundle", "add-flows", ovs.mgmt(bridge), "-", stdin="\n".join(lines))
    assert sorted(installed_cookies(ovs, bridge)) == sorted(plan.cookies(bridge))
    flow_file = ovs.run_dir / "sg.flows"
    flow_file.write_text("\n".join(lines) + "\n")
    assert ovs.ofctl("diff-flows", ovs.mgmt(bridge), str(flow_file)) == ""

    model = OpenFlowTables(plan.bridge_flows(bridge).values())
    disagreements = []
    delivered = 0
    for name, (packet, states) in TRACE_CASES.items():
        verdict = model.process(make_packet(**packet), ct_states(*states))
        options = [arg for state in states for arg in ("--ct-next", state)]
        ports, _, datapath = traced(ovs, bridge, _trace_packet(packet), *options)
        delivered += bool(verdict.ports())
        if ports != verdict.ports():
            disagreements.append(f"{name}: ovs {sorted(ports)} ({datapath}); "
                                 f"model {sorted(verdict.ports())}")  # fmt: skip
    assert not disagreements, "\n".join(disagreements)
    assert 8 <= delivered <= len(TRACE_CASES) - 8  # both verdicts well represented


# ------------------------------------------------------ real VMs, real traffic

DEFAULT, SG002, SGDB, SGAPP = "sg-default", "sg-002", "sg-db", "sg-app"
VM_IP = {"web": "10.0.0.11", "db": "10.0.0.12", "cli": "10.0.0.13"}
VM_PORT = {"web": ("a1", 1), "db": ("a2", 2), "cli": ("v1", 3)}


def lab_groups(*, drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    sg002 = [
        rule("s-e4", "egress"), rule("s-e6", "egress", "IPv6"),
        rule("s-icmp", "ingress", protocol="icmp", remote_ip_prefix="0.0.0.0/0"),
        rule("s-ssh", "ingress", protocol="tcp", port_range_min=22, port_range_max=22,
             remote_ip_prefix="0.0.0.0/0"),
        rule("s-udp", "ingress", protocol="udp", port_range_min=5353, port_range_max=5353),
        rule("s-2222", "ingress", protocol="tcp", port_range_min=2220, port_range_max=2223),
    ]  # fmt: skip
    return [
        group(DEFAULT, [
            rule("d-e4", "egress"), rule("d-e6", "egress", "IPv6"),
            rule("d-i4", "ingress", remote_group_id=DEFAULT),
            rule("d-i6", "ingress", "IPv6", remote_group_id=DEFAULT),
        ]),
        group(SG002, [r for r in sg002 if r["id"] not in drop]),
        group(SGDB, [rule("db-pg", "ingress", protocol="tcp", port_range_min=5432,
                          port_range_max=5432, remote_group_id=SGAPP)]),
        group(SGAPP, []),
    ]  # fmt: skip


def lab_intent(cli_groups: tuple[str, ...] = (SG002,), drop: tuple[str, ...] = ()) -> Intent:
    groups = {"web": [DEFAULT], "db": [DEFAULT, SGDB], "cli": list(cli_groups)}
    ports = [
        port(mac_name, "net-a", "h1", [("sub-a", VM_IP[vm])], security_groups=groups[vm])
        for vm, (mac_name, _) in VM_PORT.items()
    ]
    return from_neutron(
        [network("net-a", "vxlan", 100)],
        [subnet("sub-a", "net-a", "10.0.0.0/24", gateway="10.0.0.1")],
        ports, {"h1": H1, "h2": H2}, lab_groups(drop=drop),
    )  # fmt: skip


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr}")
    return result


ECHO_SERVER = """
import socket, sys, threading
kind, port = sys.argv[1], int(sys.argv[2])
if kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(2000)
        s.sendto(b"echo:" + data, peer)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen()
def serve(c):
    with c:
        while data := c.recv(2000):
            c.sendall(b"echo:" + data)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# Reads lines on stdin, sends each over one TCP connection, prints the echo (or TIMEOUT).
SESSION_CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print("CONNECTED", flush=True)
for line in sys.stdin:
    c.sendall(line.strip().encode())
    try:
        print(c.recv(2000).decode(), flush=True)
    except socket.timeout:
        print("TIMEOUT", flush=True)
"""

ONE_SHOT = """
import socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    if kind == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1.5)
        s.sendto(b"hi", (host, port))
        ok = s.recvfrom(2000)[0] == b"echo:hi"
    else:
        s = socket.create_connection((host, port), timeout=1.5)
        s.sendall(b"hi")
        ok = s.recv(2000) == b"echo:hi"
except OSError:
    ok = False
sys.exit(0 if ok else 1)
"""


@dataclass
class Lab:
    ovs: OvsSandbox
    bridge: str
    vms: dict[str, str]  # vm → namespace
    compiler: PlanCompiler = field(default_factory=PlanCompiler)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def apply(self, intent: Intent) -> int:
        """Compile and apply the change in one bundle; the number of flows it touched."""
        host = HostFacts("h1", H1, ("vxlan",),
                         {f"port-{mac}": ofport for mac, ofport in VM_PORT.values()},
                         integration_bridge=self.bridge)  # fmt: skip
        plan = self.compiler.compile(intent, host)
        change = diff_flows(
            plan.bridge_flows(self.bridge), installed_cookies(self.ovs, self.bridge)
        )
        self.ovs.ofctl("--bundle", "add-flows", self.ovs.mgmt(self.bridge), "-",
                       stdin="\n".join(change.bundle_lines()))  # fmt: skip
        return len(change.delete_cookies) + len(change.add)

    def serve(self, vm: str, kind: str, port: int) -> None:
        self.servers.append(subprocess.Popen(
            ["ip", "netns", "exec", self.vms[vm], "python3", "-c", ECHO_SERVER, kind, str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        ))  # fmt: skip

    def reaches(self, vm: str, kind: str, target: str, port: int) -> bool:
        args = ["ip", "netns", "exec", self.vms[vm], "python3", "-c", ONE_SHOT, kind,
                VM_IP[target], str(port)]  # fmt: skip
        return sh(*args, check=False).returncode == 0

    def pings(self, vm: str, target: str) -> bool:
        args = ["ip", "netns", "exec", self.vms[vm], "ping", "-c", "1", "-W", "1", VM_IP[target]]
        return sh(*args, check=False).returncode == 0


@pytest.fixture
def lab(ovs: OvsSandbox) -> Iterator[Lab]:
    bridge = ovs.name
    ovs.add_bridge(bridge)
    namespaces = {vm: f"{ovs.name}{vm}" for vm in VM_PORT}
    made = Lab(ovs, bridge, namespaces)
    try:
        for vm, (mac_name, ofport) in VM_PORT.items():
            ns, outside = namespaces[vm], f"{ovs.name}{vm[0]}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", outside, "netns", ovs.name, "type", "veth",
               "peer", "name", "eth0", "netns", ns)  # fmt: skip
            sh("ip", "-n", ns, "link", "set", "eth0", "address", MAC[mac_name], "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{VM_IP[vm]}/24", "dev", "eth0")
            sh(
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv4.neigh.eth0.retrans_time_ms=100",
            )
            sh("ip", "-n", ovs.name, "link", "set", outside, "up")
            # The userspace datapath does not fill in offloaded checksums (DESIGN.md traps).
            sh("ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off")
            sh("ip", "netns", "exec", ovs.name, "ethtool", "-K", outside, "tx", "off")
            ovs.vsctl("add-port", bridge, outside, "--", "set", "interface", outside,
                      f"ofport_request={ofport}")  # fmt: skip
        made.apply(lab_intent())
        yield made
    finally:
        for server in made.servers:
            server.kill()
            server.wait()
        for ns in namespaces.values():
            sh("ip", "netns", "del", ns, check=False)


def settle(lab: Lab) -> None:
    """Wait for the echo servers to listen (a probe that is allowed must succeed)."""
    for _ in range(30):
        if lab.reaches("db", "tcp", "web", 7001):
            return
        time.sleep(0.1)
    raise AssertionError("echo servers did not come up")


@pytest.mark.slow
def test_default_group_members_talk_others_do_not(lab: Lab) -> None:
    lab.serve("web", "tcp", 7001)
    lab.serve("cli", "tcp", 22)
    settle(lab)
    # web and db are both in default: db → web is allowed, ping too.
    assert lab.pings("db", "web")
    # cli is not a member: its new connections into web are blocked.
    assert not lab.reaches("cli", "tcp", "web", 7001)
    assert not lab.pings("cli", "web")
    # web's outbound works (to cli's ssh) and the replies come back through conntrack.
    assert lab.reaches("web", "tcp", "cli", 22)


@pytest.mark.slow
def test_seed_002_rules_ping_and_ssh_pass_telnet_does_not(lab: Lab) -> None:
    lab.serve("web", "tcp", 7001)
    lab.serve("cli", "tcp", 22)
    lab.serve("cli", "tcp", 23)
    settle(lab)
    assert lab.pings("web", "cli")
    assert lab.reaches("web", "tcp", "cli", 22)
    assert not lab.reaches("web", "tcp", "cli", 23)


@pytest.mark.slow
def test_udp_and_icmp_replies_pass_unsolicited_traffic_does_not(lab: Lab) -> None:
    lab.serve("web", "tcp", 7001)
    lab.serve("cli", "udp", 5353)
    lab.serve("web", "udp", 5353)
    settle(lab)
    # web → cli: UDP 5353 and ping are allowed into cli; the replies return to web,
    # although web's default group accepts nothing new from cli.
    assert lab.reaches("web", "udp", "cli", 5353)
    assert lab.pings("web", "cli")
    # The same from cli, unsolicited, does not get into web.
    assert not lab.reaches("cli", "udp", "web", 5353)
    assert not lab.pings("cli", "web")


class Session:
    """One long-lived TCP connection from a VM: `say` sends a line and returns
    what came back (`echo:<line>`, or TIMEOUT after 3 s without an answer)."""

    def __init__(self, lab: Lab, vm: str, target: str, port: int) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.vms[vm], "python3", "-c", SESSION_CLIENT,
             VM_IP[target], str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        assert self.stdout.readline().strip() == "CONNECTED"

    def say(self, word: str) -> str:
        self.stdin.write(f"{word}\n")
        self.stdin.flush()
        return self.stdout.readline().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.stdin.close()
        self.stdout.close()


@contextlib.contextmanager
def sessions(lab: Lab, *targets: tuple[str, str, int]) -> Iterator[list[Session]]:
    opened: list[Session] = []
    try:
        for vm, target, port in targets:
            opened.append(Session(lab, vm, target, port))
        yield opened
    finally:
        for session in opened:
            session.close()


def cut(session: Session) -> bool:
    """Whether the session stops getting answers.  The datapath's cached flows
    are revalidated just after a flow table change, so the first packets may
    still pass: a few tries, each waiting 3 s for its answer."""
    return any(session.say(f"probe{n}") == "TIMEOUT" for n in range(3))


def cut_marks(lab: Lab, zone: int, dport: int) -> list[str]:
    """Conntrack entries of `zone` towards `dport` carrying the cut mark."""
    text = lab.ovs.appctl("dpctl/dump-conntrack", "-m")
    return [
        line for line in text.splitlines()
        if f"dport={dport})," in line and f",zone={zone}," in line and ",mark=1," in line
    ]  # fmt: skip


@pytest.mark.slow
def test_removing_a_rule_cuts_its_connections_and_keeps_the_others(lab: Lab) -> None:
    lab.serve("web", "tcp", 7001)
    lab.serve("cli", "tcp", 22)
    lab.serve("cli", "tcp", 2222)
    settle(lab)
    assert lab.reaches("web", "tcp", "cli", 2222)
    with sessions(lab, ("web", "cli", 22), ("web", "cli", 2222)) as (ssh, other):
        assert ssh.say("before") == "echo:before"
        assert other.say("before") == "echo:before"
        touched = lab.apply(lab_intent(drop=("s-2222",)))
        assert 0 < touched <= 3  # the range 2220-2223 was one flow (a /14 mask)
        # The flows are in (one bundle): the next packet of the connection the
        # removed rule allowed is dropped and cuts it, in cli's zone ...
        assert cut(other)
        assert cut_marks(lab, VM_PORT["cli"][1], 2222)
        # ... and new ones are refused ...
        assert not lab.reaches("web", "tcp", "cli", 2222)
        # ... while the ssh session, allowed by a rule that stays, keeps flowing.
        for word in ("during", "after"):
            assert ssh.say(word) == f"echo:{word}"
        assert lab.reaches("web", "tcp", "cli", 22)
        assert not cut_marks(lab, VM_PORT["cli"][1], 22)
        # The rule comes back: the cut connection's retransmissions get through,
        # lifting the cut, and it carries on.
        lab.apply(lab_intent())
        answers = [other.say(f"again{n}") for n in range(4)]
        assert any("echo:" in answer for answer in answers), answers
        assert not cut_marks(lab, VM_PORT["cli"][1], 2222)


@pytest.mark.slow
def test_joining_and_leaving_a_remote_group_opens_and_closes_access(lab: Lab) -> None:
    lab.serve("web", "tcp", 7001)
    lab.serve("db", "tcp", 5432)
    settle(lab)
    # db accepts TCP 5432 from members of sg-app only; cli is not one (nor in default).
    assert not lab.reaches("cli", "tcp", "db", 5432)
    joined = lab.apply(lab_intent(cli_groups=(SG002, SGAPP)))
    assert lab.reaches("cli", "tcp", "db", 5432)
    with sessions(lab, ("cli", "db", 5432), ("web", "db", 5432)) as (member, other):
        assert member.say("in") == "echo:in"
        assert other.say("in") == "echo:in"  # web is in default with db
        left = lab.apply(lab_intent())
        # cli left sg-app: its open connection is cut with the new ones refused;
        # web's, allowed by default's remote group rule, goes on.
        assert cut(member)
        assert not lab.reaches("cli", "tcp", "db", 5432)
        assert other.say("out") == "echo:out"
    # Joining: cli's flow running its groups changes (2 directions: delete + add each)
    # and one member flow is added in db's group; leaving undoes exactly that.
    assert joined == left == 2 * 2 + 1


# ------------------------------------------------- two hosts over VXLAN


def plug(ovs: OvsSandbox, vm: str, mac: str, address: str, ofport: int) -> str:
    ns, outside = f"{ovs.name}{vm}", f"{ovs.name}{vm[0]}{ofport}"
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", outside, "netns", ovs.name, "type", "veth",
       "peer", "name", "eth0", "netns", ns)  # fmt: skip
    sh("ip", "-n", ns, "link", "set", "eth0", "address", mac, "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
    sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.neigh.eth0.retrans_time_ms=100")
    sh("ip", "-n", ovs.name, "link", "set", outside, "up")
    sh("ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off")
    sh("ip", "netns", "exec", ovs.name, "ethtool", "-K", outside, "tx", "off")
    ovs.vsctl("add-port", ovs.name, outside, "--", "set", "interface", outside,
              f"ofport_request={ofport}")  # fmt: skip
    return ns


def ping_from(ns: str, address: str, tries: int = 1) -> bool:
    for _ in range(tries):
        if sh("ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", address,
              check=False).returncode == 0:  # fmt: skip
            return True
    return False


@pytest.mark.slow
def test_default_group_members_on_two_hosts_talk_over_vxlan(
    two_ovs: tuple[OvsSandbox, OvsSandbox],
) -> None:
    # h1: web (default) and cli (seed 002's group); h2: far (default).
    vms = {"web": ("a1", "h1", "10.0.0.11", (DEFAULT,), 1),
           "cli": ("v1", "h1", "10.0.0.13", (SG002,), 2),
           "far": ("a3", "h2", "10.0.0.33", (DEFAULT,), 1)}  # fmt: skip
    intent = from_neutron(
        [network("net-a", "vxlan", 100)],
        [subnet("sub-a", "net-a", "10.0.0.0/24")],
        [port(mac, "net-a", host, [("sub-a", ip)], security_groups=list(groups))
         for mac, host, ip, groups, _ in vms.values()],
        {"h1": H1, "h2": H2}, lab_groups(),
    )  # fmt: skip
    first, second = two_ovs
    sh("ip", "link", "add", f"{first.name}u", "netns", first.name, "type", "veth",
       "peer", "name", f"{second.name}u", "netns", second.name)  # fmt: skip
    namespaces: dict[str, str] = {}
    try:
        for host, ovs, tunnel_ip, remote in (("h1", first, H1, H2), ("h2", second, H2, H1)):
            phy, underlay = f"{ovs.name}p", f"{ovs.name}u"
            ovs.vsctl("add-br", phy, "--", "set", "bridge", phy, "datapath_type=netdev",
                      "--", "add-port", phy, underlay)  # fmt: skip
            sh("ip", "-n", ovs.name, "link", "set", underlay, "up")
            sh("ip", "netns", "exec", ovs.name, "ethtool", "-K", underlay, "tx", "off")
            sh("ip", "-n", ovs.name, "addr", "add", f"{tunnel_ip}/24", "dev", phy)
            sh("ip", "-n", ovs.name, "link", "set", phy, "up")
            ovs.add_bridge(ovs.name)
            local = {}
            for vm, (mac, vm_host, ip, _, ofport) in vms.items():
                if vm_host == host:
                    namespaces[vm] = plug(ovs, vm, MAC[mac], ip, ofport)
                    local[f"port-{mac}"] = ofport
            host_facts = HostFacts(host, tunnel_ip, ("vxlan",), local, {f"vxlan-{remote}": 20},
                                   integration_bridge=ovs.name)  # fmt: skip
            plan = PlanCompiler().compile(intent, host_facts)
            [tunnel] = plan.tunnel_ports
            ovs.vsctl("add-port", ovs.name, tunnel.name, "--", "set", "interface", tunnel.name,
                      "type=vxlan", "options:key=flow", f"options:local_ip={tunnel.local_ip}",
                      f"options:remote_ip={tunnel.remote_ip}", "ofport_request=20")  # fmt: skip
            ovs.ofctl("--bundle", "add-flows", ovs.mgmt(ovs.name), "-",
                      stdin="\n".join(plan.lines(ovs.name)))  # fmt: skip
        # The first packets towards a tunnel endpoint go while OVS resolves it: retry.
        assert ping_from(namespaces["far"], "10.0.0.11", tries=10)
        assert ping_from(namespaces["web"], "10.0.0.33")
        # cli is no member of default: far (on h2) refuses its new connections ...
        assert not ping_from(namespaces["cli"], "10.0.0.33", tries=2)
        # ... while far reaches cli through seed 002's ICMP rule, and the reply returns.
        assert ping_from(namespaces["far"], "10.0.0.13")
    finally:
        for ns in namespaces.values():
            sh("ip", "netns", "del", ns, check=False)
