"""Issue 3 end to end: the L2 dataplane on the lab cloud (kumonet-server, a
real kumonet-agent per host, real OVS and ISC dhclient in VM namespaces).

The shared cloud comes from ``tests/conftest.py``; every test makes its own
networks and VMs through its ``tenant`` and they go when it ends. Probes
retry: the first packet towards a new tunnel endpoint is lost (DESIGN.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kumonet.lab.command import in_netns
from kumonet.lab.dhclient import DhcpLease
from kumonet.lab.state import VmRecord
from tests.cloud import Cloud, Network, Tenant, UdpSink, eventually, fixed_ip, send_udp

pytestmark = [pytest.mark.lab, pytest.mark.slow]

OPEN_RULES = ({"protocol": "icmp"}, {"protocol": "tcp"}, {"protocol": "udp"})


@dataclass
class TwoNetworks:
    """Network A on host1+host2, B on host2+host3, two VMs each, addressed by DHCP."""

    a: Network
    b: Network
    vms: dict[str, VmRecord]
    leases: dict[str, DhcpLease]


@pytest.fixture(scope="module")
def two_networks(cloud: Cloud) -> Iterator[TwoNetworks]:
    tenant = Tenant(cloud)

    async def build() -> TwoNetworks:
        a = await tenant.network("10.61.0.0/24", dns=("10.61.0.53",))
        b = await tenant.network("10.62.0.0/24", dns=("10.62.0.53", "10.62.0.54"))
        vms = {
            "a1": await tenant.boot("host1", a),
            "a2": await tenant.boot("host2", a),
            "b1": await tenant.boot("host2", b),
            "b2": await tenant.boot("host3", b),
        }
        leases = dict(
            zip(
                vms,
                await asyncio.gather(
                    *(cloud.lab.vm_dhcp(vm.name, time_limit=30) for vm in vms.values())
                ),
                strict=True,
            )
        )
        return TwoNetworks(a, b, vms, leases)

    try:
        yield asyncio.run(build())
    finally:
        asyncio.run(tenant.close())


async def test_every_vm_gets_its_port_address_gateway_dns_and_mtu_by_dhcp(
    two_networks: TwoNetworks,
) -> None:
    topo = two_networks
    for name, vm in topo.vms.items():
        net = topo.a if name.startswith("a") else topo.b
        lease = topo.leases[name]
        assert lease.address == fixed_ip(vm), name
        assert lease.prefixlen == 24
        assert lease.gateway == net.gateway
        assert lease.mtu == net.mtu == 1450
    assert topo.leases["a1"].dns == ("10.61.0.53",)
    assert topo.leases["b2"].dns == ("10.62.0.53", "10.62.0.54")


async def test_vms_of_one_network_ping_and_talk_tcp_across_hosts(
    cloud: Cloud,
    two_networks: TwoNetworks,
) -> None:
    topo, lab = two_networks, cloud.lab
    for client, server in (("a1", "a2"), ("b2", "b1")):
        c, s = topo.vms[client].name, topo.vms[server].name
        assert await lab.ping(c, topo.leases[server].address, attempts=20)
        assert await lab.ping(s, topo.leases[client].address, attempts=20)
        # full-size segments: the DHCP MTU (1450) must be what the VMs use
        assert await lab.tcp_check(c, s, topo.leases[server].address, size=300_000)


async def test_networks_are_isolated_even_with_addresses_set_by_hand(
    cloud: Cloud,
    tenant: Tenant,
) -> None:
    """Port security off everywhere, so only the network boundary stands in
    the way; the control shows hand-set addresses do work inside a network."""
    lab = cloud.lab
    a = await tenant.network("10.63.0.0/24", port_security_enabled=False)
    b = await tenant.network("10.64.0.0/24", port_security_enabled=False)
    xa = await tenant.boot("host1", a)
    yb = await tenant.boot("host2", b)
    zb = await tenant.boot("host1", b)
    for vm in (xa, yb, zb):
        await cloud.set_address(vm.name, fixed_ip(vm))
    # control: within B, a hand-set address that is no port's reaches yb
    await cloud.set_address(zb.name, "10.64.0.201")
    assert await lab.ping(zb.name, fixed_ip(yb), attempts=20)
    # xa moved into B's subnet by hand: nothing of B answers, on its host or across
    await cloud.set_address(xa.name, "10.64.0.200")
    assert not await lab.ping(xa.name, fixed_ip(yb), attempts=3)
    assert not await lab.ping(xa.name, "10.64.0.201", attempts=3)
    # and nothing of A reaches B the other way round
    await cloud.set_address(yb.name, "10.63.0.202")
    assert not await lab.ping(yb.name, "10.64.0.200", attempts=3)
    # nor a frame to B's MAC sent straight from A (no ARP needed)
    await cloud.set_address(yb.name, fixed_ip(yb))
    await cloud.pin_neighbour(xa.name, fixed_ip(yb), yb.mac)
    async with UdpSink(yb.netns, 7001) as sink:
        token, _ = await send_udp(xa.netns, fixed_ip(yb), 7001, count=5)
        await asyncio.sleep(0.3)
        assert sink.got(token) == []
        # control: the same probe from B's own VM arrives
        await cloud.set_address(zb.name, fixed_ip(zb))
        token, _ = await send_udp(zb.netns, fixed_ip(yb), 7001, count=5)
        await eventually(lambda: _true(bool(sink.got(token))), "UDP within network B")


async def _true(value: bool) -> bool:
    return value


async def test_port_security_mac_and_ip_spoofing_address_pairs_and_disabling(
    cloud: Cloud,
    tenant: Tenant,
) -> None:
    """Probes are UDP datagrams sent from the VM with a pinned neighbour
    entry (no ARP involved) to a receiver whose group lets everything in."""
    lab = cloud.lab
    net = await tenant.network("10.65.0.0/24")
    open_group = await tenant.group()
    for rule in OPEN_RULES:
        await tenant.rule(open_group["id"], remote_ip_prefix="0.0.0.0/0", **rule)
    p = await tenant.boot("host1", net, static=True)
    q = await tenant.boot("host2", net, static=True, security_groups=[open_group["id"]])
    p_ip, q_ip = fixed_ip(p), fixed_ip(q)
    await cloud.pin_neighbour(p.name, q_ip, q.mac)

    async def arrives(sink: UdpSink, *, src: str = "0.0.0.0", attempts: int = 5) -> bool:
        token, _ = await send_udp(p.netns, q_ip, 7002, src=src, count=attempts)
        if sink.got(token):
            return True
        await asyncio.sleep(0.3)
        return bool(sink.got(token))

    async def set_mac(mac: str) -> None:
        await lab.vm_exec(p.name, ["ip", "link", "set", "eth0", "address", mac])
        # a new link address flushes the neighbour table, permanent entries too
        await cloud.pin_neighbour(p.name, q_ip, q.mac)

    forged_mac = "fa:16:3e:00:be:ef"
    async with UdpSink(q.netns, 7002) as sink:
        assert await arrives(sink, src=p_ip, attempts=20)  # control: its own MAC and IP
        assert not await arrives(sink, src="10.65.0.250")  # an IP not its own
        await set_mac(forged_mac)
        assert not await arrives(sink)  # a MAC not its own
        await set_mac(p.mac)
        assert await arrives(sink)

        # an allowed pair lets exactly that (IP, MAC) through
        await tenant.update_port(
            p.port_id,
            allowed_address_pairs=[{"ip_address": "10.65.0.250", "mac_address": forged_mac}],
        )
        await set_mac(forged_mac)
        await eventually(lambda: arrives(sink, src="10.65.0.250"), "the allowed pair")
        assert not await arrives(sink, src="10.65.0.251")  # another IP, same MAC
        assert not await arrives(sink)  # its own IP with the pair's MAC
        await set_mac(p.mac)
        assert not await arrives(sink, src="10.65.0.250")  # the pair's IP with its own MAC
        assert await arrives(sink)

        # port security off: anything goes
        await tenant.update_port(
            p.port_id, allowed_address_pairs=[], security_groups=[], port_security_enabled=False
        )
        await set_mac("fa:16:3e:00:ca:fe")
        await eventually(lambda: arrives(sink, src="10.65.0.251"), "port security off")


def _mentions(flows: list[str], *needles: str) -> list[str]:
    return [line for line in flows if any(n.lower() in line.lower() for n in needles)]


def _network_flows(flows: list[str], net: Network) -> list[str]:
    pattern = re.compile(rf"\btun_id={net.tun_id}\b|{net.tun_id}->tun_id")
    return [line for line in flows if pattern.search(line)]


async def test_deleted_ports_leave_no_flows_and_last_port_takes_network_and_tunnels(
    cloud: Cloud,
    tenant: Tenant,
) -> None:
    tunnels_before = {host: await cloud.tunnel_ports(host) for host in cloud.hosts}
    net = await tenant.network("10.66.0.0/24")
    u1 = await tenant.boot("host1", net)
    u2 = await tenant.boot("host1", net)
    u3 = await tenant.boot("host3", net)

    async def every_host(check: str, predicate: object) -> None:
        async def holds() -> bool:
            results = [predicate(host, await cloud.flows(host)) for host in cloud.hosts]  # type: ignore[operator]
            return all(results)

        await eventually(holds, check)

    # every host that has the network knows every port of it
    await every_host(
        "flows of u1, u2, u3",
        lambda host, flows: host == "host2" or all(_mentions(flows, vm.mac) for vm in (u1, u2, u3)),
    )
    assert "vxlan-192.0.2.3" in await cloud.tunnel_ports("host1")
    assert "vxlan-192.0.2.1" in await cloud.tunnel_ports("host3")

    await tenant.unplug(u2.name)  # the VM and its port
    await every_host(
        "no flow of u2",
        lambda host, flows: not _mentions(flows, u2.mac, f"={fixed_ip(u2)},", f"={fixed_ip(u2)} "),
    )
    assert _network_flows(await cloud.flows("host1"), net)  # u1 still has the network there

    await tenant.unplug(u3.name)
    await every_host(
        "no flow of u3",
        lambda host, flows: not _mentions(flows, u3.mac, f"={fixed_ip(u3)},", f"={fixed_ip(u3)} "),
    )
    await eventually(lambda: _no_network_flows(cloud, "host3", net), "network flows on host3")
    for host in ("host1", "host3"):

        async def tunnels_back(host: str = host) -> bool:
            return await cloud.tunnel_ports(host) == tunnels_before[host]

        await eventually(tunnels_back, f"the tunnels of {host} back to {tunnels_before[host]}")


async def _no_network_flows(cloud: Cloud, host: str, net: Network) -> bool:
    return not _network_flows(await cloud.flows(host), net)


_FLOW = re.compile(r"cookie=(0x[0-9a-f]+), duration=([0-9.]+)s, table=(\d+), n_packets=(\d+)")


def _flow_table(flows: list[str]) -> dict[str, tuple[float, int]]:
    """cookie → (duration s, n_packets) for kumonet's flows."""
    found = {}
    for line in flows:
        m = _FLOW.search(line)
        if m and m.group(1).startswith("0x6b6e"):
            found[m.group(1)] = (float(m.group(2)), int(m.group(4)))
    return found


