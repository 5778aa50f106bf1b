"""``kumonet lab ...``: the multi-host lab on this machine (see ``kumonet.lab``).

Each command is a thin shell over ``kumonet.lab.lab.Lab``; errors of the lab
print as one line and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  kumonet lab up --hosts 3                      # host1..host3 (+ agents if available)
  kumonet lab up --hosts 3 --l3-hosts 2         # host1, host2 with br-ex on the external net
  kumonet lab vm add vm1 --host host1 --network net1
  kumonet lab vm dhcp vm1
  kumonet lab vm exec vm1 -- ping -c1 10.0.0.3
  kumonet lab host exec host1 -- ovs-ofctl -O OpenFlow15 dump-flows br-int
  kumonet lab external exec -- ping -c1 203.0.113.10   # from the upstream (203.0.113.1)
  kumonet lab external ping 203.0.113.10 --seconds 20  # 50 ms pings, prints the outage
  kumonet lab host fail host1 --how agent|link|host
  kumonet lab host recover host1
  kumonet lab status
  kumonet lab down
Every command takes --prefix P (default kl) to address one of several labs.
"""

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prefix", default="kl",
        help="lab name prefix: namespaces, interfaces and the run directory (default kl)",
    )
    parser.add_argument(
        "--root", type=Path, default=Path(os.environ.get("KUMONET_LAB_ROOT", "/run/kumonet-lab")),
        help="parent of the lab run directories (default /run/kumonet-lab, env KUMONET_LAB_ROOT)",
    )


def _servers(values: Sequence[str] | None) -> list[str]:
    from kumonet.lab.neutron import DEFAULT_SERVER

    urls = [url for value in values or () for url in value.split(",") if url]
    return urls or [DEFAULT_SERVER]


def _run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from kumonet.lab.errors import LabError

        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        try:
            return asyncio.run(handler(args))
        except LabError as exc:
            print(f"kumonet lab: error: {exc}", file=sys.stderr)
            return 1

    return run


async def _up(args: argparse.Namespace) -> int:
    from kumonet.lab.lab import Lab

    started = time.monotonic()
    lab = await Lab.up(
        args.hosts,
        prefix=args.prefix,
        root=args.root,
        server_urls=_servers(args.server),
        agents=not args.no_agents,
        underlay_mtu=args.underlay_mtu,
        cleanup_on_failure=not args.keep_on_failure,
        agent_command=shlex.split(args.agent_command) if args.agent_command else None,
        l3_hosts=args.l3_hosts,
        report_interval=args.report_interval,
    )
    elapsed = time.monotonic() - started
    print(f"lab {lab.layout.prefix} up in {elapsed:.2f} s, state in {lab.layout.run_dir}")
    for host in lab.state.hosts:
        l3 = ", L3 (br-ex on physnet external)" if host.l3 else ""
        print(f"  {host.name}: netns {host.netns}, underlay {host.underlay_ip}{l3}")
    if lab.state.external:
        layout = lab.layout
        print(f"  external: {layout.external_cidr} (flat, physical network"
              f" {layout.external_physnet}), upstream {layout.external_ip} in"
              f" netns {layout.external_netns}")
    if args.no_agents:
        print("  agents: not started (--no-agents)")
    elif not lab.state.agents:
        print("  agents: not started (kumonet-agent is not available yet)")
    else:
        print(f"  agents: one per host, servers {', '.join(lab.state.server_urls)}")
    return 0


async def _down(args: argparse.Namespace) -> int:
    from kumonet.lab.lab import Lab

    report = await Lab.teardown(args.prefix, root=args.root, keep_logs=args.keep_logs)
    if not report.anything:
        print(f"lab {args.prefix}: nothing to remove")
        return 0
    print(
        f"lab {args.prefix} down: {len(report.processes)} processes stopped,"
        f" namespaces removed: {' '.join(report.namespaces) or '-'}"
        + (f", stray interfaces removed: {' '.join(report.interfaces)}"
           if report.interfaces else "")
        + (f", logs kept in {report.logs}" if report.logs else "")
    )
    return 0


