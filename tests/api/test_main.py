"""The real ``kumonet-server`` process: openstacksdk and ``openstack`` CLI
walkthroughs of seeds 001/002, and a restart on the same SQLite file."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kumonet.api.main import build_parser

VENV_BIN = Path(sys.executable).parent
INI = Path(__file__).resolve().parents[2] / "etc" / "kumonet.ini"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, workdir: Path, store: str) -> None:
        self.workdir = workdir
        self.store = store
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "kumonet-server"), "--listen", f"127.0.0.1:{self.port}",
             "--store", self.store, "--config", str(INI)],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        # Readiness: bounded polling, not a timing assertion.
        for _ in range(300):
            assert self.proc.poll() is None, (self.workdir / "server.log").read_text()
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("kumonet-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(timeout=20) == 0
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
        self.proc = None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            return json.loads(resp.read())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path, "sqlite:///kumonet.db")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_parser_defaults() -> None:
    args = build_parser().parse_args([])
    assert args.listen == ("127.0.0.1", 9696)
    assert args.store == "sqlite:///kumonet.db" and args.auth == "noauth"
    assert build_parser().parse_args(["--listen", "0.0.0.0:1234"]).listen == ("0.0.0.0", 1234)


def test_openstacksdk_seed_walkthrough_and_restart(server: Server) -> None:
    import openstack

    conn = openstack.connection.Connection(
        auth_type="none", auth={"endpoint": server.url},
        network_endpoint_override=server.url + "/")
    try:
        # seed 002: external flat network and its subnet without DHCP
        ext = conn.network.create_network(
            name="ext-net", is_router_external=True, provider_network_type="flat",
            provider_physical_network="extnet")
        ext_sub = conn.network.create_subnet(
            network_id=ext.id, name="ext-subnet", cidr="203.0.113.0/24", ip_version=4,
            is_dhcp_enabled=False, gateway_ip="203.0.113.1",
            allocation_pools=[{"start": "203.0.113.101", "end": "203.0.113.200"}])
        assert ext_sub.allocation_pools == [{"start": "203.0.113.101",
                                             "end": "203.0.113.200"}]
        assert ext_sub.is_dhcp_enabled is False
        # seed 001/002: a project network, its subnet, ports
        demo = conn.network.create_network(name="demo-net")
        assert demo.mtu == 1450 and demo.provider_network_type == "vxlan"
        demo_sub = conn.network.create_subnet(
            network_id=demo.id, name="demo-subnet", cidr="192.168.1.0/24", ip_version=4,
            gateway_ip="192.168.1.1", dns_nameservers=["8.8.4.4"])
        port = conn.network.create_port(network_id=demo.id, name="vm01")
        assert port.fixed_ips == [{"subnet_id": demo_sub.id, "ip_address": "192.168.1.2"}]
        gw = conn.network.create_port(network_id=ext.id, device_owner="network:router_gateway")
        assert gw.fixed_ips[0]["ip_address"] == "203.0.113.101"
        assert {p.id for p in conn.network.ports()} == {port.id, gw.id}
        assert conn.network.get_port(port.id).mac_address == port.mac_address
        assert [n.name for n in conn.network.networks(name="demo-net")] == ["demo-net"]
        # pagination through the SDK follows the next links
        for i in range(5):
            conn.network.create_port(network_id=demo.id, name=f"p{i}")
        paged = list(conn.network.ports(network_id=demo.id, limit=2, paginated=True))
        assert len(paged) == 6
    finally:
        conn.close()

    before = {c: server.get(f"/v2.0/{c}") for c in ("networks", "subnets", "ports")}
    server.stop()
    server.start()
    after = {c: server.get(f"/v2.0/{c}") for c in ("networks", "subnets", "ports")}
    assert after == before
    # the restarted server continues allocating where it left off
    with urllib.request.urlopen(urllib.request.Request(
            server.url + "/v2.0/ports", method="POST",
            data=json.dumps({"port": {"network_id": demo.id}}).encode(),
            headers={"Content-Type": "application/json"}), timeout=10) as resp:
        assert json.loads(resp.read())["port"]["fixed_ips"][0]["ip_address"] == "192.168.1.8"


def _cli(server: Server, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    out = subprocess.run(
        [str(VENV_BIN / "openstack"), "--os-auth-type", "none", "--os-endpoint",
         server.url + "/", *args, "-f", "json"],
        capture_output=True, check=True, env=env, timeout=120)
    return json.loads(out.stdout)


def test_openstack_cli(server: Server) -> None:
    net = _cli(server, "network", "create", "net01")
    assert net["name"] == "net01" and net["mtu"] == 1450
    sub = _cli(server, "subnet", "create", "--network", "net01", "--subnet-range",
               "10.0.0.0/24", "--allocation-pool", "start=10.0.0.10,end=10.0.0.20",
               "--no-dhcp", "net01-subnet")
    assert sub["allocation_pools"] == [{"start": "10.0.0.10", "end": "10.0.0.20"}]
    assert sub["enable_dhcp"] is False
    port = _cli(server, "port", "create", "--network", "net01", "vm01-port")
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.0.0.10"}]
    assert [p["Name"] for p in _cli(server, "port", "list")] == ["vm01-port"]
    assert [n["Name"] for n in _cli(server, "network", "list")] == ["net01"]
    shown = _cli(server, "network", "show", "net01")
    assert shown["id"] == net["id"] and shown["subnets"] == [sub["id"]]


def _cli_ok(server: Server, *args: str) -> str:
    """A command without a table (set/unset/add/remove/delete): its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    out = subprocess.run(
        [str(VENV_BIN / "openstack"), "--os-auth-type", "none", "--os-endpoint",
         server.url + "/", *args], check=False, capture_output=True, text=True, env=env,
        timeout=120)
    assert out.returncode == 0, (args, out.stderr)
    return out.stdout


