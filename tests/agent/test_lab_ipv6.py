"""IPv6 tenants end to end: router advertisements and DHCPv6 from each host's
agent, on the shared lab cloud (real OVS, the VM namespaces' own kernel SLAAC,
ISC ``dhclient -6``).

SLAAC is the kernel's (accept_ra and autoconf are on in a fresh namespace);
DHCPv6 is ``dhclient -6`` with a script that records what it got (the stock
script would write the machine's /etc/resolv.conf), and its lease file.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest

from kumonet.dataplane.dhcp import DhcpSettings
from kumonet.dataplane.ipv6_frame import link_local
from kumonet.lab.command import in_netns, run
from kumonet.lab.state import VmRecord
from tests.cloud import Cloud, Network, Tenant, eventually

pytestmark = [pytest.mark.lab, pytest.mark.slow]

RESPONDER_LINK_LOCAL = str(link_local(DhcpSettings().server_mac))


async def ipv6_subnet(tenant: Tenant, net: Network, cidr: str, **attrs: Any) -> dict[str, Any]:
    body = {"network_id": net.id, "cidr": cidr, "ip_version": 6, "tenant_id": tenant.project}
    return dict((await tenant.cloud.api("POST", "/subnets", {"subnet": body | attrs}))["subnet"])


async def ipv6_of(cloud: Cloud, vm: VmRecord, subnet_id: str) -> str:
    port = await cloud.port(vm.port_id)
    return next(f["ip_address"] for f in port["fixed_ips"] if f["subnet_id"] == subnet_id)


async def global_addresses(cloud: Cloud, vm: VmRecord) -> list[str]:
    out = await cloud.lab.vm_exec(vm.name, ["ip", "-6", "-o", "addr", "show", "dev", "eth0"])
    return [
        line.split()[3].split("/")[0]
        for line in out.stdout.splitlines()
        if "scope global" in line and "tentative" not in line
    ]


async def default_route(cloud: Cloud, vm: VmRecord) -> str | None:
    out = await cloud.lab.vm_exec(vm.name, ["ip", "-6", "route", "show", "default"])
    found = re.search(r"via (\S+)", out.stdout)
    return found.group(1) if found else None


async def link_local_ready(cloud: Cloud, vm: VmRecord) -> None:
    async def ready() -> bool:
        out = await cloud.lab.vm_exec(vm.name, ["ip", "-6", "-o", "addr", "show", "dev", "eth0"])
        return "fe80::" in out.stdout and "tentative" not in out.stdout

    await eventually(ready, f"{vm.name}: link-local address", time_limit=20)


async def dhclient6(
    cloud: Cloud, vm: VmRecord, workdir: Path, *, info_only: bool = False, seconds: int = 8
) -> str:
    """Run ``dhclient -6 -1`` once in the VM: its lease file and what it passed its
    script (the environment: ``new_dhcp6_name_servers`` …), '' if nothing came."""
    await link_local_ready(cloud, vm)
    lease, pid = workdir / f"{vm.name}.leases6", workdir / f"{vm.name}.pid6"
    conf, script, seen = (workdir / f"{vm.name}.{kind}" for kind in ("conf6", "sh", "env6"))
    conf.write_text(f"timeout {seconds};\nretry 60;\n")
    # The stock script would write the machine's /etc/resolv.conf: record instead.
    script.write_text(f"#!/bin/sh\nenv >> {seen}\n")
    script.chmod(0o755)
    argv = ["dhclient", "-6", "-1", "-v", "-cf", str(conf), "-lf", str(lease), "-pf", str(pid)]
    argv += ["-sf", str(script), *(["-S"] if info_only else []), "eth0"]
    try:
        await run(in_netns(vm.netns, argv), check=False, time_limit=seconds + 10)
    finally:
        if pid.exists():
            text = pid.read_text().strip()
            if text.isdigit():
                # Our own dhclient, renewing in the background after a lease.
                await run(["kill", text], check=False)
    return "".join(path.read_text() for path in (lease, seen) if path.exists())


async def test_slaac_vms_get_their_neutron_address_and_default_route_and_ping6(
    cloud: Cloud, tenant: Tenant
) -> None:
    net = await tenant.network("10.71.0.0/24")
    subnet = await ipv6_subnet(
        tenant, net, "fd00:71::/64", ipv6_ra_mode="slaac", ipv6_address_mode="slaac"
    )
    a, b = await asyncio.gather(tenant.boot("host1", net), tenant.boot("host2", net))
    for vm in (a, b):
        wanted = await ipv6_of(cloud, vm, subnet["id"])

        async def configured(vm: VmRecord = vm, wanted: str = wanted) -> bool:
            return wanted in await global_addresses(cloud, vm)

        await eventually(configured, f"{vm.name}: SLAAC address {wanted}", time_limit=30)
        assert await default_route(cloud, vm) == RESPONDER_LINK_LOCAL
    address_b = await ipv6_of(cloud, b, subnet["id"])
    assert await cloud.lab.ping(a.name, address_b)


async def test_stateful_vm_gets_its_fixed_address_from_dhclient6(
    cloud: Cloud, tenant: Tenant
) -> None:
    net = await tenant.network("10.72.0.0/24")
    subnet = await ipv6_subnet(
        tenant, net, "fd00:72::/64",
        ipv6_ra_mode="dhcpv6-stateful", ipv6_address_mode="dhcpv6-stateful",
        dns_nameservers=["fd00:72::53"],
    )  # fmt: skip
    a, b = await asyncio.gather(tenant.boot("host1", net), tenant.boot("host3", net))
    addresses = {}
    for vm in (a, b):
        wanted = await ipv6_of(cloud, vm, subnet["id"])
        lease = await dhclient6(cloud, vm, cloud.workdir)
        assert f"iaaddr {wanted} " in lease, lease
        assert "fd00:72::53" in lease, lease
        # The stateful prefix is not autonomous: the kernel makes no address of its own.
        assert await global_addresses(cloud, vm) == []
        await cloud.lab.vm_exec(vm.name, ["ip", "-6", "addr", "add", f"{wanted}/64", "dev", "eth0"])
        addresses[vm.name] = wanted
    assert await cloud.lab.ping(a.name, addresses[b.name])
    # One flow per network sends DHCPv6 to the agent (the negative test looks for it).
    to_agent = [f for f in await cloud.flows("host1") if "tp_src=546" in f and "CONTROLLER" in f]
    assert len(to_agent) >= 1
    assert ipaddress.ip_address(addresses[a.name]) in ipaddress.ip_network("fd00:72::/64")


async def test_stateless_vm_gets_slaac_address_and_dns_by_information_request(
    cloud: Cloud, tenant: Tenant
) -> None:
    net = await tenant.network("10.74.0.0/24")
    subnet = await ipv6_subnet(
        tenant, net, "fd00:74::/64",
        ipv6_ra_mode="dhcpv6-stateless", ipv6_address_mode="dhcpv6-stateless",
        dns_nameservers=["fd00:74::53"],
    )  # fmt: skip
    vm = await tenant.boot("host3", net)
    wanted = await ipv6_of(cloud, vm, subnet["id"])

    async def configured() -> bool:
        return wanted in await global_addresses(cloud, vm)

    await eventually(configured, f"SLAAC address {wanted}", time_limit=30)
    lease = await dhclient6(cloud, vm, cloud.workdir, info_only=True)
    assert "fd00:74::53" in lease, lease
    assert "iaaddr" not in lease


async def test_dhcp_disabled_subnet_gets_no_dhcpv6_answer(cloud: Cloud, tenant: Tenant) -> None:
    net = await tenant.network("10.73.0.0/24")
    await ipv6_subnet(
        tenant, net, "fd00:73::/64", enable_dhcp=False, ipv6_address_mode="dhcpv6-stateful"
    )
    vm = await tenant.boot("host2", net)
    lease = await dhclient6(cloud, vm, cloud.workdir, seconds=4)
    assert "iaaddr" not in lease
    # Nor is any DHCPv6 sent to the agent: no such flow (a stateful subnet has one).
    to_agent = [f for f in await cloud.flows("host2") if "tp_src=546" in f and "CONTROLLER" in f]
    assert to_agent == []
