"""``make demo``: the main job on the embedded default, printed as a transcript.

1. A kumonet-server on a fresh SQLite store (127.0.0.1, a free port).
2. Seed 002's API walkthrough through openstacksdk: ext-net (flat,
   external) and ext-subnet, demo-net (vxlan) and demo-subnet, demo-router
   with interface and gateway (203.0.113.101), security group rules, a VM
   port, a floating IP.
3. Seed 001 on a lab of 3 hosts (namespaces with their own OVS and
   kumonet-agent; host1 and host2 are L3 hosts with br-ex on the external
   network 203.0.113.0/24): net01/subnet01, one VM on host1 and one on host2
   get their addresses by DHCP and ping each other across the VXLAN overlay.
4. Seed 002 in the dataplane: demo-router (HA) from step 2 becomes a
   qrouter namespace on both L3 hosts, active on one; demo-instance1 boots on
   host3 with the port from step 2; the upstream (203.0.113.1) pings the
   router and the floating IP, the VM reaches the upstream; then the active
   host's agent and keepalived are killed, the other host takes over, and
   the failed host comes back as standby.

Everything is torn down at the end (``--keep`` leaves server and lab up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

DEMO_CONFIG = """\
[DEFAULT]
global_physnet_mtu = 1500
l3_ha = true
[ml2]
type_drivers = flat,vlan,vxlan,gre
tenant_network_types = vxlan
[ml2_type_flat]
flat_networks = external
[ml2_type_vxlan]
vni_ranges = 1:1000
"""

OVS_AGENT = "Open vSwitch agent"
DEMO_PROJECT = "443cd1596b2e46d49965750771ebbfe1"  # seed 002's demo project id


def say(text: str = "") -> None:
    print(text, flush=True)


def command(text: str) -> None:
    say(f"\n$ {text}")


def table(fields: Mapping[str, Any]) -> None:
    """A Field/Value table like the neutron CLI prints."""
    rows = [(k, _cell(v)) for k, v in fields.items()]
    width_k = max([len("Field"), *(len(k) for k, _ in rows)])
    width_v = max([len("Value"), *(len(v) for _, v in rows)])
    rule = f"+-{'-' * width_k}-+-{'-' * width_v}-+"
    say(rule)
    say(f"| {'Field'.ljust(width_k)} | {'Value'.ljust(width_v)} |")
    say(rule)
    for key, value in rows:
        say(f"| {key.ljust(width_k)} | {value.ljust(width_v)} |")
    say(rule)


def listing(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    say(rule)
    say("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")
    say(rule)
    for row in cells:
        say("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |")
    say(rule)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return " ".join(json.dumps(v) for v in value)
        return json.dumps(value) if value else ""
    return str(value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(workdir: Path, port: int) -> Iterator[str]:
    config = workdir / "kumonet.ini"
    config.write_text(DEMO_CONFIG)
    url = f"http://127.0.0.1:{port}"
    server = shutil.which("kumonet-server") or str(Path(sys.executable).with_name("kumonet-server"))
    log = (workdir / "server.log").open("w")
    proc = subprocess.Popen(
        [
            server,
            "--listen",
            f"127.0.0.1:{port}",
            "--store",
            f"sqlite:///{workdir / 'kumonet.db'}",
            "--config",
            str(config),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"kumonet-server did not start; see {workdir / 'server.log'}"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def seed_002_api(url: str) -> dict[str, Any]:
    """Seed 002's walkthrough through openstacksdk; returns what the lab part reuses."""
    import openstack

    conn = openstack.connection.Connection(
        auth_type="none", auth={"endpoint": url}, network_endpoint_override=url + "/"
    )
    net = conn.network
    say("== seed 002: networks, router and floating IP through the Neutron API ==")
    command(
        "neutron net-create ext-net --router:external True "
        "--provider:physical_network external --provider:network_type flat"
    )
    ext = net.create_network(
        name="ext-net",
        is_router_external=True,
        provider_network_type="flat",
        provider_physical_network="external",
    )
    table(
        {
            "admin_state_up": ext.is_admin_state_up,
            "id": ext.id,
            "name": ext.name,
            "provider:network_type": ext.provider_network_type,
            "provider:physical_network": ext.provider_physical_network,
            "provider:segmentation_id": ext.provider_segmentation_id,
            "router:external": ext.is_router_external,
            "shared": ext.is_shared,
            "status": ext.status,
            "mtu": ext.mtu,
        }
    )
    command(
        "neutron subnet-create ext-net 203.0.113.0/24 --name ext-subnet "
        "--allocation-pool start=203.0.113.101,end=203.0.113.200 "
        "--disable-dhcp --gateway 203.0.113.1"
    )
    ext_subnet = net.create_subnet(
        network_id=ext.id,
        name="ext-subnet",
        cidr="203.0.113.0/24",
        ip_version=4,
        allocation_pools=[{"start": "203.0.113.101", "end": "203.0.113.200"}],
        is_dhcp_enabled=False,
        gateway_ip="203.0.113.1",
    )
    _subnet_table(ext_subnet)
    command(f"neutron net-create demo-net --tenant-id {DEMO_PROJECT} --provider:network_type vxlan")
    demo = net.create_network(
        name="demo-net", project_id=DEMO_PROJECT, provider_network_type="vxlan"
    )
    table(
        {
            "id": demo.id,
            "name": demo.name,
            "provider:network_type": demo.provider_network_type,
            "provider:segmentation_id": demo.provider_segmentation_id,
            "mtu": demo.mtu,
            "tenant_id": demo.project_id,
        }
    )
    command(
        "neutron subnet-create demo-net 192.168.1.0/24 --name demo-subnet --gateway 192.168.1.1"
    )
    demo_subnet = net.create_subnet(
        network_id=demo.id,
        name="demo-subnet",
        cidr="192.168.1.0/24",
        ip_version=4,
        gateway_ip="192.168.1.1",
        project_id=DEMO_PROJECT,
    )
    _subnet_table(demo_subnet)
    result: dict[str, Any] = {"ext": ext.id, "demo": demo.id, "demo_subnet": demo_subnet.id}
    try:
        command("neutron router-create demo-router")
        router = net.create_router(name="demo-router", project_id=DEMO_PROJECT)
    except openstack.exceptions.SDKException as error:
        say(f"(routers not available on this server yet: {error})")
        conn.close()
        return result
    table(
        {
            "id": router.id,
            "name": router.name,
            "ha": router.is_ha,
            "distributed": router.is_distributed,
            "status": router.status,
            "tenant_id": router.project_id,
        }
    )
    command("neutron router-interface-add demo-router demo-subnet")
    added = net.add_interface_to_router(router, subnet=demo_subnet.id)
    say(f"Added interface {added['port_id']} to router demo-router.")
    command("neutron router-gateway-set demo-router ext-net")
    router = net.update_router(router, external_gateway_info={"network_id": ext.id})
    say("Set gateway for router demo-router")
    result["router_id"] = router.id
    result["gateway_ip"] = router.external_gateway_info["external_fixed_ips"][0]["ip_address"]
    command("neutron router-port-list demo-router")
    ports = list(net.ports(device_id=router.id))
    listing(
        ["id", "name", "mac_address", "fixed_ips"],
        [[p.id, p.name, p.mac_address, p.fixed_ips] for p in ports],
    )
    command("nova boot --nic net-id=demo-net demo-instance1  (the port Nova creates)")
    vm_port = net.create_port(
        network_id=demo.id,
        name="demo-instance1",
        device_owner="compute:nova",
        project_id=DEMO_PROJECT,
    )
    say(f"port {vm_port.id} {vm_port.mac_address} {vm_port.fixed_ips[0]['ip_address']}")
    command(
        "nova secgroup-add-rule default icmp -1 -1 0.0.0.0/0; "
        "nova secgroup-add-rule default tcp 22 22 0.0.0.0/0"
    )
    # The project's default group exists once the project made something (the
    # port above): the port names it.
    default_id = next(iter(vm_port.security_group_ids or ()), None)
    if default_id is None:
        found = next(iter(net.security_groups(name="default", project_id=DEMO_PROJECT)), None)
        default_id = found.id if found is not None else None
    if default_id is not None:
        net.create_security_group_rule(
            security_group_id=default_id,
            direction="ingress",
            ethertype="IPv4",
            protocol="icmp",
            remote_ip_prefix="0.0.0.0/0",
        )
        net.create_security_group_rule(
            security_group_id=default_id,
            direction="ingress",
            ethertype="IPv4",
            protocol="tcp",
            port_range_min=22,
            port_range_max=22,
            remote_ip_prefix="0.0.0.0/0",
        )
        say(f"rules added to security group default ({default_id})")
    command("neutron floatingip-create ext-net")
    fip = net.create_ip(floating_network_id=ext.id, project_id=DEMO_PROJECT)
    table(
        {
            "id": fip.id,
            "floating_ip_address": fip.floating_ip_address,
            "floating_network_id": fip.floating_network_id,
            "status": fip.status,
        }
    )
    command(f"nova floating-ip-associate demo-instance1 {fip.floating_ip_address}")
    fip = net.update_ip(fip, port_id=vm_port.id)
    result["fip"] = fip.floating_ip_address
    result["vm_port_id"] = vm_port.id
    table(
        {
            "id": fip.id,
            "floating_ip_address": fip.floating_ip_address,
            "fixed_ip_address": fip.fixed_ip_address,
            "port_id": fip.port_id,
            "router_id": fip.router_id,
        }
    )
    conn.close()
    return result


