"""The lab's ``dhclient -sf`` script: configures only the VM's namespace.

ISC dhclient calls its script with ``reason`` and ``new_*`` variables in the
environment. The stock ``/sbin/dhclient-script`` would rewrite the machine's
``/etc/resolv.conf`` even from a namespace, so the lab passes this one: it
applies address, MTU and routes with ``ip`` (it runs inside the VM's
namespace, as dhclient does), and writes the lease (``lease.json``) and a
``resolv.conf`` into the VM's directory in the lab, named by the
``KUMONET_LAB_VM_DIR`` variable (``dhclient -e``).

``plan(env)`` is pure: it returns the commands and files for one call, so it
is unit-tested without dhclient.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIND_REASONS = frozenset({"BOUND", "RENEW", "REBIND", "REBOOT"})
UNBIND_REASONS = frozenset({"EXPIRE", "RELEASE", "STOP"})


@dataclass(frozen=True)
class ScriptPlan:
    commands: list[list[str]] = field(default_factory=list)
    lease: dict[str, Any] | None = None
    resolv_conf: str | None = None


def classless_routes(value: str) -> list[tuple[str, str]]:
    """Option 121 as dhclient passes it (decimal bytes: width, significant
    destination octets, gateway) → [(destination/len, gateway)]."""
    octets = [int(x) for x in value.split()]
    routes = []
    i = 0
    while i < len(octets):
        width = octets[i]
        significant = (width + 7) // 8
        dest = [*octets[i + 1 : i + 1 + significant], 0, 0, 0, 0][:4]
        gateway = octets[i + 1 + significant : i + 5 + significant]
        if len(gateway) != 4:
            raise ValueError(f"truncated classless static route option: {value!r}")
        routes.append(
            (f"{'.'.join(map(str, dest))}/{width}", ".".join(map(str, gateway)))
        )
        i += 5 + significant
    return routes


def plan(env: Mapping[str, str]) -> ScriptPlan:
    reason = env.get("reason", "")
    iface = env.get("interface", "eth0")
    if reason == "PREINIT":
        return ScriptPlan(commands=[["ip", "link", "set", "dev", iface, "up"]])
    if reason in UNBIND_REASONS:
        return ScriptPlan(commands=[["ip", "-4", "addr", "flush", "dev", iface]])
    if reason not in BIND_REASONS:
        return ScriptPlan()
    address = env["new_ip_address"]
    prefixlen = ipaddress.IPv4Network(f"0.0.0.0/{env['new_subnet_mask']}").prefixlen
    commands: list[list[str]] = []
    old = env.get("old_ip_address")
    if old and old != address:
        commands.append(["ip", "-4", "addr", "flush", "dev", iface])
    mtu = env.get("new_interface_mtu")
    if mtu:
        commands.append(["ip", "link", "set", "dev", iface, "mtu", mtu])
    commands.append(["ip", "-4", "addr", "replace", f"{address}/{prefixlen}", "dev", iface])
    routers = env.get("new_routers", "").split()
    routes: list[tuple[str, str]] = []
    if env.get("new_rfc3442_classless_static_routes"):
        # RFC 3442: with option 121 present the client ignores option 3.
        routes = classless_routes(env["new_rfc3442_classless_static_routes"])
    elif routers:
        routes = [("0.0.0.0/0", routers[0])]
    for dest, gateway in routes:
        if gateway == "0.0.0.0":
            commands.append(["ip", "-4", "route", "replace", dest, "dev", iface])
        else:
            commands.append(
                ["ip", "-4", "route", "replace", dest, "via", gateway, "dev", iface]
            )
    dns = env.get("new_domain_name_servers", "").split()
    domain = env.get("new_domain_name", "")
    resolv = "".join(
        [f"search {domain}\n" if domain else "", *(f"nameserver {ns}\n" for ns in dns)]
    )
    lease = {
        "reason": reason,
        "interface": iface,
        "address": address,
        "prefixlen": prefixlen,
        "gateway": routers[0] if routers else None,
        "routes": [list(route) for route in routes],
        "dns": dns,
        "domain": domain or None,
        "mtu": int(mtu) if mtu else None,
        "server": env.get("new_dhcp_server_identifier"),
        "lease_time": int(env["new_dhcp_lease_time"]) if env.get("new_dhcp_lease_time") else None,
    }
    return ScriptPlan(commands=commands, lease=lease, resolv_conf=resolv)


def main() -> int:
    env = dict(os.environ)
    result = plan(env)
    for argv in result.commands:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{' '.join(argv)}: {done.stderr.strip()}", file=sys.stderr)
            return 1
    vm_dir = env.get("KUMONET_LAB_VM_DIR")
    if vm_dir and result.lease is not None:
        directory = Path(vm_dir)
        (directory / "resolv.conf").write_text(result.resolv_conf or "")
        tmp = directory / "lease.json.tmp"
        tmp.write_text(json.dumps(result.lease, indent=2) + "\n")
        os.replace(tmp, directory / "lease.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