async def test_agent_killed_and_restarted_under_ping_loses_nothing_and_keeps_flows(
    cloud: Cloud,
    tenant: Tenant,
) -> None:
    lab = cloud.lab
    net = await tenant.network("10.67.0.0/24")
    r1 = await tenant.boot("host1", net, static=True)
    r2 = await tenant.boot("host2", net, static=True)
    assert await lab.ping(r1.name, fixed_ip(r2), attempts=20)
    before = {host: _flow_table(await cloud.flows(host)) for host in ("host1", "host2")}

    first_passes = {host: _first_passes(cloud, host) for host in ("host1", "host2")}
    pinger = asyncio.create_task(
        lab.vm_exec(
            r1.name,
            ["ping", "-n", "-i", "0.1", "-c", "80", "-W", "1", fixed_ip(r2)],
            check=False,
            time_limit=30,
        )
    )
    await asyncio.sleep(1)
    for host in ("host1", "host2"):
        await cloud.stop_agent(host, kill=True)
        await cloud.start_agent(host)
    for host in ("host1", "host2"):

        async def reconciled(host: str = host) -> bool:
            return len(_first_passes(cloud, host)) > len(first_passes[host])

        await eventually(reconciled, f"{host}'s restarted agent reconciling")
        # the restarted agent's first pass found everything in place
        assert _first_passes(cloud, host)[-1].endswith("+0 -0"), _first_passes(cloud, host)
        after = _flow_table(await cloud.flows(host))
        kept = before[host]
        assert set(kept) == set(after), f"{host}: {set(kept) ^ set(after)}"
        for cookie, (duration, packets) in kept.items():
            # not deleted and re-added: the flow is older and its counters went on
            assert after[cookie][0] >= duration, (host, cookie)
            assert after[cookie][1] >= packets, (host, cookie)
    result = await pinger
    stats = re.search(r"(\d+) packets transmitted, (\d+) received", result.stdout)
    assert stats, result.stdout
    assert stats.group(1) == stats.group(2) == "80", result.stdout
    # and the restarted agents follow new intent
    r3 = await tenant.boot("host3", net)
    for host in ("host1", "host2"):

        async def knows_r3(host: str = host) -> bool:
            return bool(_mentions(await cloud.flows(host), r3.mac))

        await eventually(knows_r3, f"{host}'s restarted agent adding r3")


