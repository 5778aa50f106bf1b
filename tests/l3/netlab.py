"""A small two-host L3 lab for the l3 tests and bench, without the rest of kumonet.

Each "host" is a network namespace running its own ovsdb-server and ovs-vswitchd
(userspace datapath) with a ``br-int`` in standalone mode (NORMAL switching). A
veth trunk joins the two br-ints; VLAN tags on the ports stand in for the L2
pipeline the agent would compile: 10 = the HA network, 20 = the project
network 192.168.1.0/24, 30 = the external network 203.0.113.0/24. VMs and the
upstream router ("ext", 203.0.113.1) are namespaces with a veth into a br-int.
Everything carries a unique prefix and is torn down, also after a failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kumonet.l3.intent import (
    FloatingIp,
    GatewayInterface,
    HaInterface,
    HaSettings,
    InternalInterface,
    RouterIntent,
)
from kumonet.l3.interface import OvsVethDriver, host_end_name
from kumonet.l3.namespace import LinkState
from kumonet.l3.plan import L3Settings, PlannedInterface, VrrpSettings

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
VLAN = {"ha": 10, "qr": 20, "qg": 30}
EXTERNAL_IP = "203.0.113.1"
GATEWAY_IP = "203.0.113.101"
FLOATING_IP = "203.0.113.105"
VM_IP = "192.168.1.5"
VM2_IP = "192.168.1.6"
ROUTER_IP = "192.168.1.1"


def sh(*args: str, check: bool = True, stdin: str | None = None, timeout: float = 30) -> str:
    result = subprocess.run(
        args, capture_output=True, text=True, input=stdin, check=False, timeout=timeout
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def netns_exec(ns: str, *args: str, check: bool = True, timeout: float = 30) -> str:
    return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)


@dataclass
class Host:
    name: str
    netns: str
    run_dir: Path

    @property
    def ovsdb(self) -> str:
        return f"unix:{self.run_dir}/db.sock"

    def vsctl(self, *args: str) -> str:
        return sh("ovs-vsctl", f"--db={self.ovsdb}", "--timeout=10", *args)

    def start(self) -> None:
        self.run_dir.mkdir(parents=True)
        sh("ip", "netns", "add", self.netns)
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        db = self.run_dir / "conf.db"
        sh("ovsdb-tool", "create", str(db), SCHEMA)
        d = self.run_dir
        netns_exec(
            self.netns, "ovsdb-server", str(db), f"--remote=punix:{d}/db.sock",
            f"--pidfile={d}/ovsdb-server.pid", f"--unixctl={d}/ovsdb-server.ctl",
            f"--log-file={d}/ovsdb-server.log", "--detach", "--no-chdir",
        )  # fmt: skip
        netns_exec(
            self.netns, "ovs-vswitchd", f"unix:{d}/db.sock",
            f"--pidfile={d}/ovs-vswitchd.pid", f"--unixctl={d}/ovs-vswitchd.ctl",
            f"--log-file={d}/ovs-vswitchd.log", "--detach", "--no-chdir",
        )  # fmt: skip
        self.vsctl("add-br", "br-int", "--", "set", "Bridge", "br-int", "datapath_type=netdev")

    def stop(self) -> None:
        for name in ("ovs-vswitchd.pid", "ovsdb-server.pid"):
            with contextlib.suppress(OSError, ValueError):
                pid = int((self.run_dir / name).read_text())
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.02)
        # Delete the namespace last.

    def settings(self, state_root: Path, prefix: str, advert_int: float) -> L3Settings:
        return L3Settings(
            state_path=state_root / self.name,
            namespace_prefix=f"{prefix}{self.name}-",
            vrrp=VrrpSettings(advert_int=advert_int),
        )

    def driver(self, ha_vlan: int = VLAN["ha"]) -> TaggingDriver:
        return TaggingDriver(
            OvsVethDriver(ovsdb=self.ovsdb, bridge="br-int", ovs_namespace=self.netns),
            self,
            {**VLAN, "ha": ha_vlan},
        )

    def set_vlan(self, port_id: str, vlan: int) -> None:
        self.vsctl("set", "Port", host_end_name(port_id), f"tag={vlan}")


@dataclass
class TaggingDriver:
    """The real driver, plus the VLAN tag the L2 pipeline would give each port at once
    (``vlans`` by interface kind)."""

    inner: OvsVethDriver
    host: Host
    vlans: dict[str, int]

    async def plug(
        self, namespace: str, interface: PlannedInterface, router_id: str, present: LinkState | None
    ) -> None:
        await self.inner.plug(namespace, interface, router_id, present)
        self.host.set_vlan(interface.port_id, self.vlans[interface.kind])

    async def unplug(self, port_id: str) -> None:
        await self.inner.unplug(port_id)

    async def router_ports(self) -> dict[str, list[str]]:
        return await self.inner.router_ports()


@dataclass
class NetLab:
    prefix: str
    root: Path
    hosts: dict[str, Host] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)

    @classmethod
    def create(cls) -> NetLab:
        prefix = f"kl3{secrets.token_hex(2)}"
        lab = cls(prefix=prefix, root=Path(f"/tmp/{prefix}"))
        try:
            lab._build()
        except BaseException:
            lab.destroy()
            raise
        return lab

    def ns(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _build(self) -> None:
        for name in ("h1", "h2"):
            host = Host(name, self.ns(name), self.root / name)
            self.hosts[name] = host
            self.namespaces.append(host.netns)
            host.start()
        h1, h2 = self.hosts["h1"], self.hosts["h2"]
        # The trunk between the two br-ints, carrying every VLAN.
        t1, t2 = f"{self.prefix}t1", f"{self.prefix}t2"
        sh("ip", "-n", h1.netns, "link", "add", t1, "type", "veth", "peer", "name", t2,
           "netns", h2.netns)  # fmt: skip
        for host, end in ((h1, t1), (h2, t2)):
            netns_exec(host.netns, "ethtool", "-K", end, "tx", "off")
            sh("ip", "-n", host.netns, "link", "set", end, "up")
            host.vsctl("add-port", "br-int", end)
        self.add_endpoint("vm", h1, VM_IP + "/24", ROUTER_IP, VLAN["qr"])
        self.add_endpoint("vm2", h1, VM2_IP + "/24", ROUTER_IP, VLAN["qr"])
        self.add_endpoint("ext", h2, EXTERNAL_IP + "/24", None, VLAN["qg"])

    def add_endpoint(
        self, name: str, host: Host, cidr: str, gateway: str | None, vlan: int
    ) -> None:
        ns = self.ns(name)
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        end = f"{self.prefix}{name}"
        sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", end,
           "netns", host.netns)  # fmt: skip
        netns_exec(ns, "ethtool", "-K", "eth0", "tx", "off")
        netns_exec(host.netns, "ethtool", "-K", end, "tx", "off")
        netns_exec(ns, "sysctl", "-q", "-w", "net.ipv4.neigh.eth0.retrans_time_ms=100")
        sh("ip", "-n", ns, "addr", "add", cidr, "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        if gateway is not None:
            sh("ip", "-n", ns, "route", "add", "default", "via", gateway)
        sh("ip", "-n", host.netns, "link", "set", end, "up")
        host.vsctl("add-port", "br-int", end, f"tag={vlan}")

    def destroy(self) -> None:
        for host in self.hosts.values():
            host.stop()
        # Router namespaces the tests left behind (after a failure) and ours.
        for ns in sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []:
            if ns.startswith(self.prefix) and ns not in self.namespaces:
                _kill_keepalived_in(ns)
                sh("ip", "netns", "delete", ns, check=False)
        for ns in self.namespaces:
            sh("ip", "netns", "delete", ns, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _kill_keepalived_in(ns: str) -> None:
    pids = sh("ip", "netns", "pids", ns, check=False).split()
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@dataclass(frozen=True)
class RouterPorts:
    router_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    qr: str = field(default_factory=lambda: str(uuid.uuid4()))
    qg: str = field(default_factory=lambda: str(uuid.uuid4()))
    ha1: str = field(default_factory=lambda: str(uuid.uuid4()))
    ha2: str = field(default_factory=lambda: str(uuid.uuid4()))


def router_intent(
    ports: RouterPorts, *, ha_ip: str | None, ha_port: str = "", fips: bool = True
) -> RouterIntent:
    """The test router: one project subnet, a gateway with SNAT, one floating IP."""
    return RouterIntent(
        id=ports.router_id,
        project_id="p1",
        internal=(InternalInterface(ports.qr, "fa:16:3e:10:00:01", (ROUTER_IP + "/24",)),),
        gateway=GatewayInterface(
            ports.qg, "fa:16:3e:10:00:02", (GATEWAY_IP + "/24",), (EXTERNAL_IP,)
        ),
        floating_ips=(FloatingIp(FLOATING_IP, VM_IP),) if fips else (),
        ha=(
            HaSettings(
                vrrp_id=1,
                interface=HaInterface(
                    ha_port, f"fa:16:3e:20:00:{ha_ip.rsplit('.', 1)[1]:0>2}", ha_ip + "/18"
                ),
            )
            if ha_ip is not None
            else None
        ),
    )
