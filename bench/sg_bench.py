"""Security group benchmark: ACL flows per port and incremental compile costs, next to targets.

    .venv/bin/python bench/sg_bench.py [--local 200] [--remote 1000] [--big-set 10000]

One host with `--local` ports (10 vxlan networks) and `--remote` ports of the
same networks on 20 other hosts, every port in its project's default group
(egress anything, ingress from the group itself: a remote group naming itself).
Prints:
- flows per port for the default group and for a 20-rule group with port
  ranges (target ≤ 40): the port's own ACL flows, and the group's shared
  flows (rules, member addresses) divided over 1 and over `--local` ports;
- one rule change with `--local` ports in the group: compile time and flow
  diff size (target: the change reaches the host in ≤ 200 ms; this is the
  pure part, the agent's bundle comes on top);
- one member added to a remote group referenced by `--local` ports: compile
  time and diff size (target ≤ 100 ms end to end; pure part here);
- the same member add into a `--big-set` address set, next to OVN's anchors
  (~400 ms for the first compile, 11-12 ms per address added to a 10,000-address set).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

from kumonet.dataplane.compiler import HostPlan, PlanCompiler, diff_flows
from kumonet.dataplane.intent import (
    FixedIp,
    Host,
    HostFacts,
    Intent,
    Network,
    Port,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
    tunnel_port_name,
)
from kumonet.dataplane.security_group import port_range_masks

REMOTE_HOSTS = 20
NETWORKS = 10
DEFAULT = "sg-default"
BIG = "sg-20"
ACL_TABLES = ("egress_ct", "egress_acl", "egress_rules", "egress_verdict",
              "ingress_ct", "ingress_acl", "ingress_rules", "ingress_verdict")  # fmt: skip


def default_group(group_id: str = DEFAULT) -> SecurityGroup:
    return SecurityGroup(group_id, (
        SecurityGroupRule("d-e4", "egress"), SecurityGroupRule("d-e6", "egress", "IPv6"),
        SecurityGroupRule("d-i4", "ingress", remote_group_id=group_id),
        SecurityGroupRule("d-i6", "ingress", "IPv6", remote_group_id=group_id),
    ))  # fmt: skip


def twenty_rule_group() -> SecurityGroup:
    """20 rules as a web/app tier might have them, with several port ranges."""
    tcp = [
        (22, 22),
        (80, 80),
        (443, 443),
        (1000, 1999),
        (3000, 3100),
        (5432, 5432),
        (6379, 6380),
        (8000, 8080),
        (8443, 8443),
        (9000, 9100),
        (30000, 32767),
    ]
    udp = [(53, 53), (123, 123), (5000, 5100), (60000, 61000)]  # fmt: skip
    rules = [SecurityGroupRule(f"t{lo}", "ingress", protocol=6, port_range_min=lo,
                               port_range_max=hi, remote_ip_prefix="10.0.0.0/8")
             for lo, hi in tcp]  # fmt: skip
    rules += [SecurityGroupRule(f"u{lo}", "ingress", protocol=17, port_range_min=lo,
                                port_range_max=hi) for lo, hi in udp]  # fmt: skip
    rules += [
        SecurityGroupRule("icmp", "ingress", protocol=1, port_range_min=8, port_range_max=0),
        SecurityGroupRule("from-default", "ingress", protocol=6, port_range_min=7000,
                          port_range_max=7999, remote_group_id=DEFAULT),
        SecurityGroupRule("icmp6", "ingress", "IPv6", protocol=58),
        SecurityGroupRule("e4", "egress"), SecurityGroupRule("e6", "egress", "IPv6"),
    ]  # fmt: skip
    assert len(rules) == 20
    return SecurityGroup(BIG, tuple(rules))


def build(
    local: int, remote: int, groups: tuple[str, ...] = (DEFAULT,)
) -> tuple[Intent, HostFacts]:
    nets = {f"net-{n}": Network(f"net-{n}", "vxlan", 1000 + n, mtu=1450) for n in range(NETWORKS)}
    subnets = {f"sub-{n}": Subnet(f"sub-{n}", f"net-{n}", f"10.{n}.0.0/16")
               for n in range(NETWORKS)}  # fmt: skip
    hosts = {f"h{i}": Host(f"h{i}", f"192.0.2.{i + 1}") for i in range(REMOTE_HOSTS + 1)}
    ports: dict[str, Port] = {}
    ofports: dict[str, int] = {}
    for i in range(local + remote):
        n = i % NETWORKS
        port_id = f"port-{i}"
        host = "h0" if i < local else f"h{1 + i % REMOTE_HOSTS}"
        ip = f"10.{n}.{(i // NETWORKS) >> 8 & 0xFF}.{(i // NETWORKS) & 0xFF}"
        ports[port_id] = Port(port_id, f"net-{n}", f"fa:16:3e:{i >> 16 & 0xFF:02x}:"
                              f"{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}",
                              fixed_ips=(FixedIp(f"sub-{n}", ip),), host=host,
                              security_groups=groups if host == "h0" else (DEFAULT,))  # fmt: skip
        if host == "h0":
            ofports[port_id] = 100 + i
    tunnels = {tunnel_port_name("vxlan", hosts[f"h{i}"].tunnel_ip): 10 + i
               for i in range(1, REMOTE_HOSTS + 1)}  # fmt: skip
    sgs = {DEFAULT: default_group(), BIG: twenty_rule_group()}
    facts = HostFacts("h0", "192.0.2.1", ("vxlan",), ofports, tunnels)
    return Intent(nets, subnets, ports, hosts, sgs), facts


def acl_flows(plan: HostPlan) -> dict[str, int]:
    """Flows of the ACL tables, by kind: constant, per port, per group rule, per member."""
    counts = {"host": 0, "ports": 0, "rules": 0, "members": 0}
    for flow in plan.bridge_flows("br-int").values():
        name = flow.table.name
        if name not in ACL_TABLES:
            continue
        match = dict(flow.match)
        if flow.priority == 0:
            counts["host"] += 1
        elif name.endswith("_acl") and ("reg5" in match or "reg7" in match):
            counts["ports"] += 1
        elif name.endswith("_rules") and "conjunction(" in flow.body and ",2/2)" in flow.body:
            counts["members"] += 1
        elif name.endswith("_rules"):
            counts["rules"] += 1
        else:
            counts["host"] += 1
    return counts


def timed(run: Callable[[], HostPlan], repeat: int) -> tuple[float, float, HostPlan]:
    samples = []
    plan = None
    for _ in range(repeat):
        start = time.perf_counter()
        plan = run()
        samples.append((time.perf_counter() - start) * 1000)
    assert plan is not None
    return min(samples), statistics.median(samples), plan


def flip_between(
    compiler: PlanCompiler, a: Intent, b: Intent, facts: HostFacts
) -> Callable[[], HostPlan]:
    """Alternately compile a and b on a warm compiler: each run is one change."""
    state = {"i": 0}

    def run() -> HostPlan:
        state["i"] += 1
        return compiler.compile(b if state["i"] % 2 else a, facts)

    return run


def diff_size(before: HostPlan, after: HostPlan) -> tuple[int, int]:
    change = diff_flows(after.bridge_flows("br-int"), before.cookies("br-int"))
    return len(change.delete_cookies), len(change.add)


def per_port_report(label: str, groups: tuple[str, ...], local: int, remote: int) -> None:
    for ports in (1, local):
        intent, facts = build(ports, remote, groups)
        plan = PlanCompiler().compile(intent, facts)
        c = acl_flows(plan)
        own = c["ports"] / ports
        rules = c["rules"] / ports
        print(f"  {label}, {ports:>4} local port(s): {own:.0f} own + {rules:.1f} rule flows "
              f"(the group's {c['rules']}, shared by the host's ports) = {own + rules:.1f} per "
              f"port   target ≤ 40;  plus {c['members']} member-address flows (one per address "
              f"of a remote group, per referencing group on the host) and {c['host']} per "
              "host")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--local", type=int, default=200)
    parser.add_argument("--remote", type=int, default=1000)
    parser.add_argument("--big-set", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    print(f"host: {args.local} local ports on {NETWORKS} vxlan networks, {args.remote} remote "
          f"ports on {REMOTE_HOSTS} hosts; every port in the default group (its members: "
          f"{args.local + args.remote} addresses)")  # fmt: skip

    print("flows per port (ACL tables only; L2 flows are bench/dataplane_bench.py's):")
    per_port_report("default group", (DEFAULT,), args.local, args.remote)
    per_port_report("20-rule group with port ranges", (BIG,), args.local, args.remote)
    masks = {
        rule.id: len(port_range_masks(rule.port_range_min, rule.port_range_max))
        for rule in twenty_rule_group().rules
        if rule.protocol in (6, 17) and rule.port_range_min is not None
        and rule.port_range_max is not None
    }  # fmt: skip
    print("  masks per port-range rule of the 20-rule group: "
          + ", ".join(f"{name} {count}" for name, count in masks.items()))  # fmt: skip

    # One rule change, all local ports in the 20-rule group (plus default).
    intent, facts = build(args.local, args.remote, (DEFAULT, BIG))
    group = intent.security_groups[BIG]
    extra = SecurityGroupRule(
        "new", "ingress", protocol=6, port_range_min=8000, port_range_max=8999
    )
    bigger = dataclasses.replace(group, rules=(*group.rules, extra))
    changed = dataclasses.replace(intent, security_groups={**intent.security_groups, BIG: bigger})
    compiler = PlanCompiler()
    base = compiler.compile(intent, facts)
    after = compiler.compile(changed, facts)
    deleted, added = diff_size(base, after)
    fast, median, _ = timed(flip_between(compiler, intent, changed, facts), args.repeat)
    print(f"rule change (add/remove TCP 8000-8999) in a group of {args.local} local ports: "
          f"{fast:.1f} ms fastest, {median:.1f} ms median; diff -{deleted} +{added} flows   "
          f"target ≤ 200 ms to reach the host")  # fmt: skip

    # One member joins the default group (a new remote port): referenced by every local port.
    newcomer = Port("port-new", "net-0", "fa:16:3e:fe:00:01",
                    fixed_ips=(FixedIp("sub-0", "10.0.250.1"),), host="h1",
                    security_groups=(DEFAULT,))  # fmt: skip
    joined = dataclasses.replace(intent, ports={**intent.ports, newcomer.id: newcomer})
    compiler = PlanCompiler()
    base = compiler.compile(intent, facts)
    after = compiler.compile(joined, facts)
    deleted, added = diff_size(base, after)
    acl_added = acl_flows(after)["members"] - acl_flows(base)["members"]
    fast, median, _ = timed(flip_between(compiler, intent, joined, facts), args.repeat)
    print(f"member add to a remote group referenced by {args.local} local ports: {fast:.1f} ms "
          f"fastest, {median:.1f} ms median; diff -{deleted} +{added} flows "
          f"({acl_added} in the ACL tables; the rest is the new port's L2 entry)   "
          f"target ≤ 100 ms to reach every host")  # fmt: skip

    # The same in a big address set.
    intent, facts = build(args.local, args.big_set - args.local, (DEFAULT,))
    compiler = PlanCompiler()
    start = time.perf_counter()
    base = compiler.compile(intent, facts)
    cold = (time.perf_counter() - start) * 1000
    joined = dataclasses.replace(intent, ports={**intent.ports, newcomer.id: newcomer})
    after = compiler.compile(joined, facts)
    deleted, added = diff_size(base, after)
    fast, median, _ = timed(flip_between(compiler, intent, joined, facts), args.repeat)
    print(f"address set of {args.big_set}: first compile {cold:.0f} ms "
          f"({acl_flows(base)['members']} member flows); one member add {fast:.1f} ms fastest, "
          f"{median:.1f} ms median, diff -{deleted} +{added}   "
          f"OVN anchors: ~400 ms first, 11-12 ms per added address")  # fmt: skip


if __name__ == "__main__":
    main()