def _subnet_table(subnet: Any) -> None:
    table(
        {
            "allocation_pools": subnet.allocation_pools,
            "cidr": subnet.cidr,
            "dns_nameservers": subnet.dns_nameservers,
            "enable_dhcp": subnet.is_dhcp_enabled,
            "gateway_ip": subnet.gateway_ip,
            "host_routes": subnet.host_routes,
            "id": subnet.id,
            "ip_version": subnet.ip_version,
            "name": subnet.name,
            "network_id": subnet.network_id,
        }
    )


async def lab_part(
    url: str, prefix: str, *, hosts: int, l3_hosts: int, keep: bool, seed_002: Mapping[str, Any]
) -> None:
    from kumonet.lab.lab import Lab

    say("\n== seed 001: a lab cloud, VMs on two hosts get DHCP and ping across VXLAN ==")
    command(
        f"kumonet lab up --hosts {hosts} --l3-hosts {l3_hosts} --prefix {prefix} --server {url}"
    )
    await Lab.teardown(prefix)
    lab = await Lab.up(hosts, l3_hosts=l3_hosts, prefix=prefix, server_urls=[url])
    try:
        await seed_001_lab(lab, url, hosts)
        if l3_hosts >= 2 and seed_002.get("router_id"):
            await seed_002_lab(lab, url, seed_002)
    finally:
        if keep:
            say(f"\nlab left running (kumonet lab down --prefix {prefix})")
        else:
            command(f"kumonet lab down --prefix {prefix}")
            await lab.down()