async def _status(args: argparse.Namespace) -> int:
    from kumonet.lab.lab import Lab

    status = await Lab.load(args.prefix, root=args.root).status()
    if args.json:
        print(json.dumps(asdict(status), default=str, indent=2))
        return 0
    print(f"lab {status.prefix} ({status.run_dir}), servers: "
          f"{', '.join(status.server_urls) or '-'}")
    if status.relay is not None:
        relay = f"pid {status.relay.pid}" if status.relay.alive else "DEAD"
        print(f"  relay to servers: {relay}")
    for host in status.hosts:
        procs = "  ".join(
            f"{p.name} {'pid ' + str(p.pid) if p.alive else 'DEAD'}" for p in host.processes
        )
        netns = "" if host.netns_exists else " (netns MISSING)"
        l3 = " L3" if host.l3 else ""
        failed = ""
        if host.failure:
            since = time.strftime("%H:%M:%S", time.gmtime(host.failed_at or 0))
            failed = f"  FAILED ({host.failure} since {since} UTC)"
        print(f"  {host.name}{l3:<3}  {host.underlay_ip:<12} {procs}{netns}{failed}")
        if host.router_namespaces or host.keepalived:
            print(f"        routers: {len(host.router_namespaces)} namespaces,"
                  f" keepalived pids {' '.join(map(str, host.keepalived)) or '-'}")
    if status.external is not None:
        ext = status.external
        missing = "" if ext.netns_exists else " (netns MISSING)"
        print(f"  external: upstream {ext.address} in netns {ext.netns}{missing}")
    if not status.vms:
        print("  no VMs")
    for vm in status.vms:
        dhcp = f" dhclient pid {vm.dhclient_pid}" if vm.dhclient_pid else ""
        netns = "" if vm.netns_exists else " (netns MISSING)"
        fixed = f" (port fixed_ips {','.join(vm.fixed_ips)})" if vm.fixed_ips else ""
        print(f"  vm {vm.name:<10} {vm.host:<7} {vm.mac}  eth0 {','.join(vm.addresses) or '-':<18}"
              f" port {vm.port_id}{fixed}{dhcp}{netns}")
    return 0


async def _vm_add(args: argparse.Namespace) -> int:
    from kumonet.lab.lab import Lab

    lab = Lab.load(args.prefix, root=args.root)
    vm = await lab.add_vm(
        args.name, args.host, network=args.network, port=args.port,
        server_url=args.server, mtu=args.mtu,
    )
    fixed = vm.extra.get("fixed_ips") or "-"
    print(f"vm {vm.name} on {vm.host}: port {vm.port_id} mac {vm.mac} fixed_ips {fixed}"
          f" (tap {vm.tap}, netns {vm.netns})")
    return 0


async def _vm_del(args: argparse.Namespace) -> int:
    from kumonet.lab.lab import Lab

    await Lab.load(args.prefix, root=args.root).del_vm(args.name)
    print(f"vm {args.name} deleted")
    return 0


async def _vm_dhcp(args: argparse.Namespace) -> int:
    from kumonet.lab.lab import Lab

    lease = await Lab.load(args.prefix, root=args.root).vm_dhcp(
        args.name, time_limit=args.timeout
    )
    print(f"vm {args.name}: {lease.describe()}")
    return 0


def _command(args: argparse.Namespace) -> list[str]:
    """The command after ``--``. Options given between the positional
    argument and ``--`` (``vm exec a --prefix p -- cmd``) land in the
    remainder: parse them here."""
    words = list(args.cmd)
    if "--" in words:
        split = words.index("--")
        options, command = words[:split], words[split + 1 :]
        if options:
            leading = argparse.ArgumentParser(prog="kumonet lab", add_help=False)
            _common(leading)
            leading.parse_args(options, namespace=args)
    else:
        command = words
    if not command:
        raise SystemExit("kumonet lab: give the command after --")
    return command


async def _vm_exec(args: argparse.Namespace) -> int:
    from kumonet.lab.command import in_netns
    from kumonet.lab.lab import Lab

    command = _command(args)
    argv = in_netns(Lab.load(args.prefix, root=args.root).vm(args.name).netns, command)
    # exec: the command keeps the terminal, its exit status is ours
    os.execvp(argv[0], argv)