def _first_passes(cloud: Cloud, host: str) -> list[str]:
    """The agent log's lines about a first reconciliation (one per agent start)."""
    log = Path(cloud.lab.host(host).dir, "agent.log").read_text()
    return re.findall(r"reconciliation 1: \+\d+ -\d+", log)


async def test_agents_listed_alive_and_dead_ports_active_and_down(
    cloud: Cloud,
    tenant: Tenant,
) -> None:
    agents = await cloud.agents()
    for host in cloud.hosts:
        types = {a["agent_type"] for a in agents if a["host"] == host and a["alive"]}
        assert types == {"Open vSwitch agent", "DHCP agent"}, host

    net = await tenant.network("10.68.0.0/24")
    port = await tenant.create_port(net)
    assert port["status"] == "DOWN" and port["binding:host_id"] == ""
    vm = await tenant.plug("host3", port["id"])

    async def status_is(status: str) -> bool:
        return (await cloud.port(vm.port_id))["status"] == status

    await eventually(lambda: status_is("ACTIVE"), "port ACTIVE once plugged")
    assert (await cloud.port(vm.port_id))["binding:host_id"] == "host3"
    await cloud.lab.ovs("host3").vsctl("del-port", "br-int", vm.tap)  # unplugged
    await eventually(lambda: status_is("DOWN"), "port DOWN once unplugged")

    # an agent stopped is dead after at most 3 missed reports
    await cloud.stop_agent("host3")
    try:
        loop = asyncio.get_running_loop()
        stopped = loop.time()

        async def dead() -> bool:
            return not any(a["alive"] for a in await cloud.agents() if a["host"] == "host3")

        await eventually(dead, "host3's agents dead", time_limit=10, interval=0.1)
        # lease = 3 report intervals; one more second of slack for the poll and the server's clock
        assert loop.time() - stopped <= 3 * cloud.report_interval + 1
        assert {(h, t) for h, t in await cloud.alive_agents()} >= {
            ("host1", "Open vSwitch agent"),
            ("host2", "Open vSwitch agent"),
        }
    finally:
        await cloud.start_agent("host3")
        await cloud.wait_agents(["host3"])


