"""A whole cloud for end-to-end tests and benchmarks: one kumonet-server on a
temporary SQLite store and a lab of hosts (namespaces, each with its own Open
vSwitch and a real kumonet-agent) following it.

Tests get it through the session-scoped ``cloud`` fixture (``tests/conftest.py``)
and a function-scoped ``tenant``: a project of their own (so its ``default``
security group is theirs alone) whose networks, ports, groups and VMs are
removed after the test, whatever happened::

    async def test_x(cloud: Cloud, tenant: Tenant) -> None:
        net = await tenant.network("10.61.0.0/24")
        a = await tenant.boot("host1", net)             # port through the API, then plugged
        lease = await cloud.lab.vm_dhcp(a.name)
        assert await cloud.lab.ping(a.name, "10.61.0.3")

Agents report every ``REPORT_INTERVAL`` second (Neutron's ``[agent]
report_interval``; ``Lab.up`` cannot pass it, so the agent command given to
the lab sets it in the file the lab wrote before the agent reads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from kumonet.lab import agent as lab_agent
from kumonet.lab.command import in_netns
from kumonet.lab.lab import Lab
from kumonet.lab.process import owned_pid, start_detached, stop_pids
from kumonet.lab.state import VmRecord
from tests.environment import missing

REPORT_INTERVAL = 1
SERVER_CONFIG = """\
[DEFAULT]
global_physnet_mtu = 1500
[ml2]
type_drivers = flat,vlan,vxlan,gre
tenant_network_types = vxlan
[ml2_type_vxlan]
vni_ranges = 1:4000
"""
#: The L3 cloud's: routers on 2 of its 3 L3 hosts, so a third can replace a
#: host that stays dead.
L3_SERVER_CONFIG = SERVER_CONFIG.replace(
    "[DEFAULT]\n", "[DEFAULT]\nmax_l3_agents_per_router = 2\nmin_l3_agents_per_router = 2\n"
)

# Run as ``python -c AGENT_WRAPPER INTERVAL --config FILE``: sets [agent]
# report_interval in the file the lab wrote, then runs the real agent.
AGENT_WRAPPER = """
import configparser, sys
path = sys.argv[sys.argv.index("--config") + 1]
parser = configparser.ConfigParser(interpolation=None)
parser.read(path)
parser.setdefault("agent", {})
parser["agent"]["report_interval"] = sys.argv[1]
with open(path, "w") as handle:
    parser.write(handle)
