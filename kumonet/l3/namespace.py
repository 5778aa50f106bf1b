"""A router's network namespace: present state read back, and idempotent changes.

Everything is read with ``ip -json`` and changed with one ``ip -batch`` per step,
so re-applying an unchanged plan runs a handful of read-only commands and
changes nothing (no address flaps, no route churn).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kumonet.l3.command import in_namespace, ip_command, run
from kumonet.l3.plan import NFT_TABLE, Address, Route

NETNS_DIR = Path("/run/netns")


def list_namespaces() -> list[str]:
    """The named namespaces (``ip netns add`` bind-mounts them under /run/netns)."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir())


async def ensure_namespace(name: str) -> bool:
    """Create ``name`` if missing, with ``lo`` up; ``True`` if it was created."""
    if name in list_namespaces():
        return False
    await run(["ip", "netns", "add", name])
    await run(ip_command(name, "link", "set", "lo", "up"))
    return True


async def delete_namespace(name: str) -> None:
    # Deleting a namespace destroys its veth ends, and so their peers on br-int.
    if name in list_namespaces():
        await run(["ip", "netns", "delete", name])


@dataclass(frozen=True, slots=True)
class LinkState:
    name: str
    mac: str
    mtu: int
    up: bool


def _normalise_cidr(local: str, prefixlen: int) -> str:
    return str(ipaddress.ip_interface(f"{local}/{prefixlen}"))


def _route_destination(dst: str) -> str:
    if dst == "default":
        return "0.0.0.0/0"
    return str(ipaddress.ip_network(dst, strict=False))


@dataclass(frozen=True, slots=True)
class RouterNamespace:
    name: str

    async def links(self) -> dict[str, LinkState]:
        result = await run(ip_command(self.name, "-json", "link", "show"))
        links: dict[str, LinkState] = {}
        for link in json.loads(result.stdout or "[]"):
            links[link["ifname"]] = LinkState(
                name=link["ifname"],
                mac=link.get("address", ""),
                mtu=int(link.get("mtu", 0)),
                up="UP" in link.get("flags", ()),
            )
        return links

    async def addresses(self) -> set[Address]:
        """Global-scope IPv4 addresses (link-local IPv6 is the kernel's business)."""
        result = await run(ip_command(self.name, "-json", "-4", "addr", "show"))
        found: set[Address] = set()
        for link in json.loads(result.stdout or "[]"):
            for info in link.get("addr_info", ()):
                if info.get("scope") == "host":
                    continue  # 127.0.0.1 on lo
                found.add(
                    Address(_normalise_cidr(info["local"], info["prefixlen"]), link["ifname"])
                )
        return found

    async def routes(self) -> set[Route]:
        """Main-table IPv4 routes not derived from an address (those the kernel owns)."""
        result = await run(ip_command(self.name, "-json", "-4", "route", "show", "table", "main"))
        found: set[Route] = set()
        for route in json.loads(result.stdout or "[]"):
            if route.get("protocol") == "kernel":
                continue
            found.add(
                Route(_route_destination(route["dst"]), route.get("gateway"), route.get("dev"))
            )
        return found

    async def batch(self, commands: Sequence[str]) -> None:
        """Run ``ip`` commands (without the leading ``ip``) in one process, in order."""
        if commands:
            await run(ip_command(self.name, "-batch", "-"), stdin="\n".join(commands) + "\n")

    async def set_sysctls(self, settings: Iterable[tuple[str, str]]) -> None:
        pairs = [f"{key}={value}" for key, value in settings]
        if pairs:
            await run(in_namespace(self.name, ["sysctl", "-q", "-w", *pairs]))

    async def sync_addresses(
        self, desired: Iterable[Address], *, devices: Iterable[str], keep: Iterable[Address] = ()
    ) -> tuple[set[Address], set[Address]]:
        """Make the addresses on ``devices`` exactly ``desired``, leaving ``keep``
        (keepalived's) alone whether present or not. Returns (added, removed)."""
        scope = set(devices)
        want = set(desired)
        leave = set(keep)
        have = {a for a in await self.addresses() if a.device in scope}
        add = want - have
        remove = have - want - leave
        commands = [f"addr del {a.cidr} dev {a.device}" for a in sorted(remove)]
        commands += [f"addr add {a.cidr} dev {a.device}" for a in sorted(add)]
        await self.batch(commands)
        return add, remove

    async def sync_routes(self, desired: Iterable[Route]) -> tuple[set[Route], set[Route]]:
        """Make the non-kernel main-table routes exactly ``desired``."""
        want = {_canonical(r) for r in desired}
        have = await self.routes()
        remove = {r for r in have if _canonical(r) not in want}
        have_canonical = {_canonical(r) for r in have}
        add = {r for r in want if r not in have_canonical}
        commands = [f"route del {_route_spec(r)}" for r in sorted(remove, key=_route_key)]
        commands += [f"route replace {_route_spec(r)}" for r in sorted(add, key=_route_key)]
        await self.batch(commands)
        return add, remove

    async def nft_table(self) -> str | None:
        result = await run(
            in_namespace(self.name, ["nft", "list", "table", "ip", NFT_TABLE]), check=False
        )
        return result.stdout if result.ok else None

    async def replace_nft_table(self, ruleset: str) -> None:
        """Swap the router's table atomically: one nft transaction deletes and
        re-creates it, so no packet ever sees a half-built ruleset."""
        script = f"table ip {NFT_TABLE}\ndelete table ip {NFT_TABLE}\n{ruleset}"
        await run(in_namespace(self.name, ["nft", "-f", "-"]), stdin=script)


def _canonical(route: Route) -> Route:
    # A route given without a device matches the one the kernel resolved: compare
    # destination and next hop only, unless both name the device.
    return Route(_route_destination(route.destination), route.via, None)


def _route_key(route: Route) -> tuple[str, str]:
    return (route.destination, route.via or "")


def _route_spec(route: Route) -> str:
    spec = route.destination
    if route.via is not None:
        spec += f" via {route.via}"
    if route.device is not None:
        spec += f" dev {route.device}"
    return spec
