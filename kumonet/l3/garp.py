"""Gratuitous ARP for addresses a non-HA router gains (keepalived does it for HA ones).

A router that appears on a segment says nothing until it must answer, so switches
(OVS NORMAL, physical upstream switches) and neighbours keep pointing a MAC or an
address at where it was before: a new router, or a floating IP moved between
routers, would be unreachable until those entries age out. Neutron's l3 agent
sends ``arping -U`` for the same reason; iputils-arping is not installed here,
so the frames are built in Python and sent from inside the namespace by a tiny
interpreter (``python -I -S``: no site imports, a few milliseconds to start).
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterable

from kumonet.l3.command import in_namespace, run

BROADCAST = b"\xff" * 6
ETH_P_ARP = 0x0806

_SENDER = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n"
    "s.bind((sys.argv[1],0))\n"
    "[s.send(bytes.fromhex(f)) for f in sys.argv[2:]]\n"
)


def _mac_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"bad MAC {mac!r}")
    return raw


def gratuitous_arps(mac: str, ip: str) -> tuple[bytes, bytes]:
    """Two announcements of ``ip`` at ``mac``, broadcast: an ARP request and an ARP
    reply with sender = target = ``ip`` (some stacks update on one, some on the other)."""
    hw = _mac_bytes(mac)
    addr = ipaddress.IPv4Address(ip).packed
    header = BROADCAST + hw + ETH_P_ARP.to_bytes(2, "big")
    # htype Ethernet, ptype IPv4, hlen 6, plen 4
    arp = (1).to_bytes(2, "big") + (0x0800).to_bytes(2, "big") + bytes([6, 4])
    request = header + arp + (1).to_bytes(2, "big") + hw + addr + b"\x00" * 6 + addr
    reply = header + arp + (2).to_bytes(2, "big") + hw + addr + BROADCAST + addr
    return request, reply


async def announce(namespace: str, device: str, mac: str, ips: Iterable[str]) -> None:
    """Send gratuitous ARPs for ``ips`` out of ``device`` in ``namespace``."""
    frames = [
        frame.hex()
        for ip in ips
        if ipaddress.ip_address(ip).version == 4
        for frame in gratuitous_arps(mac, ip)
    ]
    if frames:
        await run(in_namespace(namespace, [sys.executable, "-I", "-S", "-c", _SENDER, device,
                                           *frames]))  # fmt: skip
