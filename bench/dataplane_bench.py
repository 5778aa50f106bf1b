"""Dataplane compiler benchmark: flows per port and compile time, next to their targets.

    .venv/bin/python bench/dataplane_bench.py [--local 500] [--remote 1000] [--networks 50]

One host with `--local` ports spread over `--networks` vxlan networks, and
`--remote` ports of the same networks on 20 other hosts.  Prints:
- flows per local port and per remote port (what adding one more port adds;
  the network's flood flows it replaces are printed apart), vs OVN's 32 / 3;
- the cold compile time of the whole host (target: well under 100 ms for 500 ports);
- the incremental recompile after one port changes (PlanCompiler reuses units).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

from kumonet.dataplane.compiler import HostPlan, PlanCompiler, compile_host, diff_flows
from kumonet.dataplane.intent import (
    FixedIp,
    Host,
    HostFacts,
    Intent,
    Network,
    Port,
    Subnet,
    tunnel_port_name,
)

REMOTE_HOSTS = 20
OVN_LOCAL, OVN_REMOTE = 32, 3


def build(local: int, remote: int, networks: int) -> tuple[Intent, HostFacts]:
    nets = {f"net-{n}": Network(f"net-{n}", "vxlan", 1000 + n, mtu=1450) for n in range(networks)}
    subnets = {
        f"sub-{n}": Subnet(f"sub-{n}", f"net-{n}", f"10.{n // 256}.{n % 256}.0/24",
                           gateway_ip=f"10.{n // 256}.{n % 256}.1")
        for n in range(networks)
    }  # fmt: skip
    hosts = {"h0": Host("h0", "192.0.2.1")}
    hosts |= {f"h{i}": Host(f"h{i}", f"192.0.2.{i + 1}") for i in range(1, REMOTE_HOSTS + 1)}
    ports: dict[str, Port] = {}
    ofports: dict[str, int] = {}
    for i in range(local + remote):
        n = i % networks
        port_id = f"port-{i}"
        ip = f"10.{n // 256}.{n % 256}.{10 + i // networks}"
        host = "h0" if i < local else f"h{1 + i % REMOTE_HOSTS}"
        ports[port_id] = Port(port_id, f"net-{n}", f"fa:16:3e:{i >> 16 & 0xFF:02x}:"
                              f"{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}",
                              fixed_ips=(FixedIp(f"sub-{n}", ip),), host=host)  # fmt: skip
        if host == "h0":
            ofports[port_id] = 100 + i
    tunnels = {
        tunnel_port_name("vxlan", hosts[f"h{i}"].tunnel_ip): 10 + i
        for i in range(1, REMOTE_HOSTS + 1)
    }
    facts = HostFacts("h0", "192.0.2.1", ("vxlan",), ofports, tunnels)
    return Intent(nets, subnets, ports, hosts), facts


def timed(run: Callable[[], HostPlan], repeat: int) -> tuple[float, float, HostPlan]:
    """(fastest ms, median ms, last plan): the fastest run is the code's cost on an
    idle core; the median shows what sharing the machine's two cores adds."""
    samples = []
    plan = None
    for _ in range(repeat):
        start = time.perf_counter()
        plan = run()
        samples.append((time.perf_counter() - start) * 1000)
    assert plan is not None
    return min(samples), statistics.median(samples), plan


def marginal(base: HostPlan, bigger: HostPlan) -> tuple[int, int]:
    """(flows added, flows replaced) going from base to bigger."""
    change = diff_flows(bigger.bridge_flows("br-int"), base.cookies("br-int"))
    return len(change.add) - len(change.delete_cookies), len(change.delete_cookies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--local", type=int, default=500)
    parser.add_argument("--remote", type=int, default=1000)
    parser.add_argument("--networks", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    intent, facts = build(args.local, args.remote, args.networks)

    cold_ms, cold_median, plan = timed(lambda: compile_host(intent, facts), args.repeat)
    total = plan.flow_count()

    extra_local = Port("port-new", "net-0", "fa:16:3e:ff:00:01",
                       fixed_ips=(FixedIp("sub-0", "10.0.0.250"),), host="h0")  # fmt: skip
    with_local = dataclasses.replace(intent, ports={**intent.ports, extra_local.id: extra_local})
    local_facts = dataclasses.replace(
        facts, local_ofports={**facts.local_ofports, extra_local.id: 99999}
    )
    added_local, replaced_local = marginal(plan, compile_host(with_local, local_facts))
    variants = {
        "dual-stack (1 IPv4 + 1 IPv6)": dataclasses.replace(
            extra_local, fixed_ips=(*extra_local.fixed_ips, FixedIp("sub6-0", "2001:db8::250"))
        ),
        "port security off": dataclasses.replace(extra_local, port_security_enabled=False),
    }
    variant_counts = {}
    for label, variant in variants.items():
        variant_intent = dataclasses.replace(intent, ports={**intent.ports, variant.id: variant})
        variant_counts[label] = marginal(plan, compile_host(variant_intent, local_facts))
    extra_remote = dataclasses.replace(extra_local, id="port-remote", host="h1")
    with_remote = dataclasses.replace(intent, ports={**intent.ports, extra_remote.id: extra_remote})
    # A remote port of a host already in the network's flood list replaces nothing.
    added_remote, replaced_remote = marginal(plan, compile_host(with_remote, facts))

    compiler = PlanCompiler()
    compiler.compile(intent, facts)
    flip = [with_local, intent]
    flip_facts = [local_facts, facts]
    state = {"i": 0}

    def incremental() -> HostPlan:
        state["i"] += 1
        return compiler.compile(flip[state["i"] % 2], flip_facts[state["i"] % 2])

    incremental_ms, incremental_median, _ = timed(incremental, args.repeat * 2)
    render_start = time.perf_counter()
    lines = plan.lines("br-int")
    render_ms = (time.perf_counter() - render_start) * 1000

    print(f"host: {args.local} local ports, {args.remote} remote ports on {REMOTE_HOSTS} hosts, "
          f"{args.networks} vxlan networks")  # fmt: skip
    print(f"flows on br-int: {total} ({len(lines)} lines rendered in {render_ms:.1f} ms)")
    print(f"flows per local port (IPv4, port security): {added_local} new "
          f"(+{replaced_local} network flood flows replaced)   OVN: {OVN_LOCAL}")  # fmt: skip
    for label, (added, replaced) in variant_counts.items():
        print(f"flows per local port, {label}: {added} new (+{replaced} replaced)")
    print(f"flows per remote port: {added_remote} new (+{replaced_remote} replaced)   "
          f"OVN: {OVN_REMOTE}")  # fmt: skip
    print(f"cold compile, whole host: {cold_ms:.1f} ms fastest, {cold_median:.1f} ms median "
          f"of {args.repeat}   "
          f"target: well under 100 ms")  # fmt: skip
    print(f"incremental recompile after one port change: {incremental_ms:.1f} ms fastest, "
          f"{incremental_median:.1f} ms median of {args.repeat * 2}   "
          f"target: cheap (≪ cold)")  # fmt: skip


if __name__ == "__main__":
    main()