async def seed_001_lab(lab: Any, url: str, hosts: int) -> None:
    await _wait_agents(url, hosts)
    _print_agents(url)
    command(
        "openstack network create net01; openstack subnet create subnet01 "
        "--network net01 --subnet-range 10.11.12.0/24"
    )
    net01 = _post(url, "networks", {"name": "net01"})
    subnet = _post(
        url,
        "subnets",
        {
            "network_id": net01["id"],
            "name": "subnet01",
            "cidr": "10.11.12.0/24",
            "ip_version": 4,
            "dns_nameservers": ["192.0.2.53"],
        },
    )
    say(
        f"net01 {net01['id']} vxlan VNI {net01['provider:segmentation_id']} "
        f"MTU {net01['mtu']}; subnet01 {subnet['cidr']} gateway {subnet['gateway_ip']}"
    )
    addresses = {}
    for name, host in (("vm1", "host1"), ("vm2", "host2")):
        command(f"kumonet lab vm add {name} --host {host} --network net01")
        vm = await lab.add_vm(name, host, network="net01")
        say(f"{name}: port {vm.port_id} on {host}")
    for name in ("vm1", "vm2"):
        command(f"kumonet lab vm dhcp {name}")
        lease = await lab.vm_dhcp(name)
        addresses[name] = lease.address
        say(f"{name}: {lease.describe()}")
    command(f"kumonet lab vm exec vm1 -- ping -c 3 {addresses['vm2']}")
    out = await lab.vm_exec("vm1", ["ping", "-c", "3", "-i", "0.2", addresses["vm2"]])
    say(out.stdout.strip())
    command("kumonet lab host exec host1 -- ovs-vsctl show")
    say((await lab.host_exec("host1", ["ovs-vsctl", "show"])).stdout.strip())
    for host in ("host1", "host2", "host3"):
        flows = await lab.dump_flows(host)
        count = sum(1 for line in flows if "cookie=" in line)
        say(f"{host}: {count} flows on br-int")


