"""DHCP replies: requests built and replies parsed back with os-ken's packet library."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from os_ken.lib import addrconv
from os_ken.lib.packet import dhcp, ethernet, ipv4, packet, udp

from kumonet.dataplane.dhcp import (
    ACK,
    DISCOVER,
    INFORM,
    NAK,
    OFFER,
    RELEASE,
    REQUEST,
    DhcpSettings,
    answer_dhcp,
    build_dhcp_reply,
    classless_routes,
    parse_dhcp_request,
    port_for_ofport,
)
from kumonet.dataplane.intent import HostRoute, Intent, Port, Subnet
from tests.dataplane.cloud import MAC, cloud_intent

A1 = MAC["a1"]


def client_frame(
    message_type: int,
    *,
    mac: str = A1,
    src_mac: str | None = None,
    ciaddr: str = "0.0.0.0",
    requested: str | None = None,
    server_id: str | None = None,
    broadcast: bool = False,
    xid: int = 0x1234ABCD,
) -> bytes:
    options = [dhcp.option(tag=dhcp.DHCP_MESSAGE_TYPE_OPT, value=bytes([message_type]))]
    if requested:
        options.append(
            dhcp.option(
                tag=dhcp.DHCP_REQUESTED_IP_ADDR_OPT, value=addrconv.ipv4.text_to_bin(requested)
            )
        )
    if server_id:
        options.append(
            dhcp.option(
                tag=dhcp.DHCP_SERVER_IDENTIFIER_OPT, value=addrconv.ipv4.text_to_bin(server_id)
            )
        )
    options.append(
        dhcp.option(tag=dhcp.DHCP_PARAMETER_REQUEST_LIST_OPT, value=bytes([1, 3, 6, 15, 26, 121]))
    )
    pkt = packet.Packet()
    pkt.add_protocol(
        ethernet.ethernet(dst="ff:ff:ff:ff:ff:ff", src=src_mac or mac, ethertype=0x0800)
    )
    pkt.add_protocol(ipv4.ipv4(src=ciaddr, dst="255.255.255.255", proto=17))
    pkt.add_protocol(udp.udp(src_port=68, dst_port=67))
    pkt.add_protocol(
        dhcp.dhcp(
            op=dhcp.DHCP_BOOT_REQUEST, chaddr=mac, xid=xid, ciaddr=ciaddr, hlen=6,
            flags=0x8000 if broadcast else 0, options=dhcp.options(option_list=options),
        )
    )  # fmt: skip
    pkt.serialize()
    return bytes(pkt.data)


def parse_reply(
    frame: bytes,
) -> tuple[ethernet.ethernet, ipv4.ipv4, udp.udp, dhcp.dhcp, dict[int, bytes]]:
    pkt = packet.Packet(frame)
    eth = pkt.get_protocol(ethernet.ethernet)
    ip = pkt.get_protocol(ipv4.ipv4)
    udp_header = pkt.get_protocol(udp.udp)
    reply = pkt.get_protocol(dhcp.dhcp)
    assert eth and ip and udp_header and reply, pkt
    options = {option.tag: option.value for option in reply.options.option_list}
    return eth, ip, udp_header, reply, options


@pytest.fixture
def intent() -> Intent:
    return cloud_intent()


@pytest.fixture
def a1(intent: Intent) -> Port:
    return intent.ports["port-a1"]


@pytest.fixture
def subnet(intent: Intent) -> Subnet:
    return dataclasses.replace(
        intent.subnets["sub-a"],
        dns_nameservers=("10.0.0.2", "2001:db8::53", "192.0.2.53"),
        host_routes=(
            HostRoute("172.16.0.0/12", "10.0.0.254"),
            HostRoute("192.168.10.0/24", "10.0.0.253"),
        ),
    )


def test_discover_gets_an_offer_with_every_option(a1: Port, subnet: Subnet) -> None:
    reply = build_dhcp_reply(client_frame(DISCOVER), a1, subnet, mtu=1450)
    assert reply is not None
    eth, ip, udp_header, offer, options = parse_reply(reply)
    assert offer.op == dhcp.DHCP_BOOT_REPLY
    assert offer.xid == 0x1234ABCD
    assert offer.yiaddr == "10.0.0.11"
    assert offer.chaddr == A1
    assert options[dhcp.DHCP_MESSAGE_TYPE_OPT] == bytes([OFFER])
    assert options[dhcp.DHCP_SERVER_IDENTIFIER_OPT] == addrconv.ipv4.text_to_bin("10.0.0.1")
    assert options[dhcp.DHCP_SUBNET_MASK_OPT] == addrconv.ipv4.text_to_bin("255.255.255.0")
    assert options[dhcp.DHCP_GATEWAY_ADDR_OPT] == addrconv.ipv4.text_to_bin("10.0.0.1")
    assert options[dhcp.DHCP_DNS_SERVER_ADDR_OPT] == (
        addrconv.ipv4.text_to_bin("10.0.0.2") + addrconv.ipv4.text_to_bin("192.0.2.53")
    )
    assert options[dhcp.DHCP_INTERFACE_MTU_OPT] == struct.pack("!H", 1450)
    assert options[dhcp.DHCP_IP_ADDR_LEASE_TIME_OPT] == struct.pack("!I", 86400)
    assert options[dhcp.DHCP_RENEWAL_TIME_OPT] == struct.pack("!I", 43200)
    assert options[dhcp.DHCP_REBINDING_TIME_OPT] == struct.pack("!I", 75600)
    assert options[15] == b"openstacklocal"
    assert options[121] == (
        bytes([12, 172, 16, 10, 0, 0, 254])
        + bytes([24, 192, 168, 10, 10, 0, 0, 253])
        + bytes([0, 10, 0, 0, 1])
    )
    # Unicast to the offered address and the client's MAC, from the server.
    assert (eth.dst, eth.src) == (A1, DhcpSettings().server_mac)
    assert (ip.src, ip.dst) == ("10.0.0.1", "10.0.0.11")
    assert (udp_header.src_port, udp_header.dst_port) == (67, 68)
    assert len(reply) >= 14 + 20 + 8 + 300


def test_checksums_are_right(a1: Port, subnet: Subnet) -> None:
    reply = build_dhcp_reply(client_frame(DISCOVER), a1, subnet, mtu=1450)
    assert reply is not None
    _, ip, udp_header, _, _ = parse_reply(reply)
    # Re-serialising with zeroed checksums makes os-ken compute them afresh.
    again = packet.Packet(reply)
    again.get_protocol(ipv4.ipv4).csum = 0
    again.get_protocol(udp.udp).csum = 0
    again.serialize()
    _, ip2, udp2, _, _ = parse_reply(bytes(again.data))
    assert (ip.csum, udp_header.csum) == (ip2.csum, udp2.csum)


def test_broadcast_flag_gets_a_broadcast_reply(a1: Port, subnet: Subnet) -> None:
    reply = build_dhcp_reply(client_frame(DISCOVER, broadcast=True), a1, subnet, mtu=1450)
    assert reply is not None
    eth, ip, *_ = parse_reply(reply)
    assert (eth.dst, ip.dst) == ("ff:ff:ff:ff:ff:ff", "255.255.255.255")


def test_request_for_the_ports_address_is_acked(a1: Port, subnet: Subnet) -> None:
    frame = client_frame(REQUEST, requested="10.0.0.11", server_id="10.0.0.1")
    reply = build_dhcp_reply(frame, a1, subnet, mtu=1450)
    assert reply is not None
    _, _, _, ack, options = parse_reply(reply)
    assert options[dhcp.DHCP_MESSAGE_TYPE_OPT] == bytes([ACK])
    assert ack.yiaddr == "10.0.0.11"


def test_renewal_is_acked_by_unicast_to_the_client(a1: Port, subnet: Subnet) -> None:
    reply = build_dhcp_reply(client_frame(REQUEST, ciaddr="10.0.0.11"), a1, subnet, mtu=1450)
    assert reply is not None
    eth, ip, _, ack, options = parse_reply(reply)
    assert options[dhcp.DHCP_MESSAGE_TYPE_OPT] == bytes([ACK])
    assert (eth.dst, ip.dst, ack.ciaddr) == (A1, "10.0.0.11", "10.0.0.11")


def test_request_for_another_address_is_naked(a1: Port, subnet: Subnet) -> None:
    reply = build_dhcp_reply(client_frame(REQUEST, requested="10.0.0.99"), a1, subnet, mtu=1450)
    assert reply is not None
    eth, ip, _, nak, options = parse_reply(reply)
    assert options[dhcp.DHCP_MESSAGE_TYPE_OPT] == bytes([NAK])
    assert nak.yiaddr == "0.0.0.0"
    assert dhcp.DHCP_IP_ADDR_LEASE_TIME_OPT not in options
    assert (eth.dst, ip.dst) == ("ff:ff:ff:ff:ff:ff", "255.255.255.255")


def test_no_reply_when_another_server_was_chosen(a1: Port, subnet: Subnet) -> None:
    frame = client_frame(REQUEST, requested="10.0.0.11", server_id="10.0.0.250")
    assert build_dhcp_reply(frame, a1, subnet, mtu=1450) is None


def test_no_reply_for_disabled_dhcp_unknown_mac_or_release(a1: Port, subnet: Subnet) -> None:
    disabled = dataclasses.replace(subnet, enable_dhcp=False)
    assert build_dhcp_reply(client_frame(DISCOVER), a1, disabled, mtu=1450) is None
    stranger = client_frame(DISCOVER, mac="fa:16:3e:12:34:56")
    assert build_dhcp_reply(stranger, a1, subnet, mtu=1450) is None
    assert build_dhcp_reply(client_frame(RELEASE, ciaddr="10.0.0.11"), a1, subnet, mtu=1450) is None
    assert build_dhcp_reply(b"\x00" * 60, a1, subnet, mtu=1450) is None
    assert build_dhcp_reply(client_frame(DISCOVER)[:100], a1, subnet, mtu=1450) is None


def test_inform_gets_configuration_without_a_lease(a1: Port, subnet: Subnet) -> None:
    reply = build_dhcp_reply(client_frame(INFORM, ciaddr="10.0.0.11"), a1, subnet, mtu=1450)
    assert reply is not None
    _, _, _, ack, options = parse_reply(reply)
    assert options[dhcp.DHCP_MESSAGE_TYPE_OPT] == bytes([ACK])
    assert ack.yiaddr == "0.0.0.0"
    assert dhcp.DHCP_IP_ADDR_LEASE_TIME_OPT not in options


def test_no_host_routes_means_no_option_121_and_no_gateway_means_no_router(
    a1: Port, intent: Intent
) -> None:
    plain = dataclasses.replace(intent.subnets["sub-a"], gateway_ip=None)
    reply = build_dhcp_reply(client_frame(DISCOVER), a1, plain, mtu=1500)
    assert reply is not None
    _, ip, _, _, options = parse_reply(reply)
    assert 121 not in options and dhcp.DHCP_GATEWAY_ADDR_OPT not in options
    assert ip.src == "10.0.0.1"  # the server id falls back to the first host address


def test_classless_routes_keep_an_explicit_default_route_once() -> None:
    subnet = Subnet("s", "n", "10.0.0.0/24", gateway_ip="10.0.0.1",
                    host_routes=(HostRoute("0.0.0.0/0", "10.0.0.9"),))  # fmt: skip
    assert classless_routes(subnet) == bytes([0, 10, 0, 0, 9])


def test_answer_dhcp_finds_the_subnet_and_mtu(intent: Intent) -> None:
    reply = answer_dhcp(
        client_frame(DISCOVER), intent, "port-a1", DhcpSettings(domain="example.org")
    )
    assert reply is not None
    _, _, _, offer, options = parse_reply(reply)
    assert offer.yiaddr == "10.0.0.11"
    assert options[dhcp.DHCP_INTERFACE_MTU_OPT] == struct.pack("!H", 1450)
    assert options[15] == b"example.org"
    frame_d1 = client_frame(DISCOVER, mac=MAC["d1"])
    assert answer_dhcp(frame_d1, intent, "port-d1") is None  # its subnet has DHCP off
    assert answer_dhcp(client_frame(DISCOVER), intent, "no-such-port") is None
    assert port_for_ofport({"port-a1": 1, "port-a2": 2}.items(), 2) == "port-a2"


def test_parse_request_reads_the_client_fields() -> None:
    request = parse_dhcp_request(client_frame(REQUEST, requested="10.0.0.11", server_id="10.0.0.1"))
    assert request is not None
    assert (request.message_type, request.requested_ip, request.server_id) == (
        REQUEST,
        "10.0.0.11",
        "10.0.0.1",
    )
    assert request.chaddr == A1 and request.xid == 0x1234ABCD
