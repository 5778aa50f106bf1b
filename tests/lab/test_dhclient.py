"""The real ISC dhclient in a lab VM: a lease configures only the VM, no
lease times out cleanly, and no dhclient is left behind."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from kumonet.lab.command import in_netns
from kumonet.lab.errors import LabError
from kumonet.lab.process import find_by_marker
from tests.lab.conftest import LabFactory, VmFactory

pytestmark = pytest.mark.lab

SERVER = Path(__file__).with_name("tiny_dhcp_server.py")
PORT_1 = "d4c00001-0000-4000-8000-000000000000"
PORT_2 = "d4c00002-0000-4000-8000-000000000000"
PORT_3 = "d4c00003-0000-4000-8000-000000000000"


HOST_RESOLV = Path("/etc/resolv.conf")


def read_bytes(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


def dhclients(marker: str) -> list[int]:
    return [pid for pid in find_by_marker(marker)
            if "dhclient" in Path(f"/proc/{pid}/comm").read_text()]


async def test_dhcp_without_a_server_times_out_and_leaves_nothing(vms: VmFactory) -> None:
    lab_ = vms.lab
    await vms.add("nodhcp", "host1", port_id=PORT_1, mac="fa:16:3e:00:d4:01")
    # br-int is fail_mode=secure without flows here: nothing answers
    with pytest.raises(LabError, match="no lease"):
        await lab_.vm_dhcp("nodhcp", time_limit=2)
    marker = f"{lab_.layout.vm_dir('nodhcp')}/"
    assert dhclients(marker) == []
    assert (await lab_.vm_addresses("nodhcp")) == []
    assert not (lab_.layout.vm_dir("nodhcp") / "lease.json").exists()


async def test_dhcp_lease_configures_the_vm_only(lab_factory: LabFactory) -> None:
    lab = await lab_factory.up(1)
    await lab.ovs("host1").ofctl("add-flow", "br-int", "priority=0,actions=NORMAL")
    await lab.add_vm("srv", "host1", port_id=PORT_2, mac="fa:16:3e:00:d4:02")
    await lab.add_vm("cli", "host1", port_id=PORT_3, mac="fa:16:3e:00:d4:03")
    await lab.vm_exec("srv", ["ip", "addr", "add", "10.0.0.1/24", "dev", "eth0"])
    host_resolv = read_bytes(HOST_RESOLV)
    server = await asyncio.create_subprocess_exec(
        *in_netns(lab.vm("srv").netns,
                  [sys.executable, str(SERVER), "eth0", "10.0.0.50", "10.0.0.1"]),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        assert (await asyncio.wait_for(server.stdout.readline(), 10)).strip() == b"ready"
        lease = await lab.vm_dhcp("cli", time_limit=10)
    finally:
        if server.returncode is None:
            server.kill()
        await server.wait()

    assert (lease.address, lease.prefixlen, lease.mtu) == ("10.0.0.50", 24, 1400)
    assert lease.gateway == "10.0.0.1" and lease.dns == ("10.0.0.53",)
    assert lease.domain == "lab.test"
    assert set(lease.routes) == {("0.0.0.0/0", "10.0.0.1"), ("192.168.99.0/24", "10.0.0.254")}
    assert await lab.vm_addresses("cli") == ["10.0.0.50/24"]
    routes = (await lab.vm_exec("cli", ["ip", "-4", "route"])).stdout
    assert "default via 10.0.0.1" in routes and "192.168.99.0/24 via 10.0.0.254" in routes
    assert "mtu 1400" in (await lab.vm_exec("cli", ["ip", "link", "show", "eth0"])).stdout
    resolv = (lab.layout.vm_dir("cli") / "resolv.conf").read_text()
    assert "nameserver 10.0.0.53" in resolv and "search lab.test" in resolv
    assert read_bytes(HOST_RESOLV) == host_resolv
    assert lease.describe().startswith("address 10.0.0.50/24 gateway 10.0.0.1")

    # dhclient keeps running to renew, like a real VM, until the VM goes
    marker = f"{lab.layout.vm_dir('cli')}/"
    assert len(dhclients(marker)) == 1
    assert (await lab.status()).vms[0].dhclient_pid is not None
    await lab.del_vm("cli")
    assert dhclients(marker) == []