# Prints the target address of every ARP request the VM's eth0 receives.
_ARP_SNIFFER = """
import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(("eth0", 0))
print("ready", flush=True)
while True:
    frame = s.recv(2048)
    if frame[20:22] == b"\\x00\\x01":
        print(socket.inet_ntoa(frame[38:42]), flush=True)
"""


async def test_arp_requests_for_a_port_reach_it_alone_others_flood(
    cloud: Cloud,
    tenant: Tenant,
) -> None:
    """The agent's default ``direct_arp_requests``: a VM asking for another
    port's address does not wake every VM of the network."""
    lab = cloud.lab
    net = await tenant.network("10.69.0.0/24")
    a = await tenant.boot("host1", net, static=True)
    b = await tenant.boot("host2", net, static=True)
    c = await tenant.boot("host2", net, static=True)
    proc = await asyncio.create_subprocess_exec(
        *in_netns(c.netns, [sys.executable, "-c", _ARP_SNIFFER]),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    seen: list[str] = []

    async def read() -> None:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 10)).strip() == b"ready"
        ready.set()
        async for raw in proc.stdout:
            seen.append(raw.decode().strip())

    ready = asyncio.Event()
    reader = asyncio.create_task(read())
    try:
        await asyncio.wait_for(ready.wait(), 10)
        assert await lab.ping(a.name, fixed_ip(b), attempts=20)  # a ARPs for b
        # control: a request for an address no port has is flooded, c sees it
        assert not await lab.ping(a.name, "10.69.0.99", attempts=1)

        async def flooded_seen() -> bool:
            return "10.69.0.99" in seen

        await eventually(flooded_seen, "c seeing the flooded ARP request")
        assert fixed_ip(b) not in seen, seen
    finally:
        proc.kill()
        await proc.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
