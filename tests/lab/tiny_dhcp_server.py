"""A minimal DHCPv4 server for testing the lab's dhclient wrapper end to end.

Run inside a VM namespace: ``python tiny_dhcp_server.py IFACE CLIENT_IP SERVER_IP``.
It answers one DISCOVER with an OFFER and one REQUEST with an ACK (router,
DNS, MTU, domain, classless static routes), then exits. Not a product: the
agent's distributed DHCP responder replaces it in real end-to-end tests.
"""

from __future__ import annotations

import socket
import struct
import sys

MAGIC = b"\x63\x82\x53\x63"


def option(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


def ip(text: str) -> bytes:
    return socket.inet_aton(text)


def reply(request: bytes, kind: int, client_ip: str, server_ip: str) -> bytes:
    xid, flags, chaddr = request[4:8], request[10:12], request[28:44]
    header = struct.pack("!BBBB", 2, 1, 6, 0) + xid + b"\0\0" + flags
    header += b"\0" * 4 + ip(client_ip) + ip(server_ip) + b"\0" * 4 + chaddr
    header += b"\0" * 192
    routes = bytes([0, 10, 0, 0, 1]) + bytes([24, 192, 168, 99, 10, 0, 0, 254])
    options = b"".join([
        option(53, bytes([kind])),
        option(54, ip(server_ip)),
        option(51, struct.pack("!I", 600)),
        option(1, ip("255.255.255.0")),
        option(3, ip(server_ip)),
        option(6, ip("10.0.0.53")),
        option(15, b"lab.test"),
        option(26, struct.pack("!H", 1400)),
        option(121, routes),
    ])
    return header + MAGIC + options + b"\xff"


def message_type(packet: bytes) -> int | None:
    i = 240
    while i < len(packet) and packet[i] != 255:
        if packet[i] == 0:
            i += 1
            continue
        code, length = packet[i], packet[i + 1]
        if code == 53:
            return packet[i + 2]
        i += 2 + length
    return None


def main() -> int:
    iface, client_ip, server_ip = sys.argv[1:4]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    sock.bind(("0.0.0.0", 67))
    sock.settimeout(30)
    print("ready", flush=True)
    answered = 0
    while answered < 2:
        packet, _ = sock.recvfrom(2048)
        kind = {1: 2, 3: 5}.get(message_type(packet) or 0)  # DISCOVER→OFFER, REQUEST→ACK
        if kind is None:
            continue
        sock.sendto(reply(packet, kind, client_ip, server_ip), ("255.255.255.255", 68))
        answered += 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