async def seed_002_lab(lab: Any, url: str, seed: Mapping[str, Any]) -> None:
    """The routers of seed 002 in the dataplane, and a failover."""
    from kumonet.lab.process import netns_list

    router_id, fip, gateway = seed["router_id"], seed["fip"], seed["gateway_ip"]
    say("\n== seed 002 in the dataplane: demo-router on the L3 hosts, a failover ==")
    l3_hosts = [name for name, record in lab.hosts.items() if record.l3]
    active = await _hosting(url, router_id, show=True)
    for host in l3_hosts:
        command(f"kumonet lab host exec {host} -- ip netns   # router namespaces of {host}")
        prefix = lab.layout.router_netns_prefix(host)
        for namespace in await netns_list():
            if namespace.startswith(prefix):
                say(f"{namespace.removeprefix(prefix)}   ({namespace} on this machine)")
    for host in l3_hosts:
        await _router_addresses(lab, host, router_id, active)
    command("kumonet lab vm add demo_instance1 --host host3 --port <demo-instance1 port>")
    vm = await lab.add_vm("demo_instance1", "host3", port=seed["vm_port_id"])
    lease = await lab.vm_dhcp(vm.name, time_limit=30)
    say(f"demo_instance1: {lease.describe()}")
    for address in (gateway, fip):
        command(f"kumonet lab external exec -- ping -c 3 {address}   # from 203.0.113.1")
        await _ping(lab.external_exec, address)
    command("kumonet lab vm exec demo_instance1 -- ping -c 3 203.0.113.1")
    await _ping(lambda argv, **kw: lab.vm_exec(vm.name, argv, **kw), "203.0.113.1")

    say(f"\n-- failover: the agent and keepalived of {active} are killed --")
    command(f"kumonet lab external ping {fip} --interval 0.05 &")
    async with lab.external_pinger(fip) as pinger:
        await pinger.wait_for_replies(10)
        command(f"kumonet lab host fail {active} --how agent")
        failure = await lab.fail_host(active, "agent")
        await pinger.wait_for_replies(20, after=failure.at)
        new_active = await _hosting(url, router_id, show=False, other_than=active)
    say(pinger.report.describe())
    await _hosting(url, router_id, show=True)
    say(f"{new_active} took over from {active}")
    await _router_addresses(lab, new_active, router_id, new_active)
    command(f"kumonet lab external exec -- ping -c 3 {fip}")
    await _ping(lab.external_exec, fip)
    command(f"kumonet lab host recover {active}")
    await lab.recover_host(active)
    await _hosting(url, router_id, show=True, settled=True)
    say(f"{active} is back as standby (no preemption)")


