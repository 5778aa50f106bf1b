"""``make demo``: the main job on the embedded default, printed as a transcript.

1. A kumonet-server on a fresh SQLite store (127.0.0.1, a free port).
2. Seed 002's API walkthrough through openstacksdk: ext-net (flat,
   external) and ext-subnet, demo-net (vxlan) and demo-subnet, demo-router
   with interface and gateway (203.0.113.101), security group rules, a VM
   port, a floating IP.
3. Seed 001 on a lab of 3 hosts (namespaces with their own OVS and
   kumonet-agent): net01/subnet01, one VM on host1 and one on host2 get their
   addresses by DHCP and ping each other across the VXLAN overlay.

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
    result: dict[str, Any] = {"ext": ext, "demo": demo, "demo_subnet": demo_subnet}
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
    net.update_router(router, external_gateway_info={"network_id": ext.id})
    say("Set gateway for router demo-router")
    command("neutron router-port-list demo-router")
    ports = list(net.ports(device_id=router.id))
    listing(
        ["id", "name", "mac_address", "fixed_ips"],
        [[p.id, p.name, p.mac_address, p.fixed_ips] for p in ports],
    )
    command(
        "nova secgroup-add-rule default icmp -1 -1 0.0.0.0/0; "
        "nova secgroup-add-rule default tcp 22 22 0.0.0.0/0"
    )
    default = next(iter(net.security_groups(name="default", project_id=DEMO_PROJECT)), None)
    if default is not None:
        net.create_security_group_rule(
            security_group_id=default.id,
            direction="ingress",
            ethertype="IPv4",
            protocol="icmp",
            remote_ip_prefix="0.0.0.0/0",
        )
        net.create_security_group_rule(
            security_group_id=default.id,
            direction="ingress",
            ethertype="IPv4",
            protocol="tcp",
            port_range_min=22,
            port_range_max=22,
            remote_ip_prefix="0.0.0.0/0",
        )
        say(f"rules added to security group default ({default.id})")
    command("nova boot --nic net-id=demo-net demo-instance1  (the port Nova creates)")
    vm_port = net.create_port(
        network_id=demo.id,
        name="demo-instance1",
        device_owner="compute:nova",
        project_id=DEMO_PROJECT,
    )
    say(f"port {vm_port.id} {vm_port.mac_address} {vm_port.fixed_ips[0]['ip_address']}")
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


async def seed_001_lab(url: str, prefix: str, hosts: int, keep: bool) -> None:
    from kumonet.lab.lab import Lab

    say("\n== seed 001: a lab cloud, VMs on two hosts get DHCP and ping across VXLAN ==")
    command(f"kumonet lab up --hosts {hosts} --prefix {prefix} --server {url}")
    await Lab.teardown(prefix)
    lab = await Lab.up(hosts, prefix=prefix, server_urls=[url])
    try:
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
    finally:
        if keep:
            say(f"\nlab left running (kumonet lab down --prefix {prefix})")
        else:
            command(f"kumonet lab down --prefix {prefix}")
            await lab.down()


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
        seed_002_api(url)
        if not args.no_lab:
            asyncio.run(seed_001_lab(url, args.prefix, args.hosts, args.keep))
        if args.keep:
            say(f"server at {url}; press Ctrl-C to stop it")
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    say("\ndemo finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