def test_openstack_cli_operator_commands(server: Server) -> None:
    """The operator commands run side by side with the real neutron; those
    kumonet answered differently are kept here."""
    _cli(server, "network", "create", "--external", "--provider-network-type", "flat",
         "--provider-physical-network", "extnet", "ext")
    _cli(server, "subnet", "create", "--network", "ext", "--subnet-range", "203.0.113.0/24",
         "--no-dhcp", "ext-sub")
    _cli(server, "network", "create", "net")
    sub = _cli(server, "subnet", "create", "--network", "net", "--subnet-range",
               "10.0.0.0/24", "sub")
    _cli_ok(server, "network", "set", "--description", "d", "--tag", "t", "net")
    _cli_ok(server, "network", "unset", "--tag", "t", "net")
    listed = _cli(server, "network", "list", "--long")
    assert {n["Name"]: n["Router Type"] for n in listed} == {"ext": True, "net": False}
    _cli(server, "port", "create", "--network", "net", "--fixed-ip",
         "subnet=sub,ip-address=10.0.0.10", "vm")
    _cli_ok(server, "router", "create", "r1")
    _cli_ok(server, "router", "add", "subnet", "r1", "sub")
    _cli_ok(server, "router", "set", "--external-gateway", "ext", "r1")
    # The admin's router show listed the stored interfaces and gw_port_id.
    shown = _cli(server, "router", "show", "r1")
    assert "gw_port_id" not in shown and "interfaces" not in shown
    assert shown["interfaces_info"][0]["subnet_id"] == sub["id"]
    router_ports = _cli(server, "port", "list", "--router", "r1")
    assert sorted(p["Fixed IP Addresses"][0]["ip_address"] for p in router_ports) == [
        "10.0.0.1", "203.0.113.2"]
    _cli_ok(server, "router", "add", "route", "--route",
            "destination=10.9.0.0/16,gateway=10.0.0.9", "r1")
    fip = _cli(server, "floating", "ip", "create", "ext")
    _cli_ok(server, "floating", "ip", "set", "--port", "vm", fip["id"])
    assert _cli(server, "floating", "ip", "list", "--long")[0]["Fixed IP Address"] == \
        "10.0.0.10"
    _cli(server, "security", "group", "create", "web")
    _cli(server, "security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22",
         "web")
    _cli_ok(server, "port", "set", "--security-group", "web", "vm")
    aliases = {e["Alias"] for e in _cli(server, "extension", "list", "--network")}
    assert {"router", "fip-port-details", "subnet-external-network"} <= aliases
    assert _cli(server, "network", "agent", "list") == []
    assert _cli(server, "subnet", "show", "ext-sub")["router:external"] is True


@pytest.mark.parametrize(("argv", "message"), [
    (["--store", "nope://x"], "unknown store URL scheme"),
    (["--config", "/nonexistent/kumonet.ini"], "No such file"),
    (["--auth", "keystone", "--store", "sqlite:///:memory:"], "keystone_authtoken"),
])
def test_startup_errors_are_one_clear_line(argv: list[str], message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from kumonet.api.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
