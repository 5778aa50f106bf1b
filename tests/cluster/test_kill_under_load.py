"""Issue 4's must-hold tests on real processes (3 etcd members, 3 servers):

* kill under load: 8 concurrent clients create ports through the 3 servers
  (round robin, client side) for ~30 s while the etcd leader is killed
  (SIGKILL) and restarted every 5 s. Every create answered 201 exists
  afterwards, no IP or MAC is held by two ports, no 500s, and no request
  made two ports (ports <= acknowledged + answered "maybe applied").
* majority loss: 2 of 3 members stopped -> writes answer 503 (measured,
  within the 2 s the issue asks) and never 500, reads go on flagged stale,
  nothing is corrupted; both back -> writes succeed without restarting the
  servers, and an agent's long poll that spanned the outage misses nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.cluster.etcd_cluster import EtcdCluster, running_cluster
from tests.cluster.servers import Client, Servers, running_servers

LOAD_SECONDS = float(os.environ.get("KUMONET_LOAD_SECONDS", "30"))
KILL_EVERY = 5.0
CLIENTS = 8
REQUEST_GUARD = 60.0  # seconds; a guard against hanging, never an expectation


def make_network(client: Client, cidr: str) -> tuple[str, str]:
    net = client.create_network("load")
    assert net.status == 201, net
    subnet = client.call("POST", "/v2.0/subnets", {"subnet": {
        "network_id": net.body["network"]["id"], "cidr": cidr, "ip_version": 4}})
    assert subnet.status == 201, subnet
    return net.body["network"]["id"], subnet.body["subnet"]["id"]


@dataclass
class LoadReport:
    acknowledged: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (ip, mac)
    statuses: Counter[int] = field(default_factory=Counter)
    maybe_applied: int = 0
    transport_errors: list[str] = field(default_factory=list)
    bodies_500: list[Any] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)
    kills: int = 0

    def longest_pause(self, start: float, end: float) -> float:
        times = sorted([start, *self.ack_times, end])
        return max(b - a for a, b in itertools.pairwise(times))


async def create_ports(urls: list[str], network_id: str, seconds: float,
                       report: LoadReport) -> None:
    turn = itertools.count()
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=REQUEST_GUARD)

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            url = urls[next(turn) % len(urls)]
            try:
                async with session.post(f"{url}/v2.0/ports",
                                        json={"port": {"network_id": network_id}}) as answer:
                    body = await answer.json(content_type=None)
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError) as error:
                report.transport_errors.append(f"{url}: {error!r}")
                continue
            report.statuses[status] += 1
            if status == 201:
                port = body["port"]
                report.acknowledged[port["id"]] = (port["fixed_ips"][0]["ip_address"],
                                                   port["mac_address"])
                report.ack_times.append(time.monotonic())
            elif status == 503:
                if "may or may not" in body["NeutronError"]["message"]:
                    report.maybe_applied += 1
                await asyncio.sleep(0.05)
            elif status >= 500:
                report.bodies_500.append(body)

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))


async def kill_leader_repeatedly(etcd: EtcdCluster, seconds: float, report: LoadReport) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() + KILL_EVERY <= deadline:
        await asyncio.sleep(KILL_EVERY)
        leader = await asyncio.to_thread(etcd.leader)
        await asyncio.to_thread(etcd.kill, leader)
        report.kills += 1
        await asyncio.sleep(1.0)
        await asyncio.to_thread(etcd.start, leader)


def all_ports(client: Client, network_id: str) -> list[dict[str, Any]]:
    answer = client.call("GET", f"/v2.0/ports?network_id={network_id}")
    assert answer.status == 200, answer
    ports: list[dict[str, Any]] = answer.body["ports"]
    return ports


def check_no_duplicates(ports: list[dict[str, Any]]) -> None:
    ips = Counter(ip["ip_address"] for p in ports for ip in p["fixed_ips"])
    macs = Counter(p["mac_address"] for p in ports)
    assert [ip for ip, n in ips.items() if n > 1] == []
    assert [mac for mac, n in macs.items() if n > 1] == []


def test_port_creates_survive_leader_kills() -> None:
    with running_cluster(3, prefix="kumonet-load-etcd-") as etcd, \
            running_servers(etcd.url, 3, prefix="kumonet-load-srv-") as servers:
        first = Client(servers.urls[0])
        network_id, _ = make_network(first, "10.64.0.0/16")
        report = LoadReport()
        started = time.monotonic()

        async def run() -> None:
            await asyncio.gather(create_ports(servers.urls, network_id, LOAD_SECONDS, report),
                                 kill_leader_repeatedly(etcd, LOAD_SECONDS, report))

        asyncio.run(run())
        ended = time.monotonic()
        etcd.wait_healthy([m.name for m in etcd.members])
        ports = all_ports(first, network_id)
        pause = report.longest_pause(started, ended)
        print(f"\nkill under load: {len(report.acknowledged)} acknowledged port creates in "
              f"{ended - started:.1f} s, {report.kills} leader kills, longest write pause "
              f"{pause:.2f} s; statuses {dict(report.statuses)}, {report.maybe_applied} "
              f"answered maybe-applied, {len(ports)} ports stored")
        assert report.bodies_500 == [], servers.logs()
        assert report.transport_errors == [], report.transport_errors[:5]
        assert set(report.statuses) <= {201, 503}, report.statuses
        assert report.kills >= int(LOAD_SECONDS // KILL_EVERY) - 1
        stored = {p["id"]: p for p in ports}
        missing = [pid for pid in report.acknowledged if pid not in stored]
        assert missing == []
        for pid, (ip, mac) in report.acknowledged.items():
            assert stored[pid]["fixed_ips"][0]["ip_address"] == ip
            assert stored[pid]["mac_address"] == mac
        check_no_duplicates(ports)
        # No request made two ports: the only ports beyond the acknowledged
        # ones come from answers that said "maybe applied".
        assert len(ports) - len(report.acknowledged) <= report.maybe_applied
        assert len(report.acknowledged) > 0


async def timed_create(url: str, network_id: str) -> tuple[int, float, Any]:
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_GUARD)) as s, \
            s.post(f"{url}/v2.0/ports", json={"port": {"network_id": network_id}}) as answer:
        body = await answer.json(content_type=None)
        return answer.status, time.monotonic() - started, body


def long_poll(client: Client, revision: int, wait: int) -> Any:
    answer = client.call("GET", f"/v1/agent/watch?prefix=/config/neutron/ports/"
                                f"&revision={revision}&timeout={wait}")
    assert answer.status == 200, answer
    return answer.body


def test_majority_loss_suspends_writes_and_recovers() -> None:
    with running_cluster(3, prefix="kumonet-majority-etcd-") as etcd, \
            running_servers(etcd.url, 3, prefix="kumonet-majority-srv-") as servers:
        clients = [Client(url) for url in servers.urls]
        network_id, _ = make_network(clients[0], "10.65.0.0/24")
        before = clients[0].call("POST", "/v2.0/ports", {"port": {"network_id": network_id}})
        assert before.status == 201
        snapshot = clients[1].call("GET", "/v1/agent/snapshot?prefix=/config/neutron/ports/")
        assert snapshot.status == 200
        feed_revision = snapshot.body["revision"]

        leader = etcd.leader()
        stopped = [m.name for m in etcd.members if m.name != leader]
        for name in stopped:
            etcd.stop(name)
        answers = [asyncio.run(timed_create(url, network_id)) for url in servers.urls]
        for status, seconds, body in answers:
            print(f"\nmajority lost: write answered {status} in {seconds:.2f} s "
                  f"(issue: within 2 s): {body['NeutronError']['message'][:70]}...")
            assert status == 503, body
            assert body["NeutronError"]["type"] == "ServiceUnavailable"
        # Reads go on, flagged stale.
        read = clients[2].call("GET", f"/v2.0/ports?network_id={network_id}")
        assert read.status == 200, (read, servers.logs())
        assert read.headers.get("X-Kumonet-Stale") == "true"
        assert [p["id"] for p in read.body["ports"]] == [before.body["port"]["id"]]
        # An agent's long poll during the outage ends empty, not in an error;
        # its writes are 503s, never 500s.
        during = long_poll(clients[1], feed_revision + 1, 1)
        assert during["events"] == []
        register = clients[0].call("PUT", "/v1/agent/hosts/compute9", {
            "host": "compute9", "agent_types": ["Open vSwitch agent"],
            "tunnel_ip": "192.0.2.19", "tunnel_types": ["vxlan"]})
        assert register.status == 503, register
        port_status = clients[2].call(
            "PUT", f"/v1/agent/ports/{before.body['port']['id']}/status",
            {"status": "ACTIVE", "host": "compute9"})
        assert port_status.status == 503, port_status

        for name in stopped:
            etcd.start(name)
        etcd.wait_healthy([m.name for m in etcd.members])
        after = None
        for _ in range(50):
            after = clients[0].call("POST", "/v2.0/ports", {"port": {"network_id": network_id}})
            if after.status == 201:
                break
            assert after.status == 503, after
            time.sleep(0.1)
        assert after is not None and after.status == 201, after
        for client in clients:
            ports = client.call("GET", f"/v2.0/ports?network_id={network_id}")
            assert ports.status == 200 and "X-Kumonet-Stale" not in ports.headers
            ids = {p["id"] for p in ports.body["ports"]}
            assert {before.body["port"]["id"], after.body["port"]["id"]} <= ids
            check_no_duplicates(ports.body["ports"])
        # The feed resumed where it was: the poll from before the outage
        # gets the port created after it.
        events = long_poll(clients[1], feed_revision + 1, 10)["events"]
        assert after.body["port"]["id"] in {e["key"].rsplit("/", 1)[1] for e in events}
        assert_servers_alive(servers)


def assert_servers_alive(servers: Servers) -> None:
    for server in servers.members:
        assert server.running, server.log_text()[-2000:]