from kumonet.agent.main import main
sys.exit(main(sys.argv[2:]))
"""


class ApiError(AssertionError):
    def __init__(self, method: str, path: str, status: int, text: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {text[:400]}")
        self.status = status


def unique_name(kind: str) -> str:
    return f"{kind}{secrets.token_hex(3)}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(
    check: Callable[[], Awaitable[bool]],
    what: str,
    *,
    time_limit: float = 15.0,
    interval: float = 0.1,
) -> None:
    """Poll ``check`` until it holds; fail naming ``what``. The limit is a
    safety net for a broken build, never a measurement."""
    deadline = time.monotonic() + time_limit
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {time_limit:g} s")
        await asyncio.sleep(interval)


EXTERNAL_CIDR = "203.0.113.0/24"
EXTERNAL_GATEWAY = "203.0.113.1"


@dataclass(frozen=True)
class ExternalNetwork:
    id: str
    subnet_id: str


@dataclass
class Cloud:
    url: str
    lab: Lab
    workdir: Path
    report_interval: int = REPORT_INTERVAL
    _external: ExternalNetwork | None = None

    # -- the API ---------------------------------------------------------------
    async def api(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        project: str | None = None,
    ) -> Any:
        """One Neutron call; admin unless ``project`` (noauth's project header)."""
        headers = {"X-Project-Id": project} if project else {}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method, f"{self.url}/v2.0{path}", json=body, headers=headers
            ) as response,
        ):
            text = await response.text()
            if response.status >= 400:
                raise ApiError(method, path, response.status, text)
            return None if response.status == 204 else await response.json(content_type=None)

    async def port(self, port_id: str) -> dict[str, Any]:
        return dict((await self.api("GET", f"/ports/{port_id}"))["port"])

    async def agents(self) -> list[dict[str, Any]]:
        return list((await self.api("GET", "/agents"))["agents"])

    async def alive_agents(self) -> set[tuple[str, str]]:
        return {(a["host"], a["agent_type"]) for a in await self.agents() if a["alive"]}

    # -- hosts and agents ------------------------------------------------------
    @property
    def hosts(self) -> list[str]:
        return list(self.lab.hosts)

    def agent_pid(self, host: str) -> int | None:
        return owned_pid(Path(self.lab.host(host).dir) / "agent.pid", f"{self.lab.layout.run_dir}/")

    async def stop_agent(self, host: str, *, kill: bool = False) -> None:
        pid = self.agent_pid(host)
        assert pid is not None, f"no agent runs on {host}"
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await stop_pids([pid])

    async def start_agent(self, host: str) -> int:
        record = self.lab.host(host)
        host_dir = Path(record.dir)
        argv = lab_agent.agent_argv(host_dir / "agent.ini", agent_command(self.report_interval))
        return await start_detached(
            lab_agent.in_host_netns(record.netns, argv),
            pidfile=host_dir / "agent.pid",
            logfile=host_dir / "agent.log",
            env=self.lab.ovs(host).env,
        )

    @property
    def l3_hosts(self) -> list[str]:
        return [name for name, record in self.lab.hosts.items() if record.l3]

    async def wait_agents(self, hosts: list[str] | None = None) -> None:
        l3 = set(self.l3_hosts)
        wanted = {
            (h, t)
            for h in hosts or self.hosts
            for t in (*lab_agent_types(), *(("L3 agent",) if h in l3 else ()))
        }

        async def alive() -> bool:
            return wanted <= await self.alive_agents()

        await eventually(alive, "agents alive", time_limit=30)

    # -- VMs -------------------------------------------------------------------
    async def set_address(
        self, vm: str, address: str, prefixlen: int = 24, *, replace: bool = True
    ) -> None:
        """Address eth0 by hand (``replace`` drops what it had)."""
        if replace:
            await self.lab.vm_exec(vm, ["ip", "-4", "addr", "flush", "dev", "eth0"])
        await self.lab.vm_exec(vm, ["ip", "addr", "add", f"{address}/{prefixlen}", "dev", "eth0"])

    async def pin_neighbour(self, vm: str, address: str, mac: str) -> None:
        """A static ARP entry, so what the VM sends needs no ARP of its own."""
        await self.lab.vm_exec(
            vm,
            ["ip", "neigh", "replace", address, "lladdr", mac, "dev", "eth0", "nud", "permanent"],
        )

    # -- routers (L3 hosts) ---------------------------------------------------
    async def external_network(self) -> ExternalNetwork:
        """Seed 002's ext-net (flat on physnet ``external``, router:external) and
        ext-subnet 203.0.113.0/24, pool .101-.200, no DHCP, gateway .1; made
        once per cloud by the admin."""
        if self._external is None:
            net = (
                await self.api(
                    "POST",
                    "/networks",
                    {
                        "network": {
                            "name": "ext-net",
                            "router:external": True,
                            "provider:network_type": "flat",
                            "provider:physical_network": "external",
                        }
                    },
                )
            )["network"]
            subnet = (
                await self.api(
                    "POST",
                    "/subnets",
                    {
                        "subnet": {
                            "name": "ext-subnet",
                            "network_id": net["id"],
                            "cidr": EXTERNAL_CIDR,
                            "ip_version": 4,
                            "enable_dhcp": False,
                            "gateway_ip": EXTERNAL_GATEWAY,
                            "allocation_pools": [
                                {"start": "203.0.113.101", "end": "203.0.113.200"}
                            ],
                        }
                    },
                )
            )["subnet"]
            self._external = ExternalNetwork(net["id"], subnet["id"])
        return self._external

    async def l3_agents_of(self, router_id: str) -> dict[str, str]:
        """host → ha_state (None for non-HA) from ``GET /routers/{id}/l3-agents``."""
        agents = (await self.api("GET", f"/routers/{router_id}/l3-agents"))["agents"]
        return {a["host"]: a.get("ha_state") for a in agents}

    async def active_host(self, router_id: str) -> str | None:
        active = [h for h, s in (await self.l3_agents_of(router_id)).items() if s == "active"]
        return active[0] if len(active) == 1 else None

    # -- flows -----------------------------------------------------------------
    async def flows(self, host: str) -> list[str]:
        return await self.lab.dump_flows(host)

    async def tunnel_ports(self, host: str) -> set[str]:
        out = await self.lab.ovs(host).vsctl("list-ports", "br-int")
        return {name for name in out.split() if name.startswith(("vxlan-", "gre-"))}


