"""The DHCP replies interoperate with the real ISC dhclient.

Two network namespaces joined by a veth pair: dhclient runs in one, and in the
other a tiny responder (a raw AF_PACKET socket calling `build_dhcp_reply`)
plays the agent's part.  dhclient's own script records what it was given.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.environment import needs

RESPONDER = textwrap.dedent(
    """
    import socket, sys
    from kumonet.dataplane.dhcp import ACK, build_dhcp_reply, parse_dhcp_request
    from kumonet.dataplane.intent import FixedIp, HostRoute, Port, Subnet

    port = Port("p", "n", sys.argv[2], fixed_ips=(FixedIp("s", "10.9.0.11"),))
    subnet = Subnet("s", "n", "10.9.0.0/24", gateway_ip="10.9.0.1",
                    dns_nameservers=("10.9.0.53",),
                    host_routes=(HostRoute("172.16.0.0/12", "10.9.0.254"),))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind((sys.argv[1], 0))
    sock.settimeout(20)
    while True:
        frame = sock.recv(65535)
        reply = build_dhcp_reply(frame, port, subnet, mtu=1400)
        if reply:
            sock.send(reply)
            print("replied", parse_dhcp_request(frame).message_type, flush=True)
            if parse_dhcp_request(frame).message_type == 3:
                break
    """
)

SCRIPT = """#!/bin/sh
# Records what dhclient was given; configures nothing.
echo "reason=$reason ip=$new_ip_address mask=$new_subnet_mask routers=$new_routers \
dns=$new_domain_name_servers domain=$new_domain_name mtu=$new_interface_mtu \
lease=$new_dhcp_lease_time server=$new_dhcp_server_identifier \
routes121=$(echo $new_rfc3442_classless_static_routes | tr ' ' .)" >> "$(dirname "$0")/events"
exit 0
"""

CONFIG = """
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers,
        host-name, interface-mtu, rfc3442-classless-static-routes;
timeout 15;
"""

MAC = "fa:16:3e:09:00:0b"


def run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr}")


@pytest.fixture
def namespaces(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    needs(tools=("dhclient",))
    name = f"kdh{secrets.token_hex(3)}"
    client, server = f"{name}c", f"{name}s"
    work = tmp_path / "dhclient"
    work.mkdir()
    try:
        run("ip", "netns", "add", client)
        run("ip", "netns", "add", server)
        run("ip", "link", "add", f"{name}a", "netns", client, "type", "veth",
            "peer", "name", f"{name}b", "netns", server)  # fmt: skip
        run("ip", "-n", client, "link", "set", f"{name}a", "name", "eth0")
        run("ip", "-n", client, "link", "set", "eth0", "address", MAC, "up")
        run("ip", "-n", server, "link", "set", f"{name}b", "up")
        yield client, server, work
    finally:
        pid_file = work / "dhclient.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        for namespace in (client, server):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


@pytest.mark.slow
def test_dhclient_binds_with_every_option(namespaces: tuple[str, str, Path]) -> None:
    client, server, work = namespaces
    script = work / "script"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    (work / "dhclient.conf").write_text(CONFIG)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    responder = subprocess.Popen(
        ["ip", "netns", "exec", server, sys.executable, "-c", RESPONDER, f"{server[:-1]}b", MAC],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        dhclient = subprocess.run(
            ["ip", "netns", "exec", client, "dhclient", "-1", "-v", "-sf", str(script),
             "-cf", str(work / "dhclient.conf"), "-pf", str(work / "dhclient.pid"),
             "-lf", str(work / "dhclient.leases"), "eth0"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        out, err = responder.communicate(timeout=20)
    finally:
        if responder.poll() is None:
            responder.kill()
            responder.wait()
    assert dhclient.returncode == 0, dhclient.stderr + err
    assert "DHCPOFFER of 10.9.0.11 from 10.9.0.1" in dhclient.stderr
    assert "DHCPACK of 10.9.0.11 from 10.9.0.1" in dhclient.stderr
    assert out.split() == ["replied", "1", "replied", "3"]
    bound = [line for line in (work / "events").read_text().splitlines() if "reason=BOUND" in line]
    assert len(bound) == 1
    fields = dict(item.split("=", 1) for item in bound[0].split(" ") if "=" in item)
    assert fields["ip"] == "10.9.0.11" and fields["mask"] == "255.255.255.0"
    assert fields["routers"] == "10.9.0.1" and fields["dns"] == "10.9.0.53"
    assert fields["domain"] == "openstacklocal" and fields["mtu"] == "1400"
    assert fields["lease"] == "86400" and fields["server"] == "10.9.0.1"
    # 172.16.0.0/12 via 10.9.0.254, then the default route via the gateway.
    assert fields["routes121"] == "12.172.16.10.9.0.254.0.10.9.0.1"
