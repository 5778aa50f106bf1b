"""Plugging router interfaces into br-int: a veth pair per router port.

Why veth and not OVS internal ports: with the userspace (netdev) datapath an
internal port is a tap device owned by ovs-vswitchd. It can be moved into the
router namespace and works, but when ovs-vswitchd restarts it re-creates the tap
in its own namespace and the moved one goes dead (NO-CARRIER): every router on
the host would lose its interfaces on an OVS restart or upgrade (checked on this
machine). A veth pair survives it: the router keeps its end (``qr-``/``qg-``/``ha-``)
and vswitchd re-opens the other end (``tap<port id[:11]>``, as a VM's port) by name.

The host end carries the port's Neutron identity (``external_ids:iface-id``,
``attached-mac``, ``iface-status``), so the agent's L2 compiler treats it like any
VM port; ``kumonet-router`` names the router so that a restarted agent can find
and clean ports of routers no longer wanted. TX checksum offload is turned off on
both ends: the userspace datapath does not complete partial checksums, and TCP
through it breaks without this (DESIGN.md, traps).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from kumonet.l3.command import in_namespace, ip_command, run
from kumonet.l3.namespace import LinkState
from kumonet.l3.plan import PlannedInterface

#: Marks the ports kumonet created (the agent's OVSDB adapter uses the same key).
OWNER_KEY = "kumonet-owned"
ROUTER_KEY = "kumonet-router"


def host_end_name(port_id: str) -> str:
    """The br-int end: ``tap<port id[:11]>``, the name a VM's port would have."""
    return f"tap{port_id[:11]}"


class InterfaceDriver(Protocol):
    """How a router interface reaches its network (one implementation per wiring)."""

    async def plug(
        self, namespace: str, interface: PlannedInterface, router_id: str, present: LinkState | None
    ) -> None: ...

    async def unplug(self, port_id: str) -> None: ...

    async def router_ports(self) -> dict[str, list[str]]:
        """router id → port ids of the interfaces plugged for it."""
        ...


@dataclass(frozen=True, slots=True)
class OvsVethDriver:
    """Veth pairs with the host end on an OVS bridge.

    ``ovsdb`` is the ``ovs-vsctl --db`` target; ``ovs_namespace`` the network
    namespace ovs-vswitchd runs in (``None``: the agent's own), where the host end
    must live for vswitchd to open it.
    """

    ovsdb: str
    bridge: str = "br-int"
    ovs_namespace: str | None = None

    def _vsctl(self, *args: str) -> list[str]:
        return ["ovs-vsctl", f"--db={self.ovsdb}", "--timeout=10", *args]

    async def plug(
        self, namespace: str, interface: PlannedInterface, router_id: str, present: LinkState | None
    ) -> None:
        host_end = host_end_name(interface.port_id)
        if present is None:
            # A host end left over from a half-done plug would block the add.
            await run(ip_command(self.ovs_namespace, "link", "del", host_end), check=False)
            await run(
                ip_command(
                    self.ovs_namespace,
                    "link",
                    "add",
                    host_end,
                    "mtu",
                    str(interface.mtu),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    interface.name,
                    "netns",
                    namespace,
                )
            )
            await run(
                ip_command(
                    namespace,
                    "link",
                    "set",
                    interface.name,
                    "address",
                    interface.mac,
                    "mtu",
                    str(interface.mtu),
                    "up",
                )
            )
            await run(in_namespace(namespace, ["ethtool", "-K", interface.name, "tx", "off"]))
            await run(in_namespace(self.ovs_namespace, ["ethtool", "-K", host_end, "tx", "off"]))
            await run(ip_command(self.ovs_namespace, "link", "set", host_end, "up"))
        elif (
            present.mac.lower() != interface.mac.lower()
            or present.mtu != interface.mtu
            or not present.up
        ):
            await run(
                ip_command(
                    namespace,
                    "link",
                    "set",
                    interface.name,
                    "address",
                    interface.mac,
                    "mtu",
                    str(interface.mtu),
                    "up",
                )
            )
            await run(
                ip_command(self.ovs_namespace, "link", "set", host_end, "mtu", str(interface.mtu))
            )
        await run(
            self._vsctl(
                "--may-exist",
                "add-port",
                self.bridge,
                host_end,
                "--",
                "set",
                "Interface",
                host_end,
                f"external_ids:iface-id={interface.port_id}",
                f"external_ids:attached-mac={interface.mac.lower()}",
                "external_ids:iface-status=active",
                f"external_ids:{OWNER_KEY}=true",
                f"external_ids:{ROUTER_KEY}={router_id}",
            )
        )

    async def unplug(self, port_id: str) -> None:
        host_end = host_end_name(port_id)
        await run(self._vsctl("--if-exists", "del-port", self.bridge, host_end))
        # Gone already when the namespace (holding the peer) was deleted first.
        await run(ip_command(self.ovs_namespace, "link", "del", host_end), check=False)

    async def router_ports(self) -> dict[str, list[str]]:
        result = await run(
            self._vsctl(
                "--format=json",
                "--columns=external_ids",
                "find",
                "Interface",
                f"external_ids:{OWNER_KEY}=true",
            )
        )
        found: dict[str, list[str]] = {}
        for (external_ids,) in json.loads(result.stdout)["data"]:
            ids = dict(external_ids[1])
            if ROUTER_KEY in ids and "iface-id" in ids:
                found.setdefault(ids[ROUTER_KEY], []).append(ids["iface-id"])
        return found