def fixed_ip(vm: VmRecord) -> str:
    """The VM's (first) address as its Neutron port has it."""
    return vm.extra["fixed_ips"].split(",")[0]


def cloud_unavailable() -> str | None:
    """Why the cloud cannot run here, or None."""
    return missing(tools=("ovs-vswitchd", "ovsdb-server", "ip", "ethtool", "dhclient"))


def lab_agent_types() -> tuple[str, ...]:
    return ("Open vSwitch agent", "DHCP agent")


def agent_command(report_interval: int) -> list[str]:
    return [sys.executable, "-c", AGENT_WRAPPER, str(report_interval)]


@contextlib.contextmanager
def running_server(workdir: Path, config: str = SERVER_CONFIG) -> Iterator[str]:
    """kumonet-server on a free loopback port and a SQLite store in ``workdir``."""
    (workdir / "kumonet.ini").write_text(config)
    url = f"http://127.0.0.1:{free_port()}"
    server = shutil.which("kumonet-server") or str(Path(sys.executable).with_name("kumonet-server"))
    with (workdir / "server.log").open("w") as log:
        proc = subprocess.Popen(
            [
                server,
                "--listen",
                url.removeprefix("http://"),
                "--store",
                f"sqlite:///{workdir / 'kumonet.db'}",
                "--config",
                str(workdir / "kumonet.ini"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/v2.0/networks", timeout=2):
                        break
                except (urllib.error.URLError, ConnectionError):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        tail = (workdir / "server.log").read_text()[-2000:]
                        raise RuntimeError(f"kumonet-server did not start:\n{tail}") from None
                    time.sleep(0.05)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def running_cloud(
    prefix: str,
    hosts: int = 3,
    *,
    l3_hosts: int = 0,
    keep_logs: Path | None = None,
    server_config: str = SERVER_CONFIG,
) -> Iterator[Cloud]:
    """Server + lab of ``hosts`` with agents, all torn down on exit (logs copied
    to ``keep_logs`` first when given). ``host1..host<l3_hosts>`` are L3 hosts
    (routers, br-ex on the lab's external network 203.0.113.0/24)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"kumonet-{prefix}-"))
    try:
        with running_server(workdir, server_config) as url:
            lab = asyncio.run(
                Lab.up(
                    hosts,
                    prefix=prefix,
                    server_urls=[url],
                    l3_hosts=l3_hosts,
                    agents=True,
                    agent_command=agent_command(REPORT_INTERVAL),
                )
            )
            try:
                cloud = Cloud(url, lab, workdir)
                asyncio.run(cloud.wait_agents())
                yield cloud
            finally:
                asyncio.run(Lab.teardown(prefix, keep_logs=keep_logs))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Network:
    id: str
    name: str
    subnet_id: str
    cidr: str
    gateway: str
    segmentation_id: int
    mtu: int

    @property
    def tun_id(self) -> str:
        return hex(self.segmentation_id)


@dataclass
class Tenant:
    """One test's project on the shared cloud; everything it made goes in ``close``."""

    cloud: Cloud
    project: str = field(default_factory=lambda: secrets.token_hex(16))
    vms: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    routers: list[str] = field(default_factory=list)
    floatingips: list[str] = field(default_factory=list)

    async def network(self, cidr: str, *, dns: tuple[str, ...] = (), **attrs: Any) -> Network:
        name = unique_name("net")
        net = (
            await self.cloud.api(
                "POST", "/networks", {"network": {"name": name, "tenant_id": self.project, **attrs}}
            )
        )["network"]
        self.networks.append(net["id"])
        subnet = (
            await self.cloud.api(
                "POST",
                "/subnets",
                {
                    "subnet": {
                        "network_id": net["id"],
                        "cidr": cidr,
                        "ip_version": 4,
                        "tenant_id": self.project,
                        "dns_nameservers": list(dns),
                    }
                },
            )
        )["subnet"]
        return Network(
            net["id"],
            name,
            subnet["id"],
            cidr,
            subnet["gateway_ip"],
            int(net["provider:segmentation_id"]),
            int(net["mtu"]),
        )

    async def create_port(self, net: Network, **attrs: Any) -> dict[str, Any]:
        port = (
            await self.cloud.api(
                "POST",
                "/ports",
                {
                    "port": {
                        "network_id": net.id,
                        "tenant_id": self.project,
                        "name": unique_name("p"),
                        **attrs,
                    }
                },
            )
        )["port"]
        self.ports.append(port["id"])
        return dict(port)

    async def update_port(self, port_id: str, **attrs: Any) -> dict[str, Any]:
        return dict((await self.cloud.api("PUT", f"/ports/{port_id}", {"port": attrs}))["port"])

    async def boot(
        self, host: str, net: Network, *, static: bool = False, **port_attrs: Any
    ) -> VmRecord:
        """A VM on ``host`` with a new port (``port_attrs`` as in the API); as
        ``nova boot --nic port-id=``: the port is bound to the host, then plugged.
        ``static``: eth0 gets the port's address and the network's MTU by hand
        (faster than DHCP, for tests about something else)."""
        port = await self.create_port(net, **port_attrs)
        vm = await self.plug(host, port["id"], mtu=net.mtu if static else None)
        if static:
            prefixlen = int(net.cidr.split("/")[1])
            await self.cloud.set_address(vm.name, fixed_ip(vm), prefixlen)
        return vm

    async def plug(self, host: str, port_id: str, *, mtu: int | None = None) -> VmRecord:
        name = unique_name("v")
        self.vms.append(name)
        return await self.cloud.lab.add_vm(name, host, port=port_id, mtu=mtu)

    async def unplug(self, vm: str, *, delete_port: bool = True) -> None:
        """Delete the VM; its port too unless ``delete_port`` is false (then it
        stays, unbound, as Nova leaves a port it was given)."""
        port_id = self.cloud.lab.vm(vm).port_id
        await self.cloud.lab.del_vm(vm)
        self.vms.remove(vm)
        if delete_port:
            await self.cloud.api("DELETE", f"/ports/{port_id}")
            self.ports.remove(port_id)

    async def group(self, **attrs: Any) -> dict[str, Any]:
        group = (
            await self.cloud.api(
                "POST",
                "/security-groups",
                {"security_group": {"name": unique_name("sg"), "tenant_id": self.project, **attrs}},
            )
        )["security_group"]
        self.groups.append(group["id"])
        return dict(group)

    async def default_group(self) -> dict[str, Any]:
        groups = (
            await self.cloud.api("GET", f"/security-groups?name=default&tenant_id={self.project}")
        )["security_groups"]
        if not groups:  # Neutron creates it on the project's first request
            await self.cloud.api("GET", "/security-groups", project=self.project)
            groups = (
                await self.cloud.api(
                    "GET", f"/security-groups?name=default&tenant_id={self.project}"
                )
            )["security_groups"]
        return dict(groups[0])

    async def rule(self, group_id: str, **attrs: Any) -> dict[str, Any]:
        body = {
            "security_group_id": group_id,
            "direction": "ingress",
            "ethertype": "IPv4",
            "tenant_id": self.project,
            **attrs,
        }
        return dict(
            (await self.cloud.api("POST", "/security-group-rules", {"security_group_rule": body}))[
                "security_group_rule"
            ]
        )

    async def delete_rule(self, rule_id: str) -> None:
        await self.cloud.api("DELETE", f"/security-group-rules/{rule_id}")

    # -- routers ----------------------------------------------------------------
    async def router(self, *, ha: bool = True, **attrs: Any) -> dict[str, Any]:
        router = (
            await self.cloud.api(
                "POST",
                "/routers",
                {
                    "router": {
                        "name": unique_name("r"),
                        "tenant_id": self.project,
                        "ha": ha,
                        **attrs,
                    }
                },
            )
        )["router"]
        self.routers.append(router["id"])
        return dict(router)

    async def add_interface(self, router_id: str, net: Network) -> dict[str, Any]:
        return dict(
            await self.cloud.api(
                "PUT", f"/routers/{router_id}/add_router_interface", {"subnet_id": net.subnet_id}
            )
        )

    async def remove_interface(self, router_id: str, net: Network) -> None:
        await self.cloud.api(
            "PUT", f"/routers/{router_id}/remove_router_interface", {"subnet_id": net.subnet_id}
        )

    async def set_gateway(self, router_id: str, **info: Any) -> dict[str, Any]:
        external = await self.cloud.external_network()
        body = {"router": {"external_gateway_info": {"network_id": external.id, **info}}}
        return dict((await self.cloud.api("PUT", f"/routers/{router_id}", body))["router"])

    async def clear_gateway(self, router_id: str) -> None:
        body = {"router": {"external_gateway_info": {}}}
        await self.cloud.api("PUT", f"/routers/{router_id}", body)

    async def update_router(self, router_id: str, **attrs: Any) -> dict[str, Any]:
        body = {"router": attrs}
        return dict((await self.cloud.api("PUT", f"/routers/{router_id}", body))["router"])

    async def floating_ip(self, port_id: str | None = None) -> dict[str, Any]:
        external = await self.cloud.external_network()
        body: dict[str, Any] = {
            "floating_network_id": external.id,
            "tenant_id": self.project,
        }
        if port_id:
            body["port_id"] = port_id
        fip = (await self.cloud.api("POST", "/floatingips", {"floatingip": body}))["floatingip"]
        self.floatingips.append(fip["id"])
        return dict(fip)

    async def associate(self, fip_id: str, port_id: str | None) -> dict[str, Any]:
        body = {"floatingip": {"port_id": port_id}}
        return dict((await self.cloud.api("PUT", f"/floatingips/{fip_id}", body))["floatingip"])

    async def delete_router(self, router_id: str) -> None:
        """Interfaces and gateway first, as the CLI user must."""
        ports = (await self.cloud.api("GET", f"/ports?device_id={router_id}"))["ports"]
        for port in ports:
            if port["device_owner"] in (
                "network:router_interface",
                "network:ha_router_replicated_interface",
            ):
                await self.cloud.api(
                    "PUT", f"/routers/{router_id}/remove_router_interface", {"port_id": port["id"]}
                )
        await self.clear_gateway(router_id)
        await self.cloud.api("DELETE", f"/routers/{router_id}")
        self.routers.remove(router_id)

    async def close(self) -> None:
        lab = self.cloud.lab
        existing = lab.vms()
        for name in self.vms:
            if name in existing:
                with contextlib.suppress(Exception):
                    await lab.del_vm(name)
        for fip_id in self.floatingips:
            with contextlib.suppress(ApiError):
                await self.cloud.api("DELETE", f"/floatingips/{fip_id}")
        for router_id in list(self.routers):
            with contextlib.suppress(ApiError):
                await self.delete_router(router_id)
        for kind, ids in (
            ("ports", self.ports),
            ("security-groups", self.groups),
            ("networks", self.networks),
        ):
            for item in reversed(ids):
                with contextlib.suppress(ApiError):
                    await self.cloud.api("DELETE", f"/{kind}/{item}")
        with contextlib.suppress(ApiError):
            default = await self.default_group()
            await self.cloud.api("DELETE", f"/security-groups/{default['id']}")


# -- probes beyond the lab's ping and TCP exchange ------------------------------

_UDP_SINK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, (addr, port) = s.recvfrom(2048)
    print(addr, port, data.decode(errors="replace"), flush=True)
    if sys.argv[2] == "echo":
        s.sendto(data, (addr, port))
"""

# Sends TOKEN COUNT times from SRC:SPORT and prints a reply if one comes.
# IP_TRANSPARENT (19) lets the socket send from any source address, as a VM
# forging its source would.
_UDP_SEND = """
import socket, sys
src, sport, dst, dport, token, count = sys.argv[1:7]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_IP, 19, 1)
s.bind((src, int(sport)))
s.settimeout(0.2)
for _ in range(int(count)):
    s.sendto(token.encode(), (dst, int(dport)))
    try:
        data, _ = s.recvfrom(2048)
    except OSError:
        continue
    print("reply", data.decode(), flush=True)
    break
"""


class UdpSink:
    """A UDP listener in a VM that records (source address, source port, token)."""

    def __init__(self, netns: str, port: int, *, echo: bool = False) -> None:
        self.netns, self.port, self.echo = netns, port, echo
        self.received: list[tuple[str, int, str]] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> UdpSink:
        self._proc = await asyncio.create_subprocess_exec(
            *in_netns(
                self.netns,
                [sys.executable, "-c", _UDP_SINK, str(self.port), "echo" if self.echo else "quiet"],
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 10)
        assert line.strip() == b"ready", line
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            addr, port, token = raw.decode().split(maxsplit=2)
            self.received.append((addr, int(port), token.strip()))

    def got(self, token: str) -> list[str]:
        """Source addresses the token arrived from."""
        return [addr for addr, _, seen in self.received if seen == token]

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


async def send_udp(
    netns: str,
    dst: str,
    dport: int,
    *,
    src: str = "0.0.0.0",
    sport: int = 0,
    token: str | None = None,
    count: int = 5,
) -> tuple[str, bool]:
    """Send a fresh token from a VM; (token, whether a reply came back). The
    sender tries ``count`` times, 0.2 s apart (the first packet to a new
    tunnel endpoint can be lost)."""
    token = token or unique_name("t")
    proc = await asyncio.create_subprocess_exec(
        *in_netns(
            netns,
            [sys.executable, "-c", _UDP_SEND, src, str(sport), dst, str(dport), token, str(count)],
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return token, out.decode().startswith("reply")


_ECHO_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
while True:
    d = c.recv(4096)
    if not d:
        break
    c.sendall(d)
"""

_ECHO_CLIENT = """
import socket, sys, time
deadline = time.monotonic() + 10
while True:
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1); break
    except OSError:
        if time.monotonic() > deadline: raise
        time.sleep(0.2)
print("connected", flush=True)
c.settimeout(float(sys.argv[3]))
for line in sys.stdin:
    try:
        c.sendall(line.encode())
        got = c.recv(4096).decode().strip()
        print("echo " + got, flush=True)
    except OSError as error:
        print("lost " + type(error).__name__, flush=True)
"""


class TcpSession:
    """One long-lived TCP connection from a client VM to an echo server in
    another: ``exchange`` sends a line and tells whether it came back."""

    def __init__(self, client_netns: str, server_netns: str, address: str, port: int) -> None:
        self.client_netns, self.server_netns = client_netns, server_netns
        self.address, self.port = address, port
        self._procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> TcpSession:
        server = await asyncio.create_subprocess_exec(
            *in_netns(self.server_netns, [sys.executable, "-c", _ECHO_SERVER, str(self.port)]),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._procs.append(server)
        assert server.stdout is not None
        assert (await asyncio.wait_for(server.stdout.readline(), 10)).strip() == b"ready"
        self._client = await asyncio.create_subprocess_exec(
            *in_netns(
                self.client_netns,
                [sys.executable, "-c", _ECHO_CLIENT, self.address, str(self.port), "2"],
            ),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        self._procs.append(self._client)
        assert self._client.stdout is not None
        line = await asyncio.wait_for(self._client.stdout.readline(), 15)
        assert line.strip() == b"connected", f"no connection to {self.address}:{self.port}"
        return self

    async def exchange(self, token: str | None = None) -> bool:
        token = token or unique_name("e")
        assert self._client.stdin is not None and self._client.stdout is not None
        self._client.stdin.write(f"{token}\n".encode())
        await self._client.stdin.drain()
        line = (await asyncio.wait_for(self._client.stdout.readline(), 10)).decode().strip()
        return line == f"echo {token}"

    async def __aexit__(self, *exc: object) -> None:
        for proc in self._procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