async def _host_exec(args: argparse.Namespace) -> int:
    from kumonet.lab.command import in_netns
    from kumonet.lab.lab import Lab

    command = _command(args)
    lab = Lab.load(args.prefix, root=args.root)
    argv = in_netns(lab.host(args.host).netns, command)
    os.execvpe(argv[0], argv, {**os.environ, **lab.ovs(args.host).env})


async def _host_fail(args: argparse.Namespace) -> int:
    from kumonet.lab.lab import Lab
    from kumonet.lab.outage import clock

    failure = await Lab.load(args.prefix, root=args.root).fail_host(
        args.host, args.how, management=args.management
    )
    what = (f"links down: {' '.join(f'{ns}/{name}' for ns, name in failure.links)}"
            if failure.links else
            f"killed pids: {' '.join(map(str, failure.killed)) or 'none'}")
    print(f"{args.host} failed ({failure.how.value}) at {clock(failure.at)} UTC; {what}")
    return 0


async def _host_recover(args: argparse.Namespace) -> int:
    from kumonet.lab.lab import Lab

    failure = await Lab.load(args.prefix, root=args.root).recover_host(args.host)
    print(f"{args.host} recovered from {failure.how.value}"
          f" ({time.time() - failure.at:.1f} s after the failure)")
    return 0


async def _external_exec(args: argparse.Namespace) -> int:
    from kumonet.lab.command import in_netns
    from kumonet.lab.errors import LabError
    from kumonet.lab.lab import Lab

    command = _command(args)
    lab = Lab.load(args.prefix, root=args.root)
    if not lab.state.external:
        raise LabError(f"lab {args.prefix!r} has no external network (up --l3-hosts M)")
    argv = in_netns(lab.layout.external_netns, command)
    os.execvp(argv[0], argv)


async def _external_ping(args: argparse.Namespace) -> int:
    from kumonet.lab.lab import Lab

    lab = Lab.load(args.prefix, root=args.root)
    pinger = await lab.external_pinger(args.address, interval=args.interval).start()
    try:
        await asyncio.sleep(args.seconds)
    finally:
        report = await pinger.stop()
    print(report.describe())
    return 0 if report.received else 1


async def _flows(args: argparse.Namespace) -> int:
    from kumonet.lab.lab import Lab

    for line in await Lab.load(args.prefix, root=args.root).dump_flows(args.host, args.bridge):
        print(line)
    return 0