async def _hosting(
    url: str,
    router_id: str,
    *,
    show: bool,
    other_than: str | None = None,
    settled: bool = False,
) -> str:
    """The active host of the router (waiting for exactly one; with
    ``other_than``, for that host to be replaced; with ``settled``, for every
    hosting agent to be alive and the others to say standby)."""
    deadline = time.monotonic() + 60
    while True:
        agents = _get(url, f"routers/{router_id}/l3-agents")["agents"]
        active = [a["host"] for a in agents if a.get("ha_state") == "active"]
        standby = [a for a in agents if a.get("ha_state") == "standby"]
        if other_than is not None:
            active = [h for h in active if h != other_than]
        alive = all(a["alive"] for a in agents)
        done = len(active) == 1 and (not settled or (alive and len(standby) == len(agents) - 1))
        if done or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    if not active:
        raise SystemExit(f"router {router_id} has no active L3 agent")
    if show:
        command("neutron l3-agent-list-hosting-router demo-router")
        listing(
            ["id", "host", "admin_state_up", "alive", "ha_state"],
            [
                [a["id"], a["host"], a["admin_state_up"], ":-)" if a["alive"] else "xxx",
                 a.get("ha_state")]
                for a in sorted(agents, key=lambda a: a["host"])
            ],
        )  # fmt: skip
    return str(active[0])


async def _router_addresses(lab: Any, host: str, router_id: str, active: str) -> None:
    role = "active" if host == active else "standby"
    command(f"ip netns exec qrouter-{router_id} ip -4 -br addr   # on {host} ({role})")
    result = await lab.router_exec(host, router_id, ["ip", "-4", "-br", "addr"], check=False)
    say(result.stdout.strip() or result.stderr.strip())


async def _ping(execute: Any, address: str) -> None:
    # Retried: the first packet towards a new tunnel endpoint or neighbour is lost.
    for _ in range(5):
        result = await execute(["ping", "-c", "3", "-i", "0.2", "-W", "1", address], check=False)
        if result.returncode == 0:
            break
        await asyncio.sleep(0.5)
    say(result.stdout.strip())


async def _wait_agents(url: str, hosts: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        agents = _get(url, "agents")["agents"]
        alive = {
            a["host"] for a in agents if a["alive"] and a["agent_type"] == "Open vSwitch agent"
        }
        if len(alive) >= hosts:
            return
        await asyncio.sleep(0.3)
    raise SystemExit("agents did not register within 60 s")


def _print_agents(url: str) -> None:
    command("neutron agent-list")
    agents = sorted(_get(url, "agents")["agents"], key=lambda a: (a["host"], a["agent_type"]))
    listing(
        ["id", "agent_type", "host", "alive", "admin_state_up", "binary"],
        [
            [
                a["id"],
                a["agent_type"],
                a["host"],
                ":-)" if a["alive"] else "XXX",
                a["admin_state_up"],
                a["binary"],
            ]
            for a in agents
        ],
    )


def _get(url: str, collection: str) -> Any:
    with urllib.request.urlopen(f"{url}/v2.0/{collection}", timeout=10) as response:
        return json.loads(response.read())


def _post(url: str, collection: str, body: Mapping[str, Any]) -> Any:
    member = collection[:-1]
    request = urllib.request.Request(
        f"{url}/v2.0/{collection}",
        method="POST",
        data=json.dumps({member: body}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())[member]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kumonet demo", description=__doc__)
    parser.add_argument("--prefix", default="kdemo", help="lab prefix")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--l3-hosts", type=int, default=2, help="L3 hosts among the hosts")
    parser.add_argument("--keep", action="store_true", help="leave server and lab running")
    parser.add_argument("--no-lab", action="store_true", help="only the API walkthrough")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 and not args.no_lab:
        print("the lab needs root (network namespaces); use --no-lab", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="kumonet-demo-"))
    say(f"kumonet demo: server state and logs in {workdir}")
    with running_server(workdir, free_port()) as url:
        say(f"kumonet-server listening on {url} (store sqlite:///{workdir / 'kumonet.db'})")
        seed_002 = seed_002_api(url)
        if not args.no_lab:
            asyncio.run(
                lab_part(
                    url,
                    args.prefix,
                    hosts=args.hosts,
                    l3_hosts=args.l3_hosts,
                    keep=args.keep,
                    seed_002=seed_002,
                )
            )
        if args.keep:
            say(f"server at {url}; press Ctrl-C to stop it")
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    say("\ndemo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