def _help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def show(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def _leaf(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: Handler,
    help_text: str,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    _common(parser)
    parser.set_defaults(func=_run(handler))
    return parser


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = sub.add_parser(
        "lab",
        help="the multi-host lab on this machine",
        description="A multi-host cloud on one machine: hosts are network namespaces,"
        " each with its own Open vSwitch (userspace datapath) and kumonet-agent, joined by"
        " an underlay (192.0.2.0/24); VMs are namespaces plugged into br-int as Nova does.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lab.set_defaults(func=_help(lab))
    groups = lab.add_subparsers(dest="lab_command", metavar="COMMAND")

    up = _leaf(groups, "up", _up, "create the lab: hosts host1..hostN, underlay, agents")
    up.add_argument("--hosts", type=int, default=2, help="number of hosts (default 2)")
    up.add_argument("--l3-hosts", type=int, default=0, metavar="M",
                    help="host1..hostM are L3 hosts: br-ex on the flat external network"
                    " (physnet external, upstream 203.0.113.1/24 in <prefix>-ext) and the"
                    " agent's L3 role (default 0)")
    up.add_argument("--report-interval", type=float, metavar="S",
                    help="the agents' heartbeat interval ([agent] report_interval)")
    up.add_argument(
        "--server", action="append", metavar="URL",
        help="Neutron API URL(s) of kumonet-server for the agents; repeat or comma-separate"
        " (default http://127.0.0.1:9696; loopback servers are relayed into the hosts)",
    )
    up.add_argument("--no-agents", action="store_true", help="do not start kumonet-agents")
    up.add_argument("--agent-command", metavar="CMD",
                    help="run CMD --config FILE instead of kumonet-agent (another build)")
    up.add_argument("--underlay-mtu", type=int, default=1500,
                    help="MTU of the underlay (default 1500: VXLAN networks get 1450)")
    up.add_argument("--keep-on-failure", action="store_true",
                    help="leave a failed lab in place for inspection (then run down)")

    down = _leaf(groups, "down", _down,
                 "remove everything of the lab (also after a crash): processes, namespaces, files")
    down.add_argument("--keep-logs", type=Path, metavar="DIR",
                      help="copy the lab's logs to DIR/<prefix>-<time>/ first")
    status = _leaf(groups, "status", _status, "hosts, their processes, VMs with MAC/IP/host")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    flows = _leaf(groups, "flows", _flows, "dump a host's OpenFlow flows (OpenFlow15)")
    flows.add_argument("host")
    flows.add_argument("--bridge", default="br-int")

    host = groups.add_parser("host", help="commands on one host",
                             description="commands on one host")
    host.set_defaults(func=_help(host))
    host_cmds = host.add_subparsers(dest="host_command", metavar="COMMAND")
    host_exec = _leaf(host_cmds, "exec", _host_exec,
                      "run a command in the host's namespace (OVS_RUNDIR set to its OVS)")
    host_exec.add_argument("host")
    host_exec.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    fail = _leaf(host_cmds, "fail", _host_fail,
                 "inject a failure: agent (kill the agent and its keepalived), link (cut the"
                 " underlay and external cables), host (kill OVS, agent, keepalived: the"
                 " machine dies)")
    fail.add_argument("host")
    fail.add_argument("--how", required=True, choices=("agent", "link", "host"))
    fail.add_argument("--management", action="store_true",
                      help="with --how link: cut the agent from the servers too (as when"
                      " the host's only NIC is cut; default: the management network stays)")
    recover = _leaf(host_cmds, "recover", _host_recover,
                    "undo the host's failure: links up, or OVS and the agent started again")
    recover.add_argument("host")

    ext = groups.add_parser("external", help="the upstream namespace of the external network",
                            description="the upstream router namespace (203.0.113.1/24)")
    ext.set_defaults(func=_help(ext))
    ext_cmds = ext.add_subparsers(dest="external_command", metavar="COMMAND")
    ext_exec = _leaf(ext_cmds, "exec", _external_exec,
                     "run a command in the upstream namespace")
    ext_exec.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    ext_ping = _leaf(ext_cmds, "ping", _external_ping,
                     "ping an address every 50 ms for a while; print lost/received and the"
                     " longest gap (the outage)")
    ext_ping.add_argument("address")
    ext_ping.add_argument("--seconds", type=float, default=10.0, help="how long (default 10)")
    ext_ping.add_argument("--interval", type=float, default=0.05,
                          help="seconds between pings (default 0.05)")

    vm = groups.add_parser("vm", help="VMs: add, dhcp, exec, del", description="VMs")
    vm.set_defaults(func=_help(vm))
    vm_cmds = vm.add_subparsers(dest="vm_command", metavar="COMMAND")
    add = _leaf(vm_cmds, "add", _vm_add,
                "boot a VM: create (--network) or bind (--port) its Neutron port and plug it")
    add.add_argument("name")
    add.add_argument("--host", required=True)
    which = add.add_mutually_exclusive_group(required=True)
    which.add_argument("--network", metavar="NET", help="network name or id (nova --nic net-id)")
    which.add_argument("--port", metavar="PORT", help="existing port id (nova --nic port-id)")
    add.add_argument("--server", metavar="URL",
                     help="Neutron API URL (default: the lab's first server)")
    add.add_argument("--mtu", type=int, help="set eth0's MTU now instead of by DHCP")

    dhcp = _leaf(vm_cmds, "dhcp", _vm_dhcp,
                 "run ISC dhclient in the VM; print address, gateway, DNS, MTU")
    dhcp.add_argument("name")
    dhcp.add_argument("--timeout", type=int, default=15, help="seconds (default 15)")

    vm_exec = _leaf(vm_cmds, "exec", _vm_exec, "run a command inside the VM")
    vm_exec.add_argument("name")
    vm_exec.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND ...")

    vm_del = _leaf(vm_cmds, "del", _vm_del,
                   "delete a VM: unplug, remove its namespace, delete/unbind its port")
    vm_del.add_argument("name")
