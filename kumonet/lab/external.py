"""The external network of L3 hosts: a flat segment (physical network
``external``) shared by every L3 host's br-ex and the upstream router.

    <prefix>-exsw   Linux bridge <prefix>-exbr, no address: the external switch
      | <prefix>-ex-hN  <->  <prefix>-ex in hostN (a port of its br-ex), per L3 host
      | <prefix>-ex-up  <->  eth0 in <prefix>-ext, 203.0.113.1/24 (upstream router)

The switch has a namespace of its own so that the upstream namespace is only
what a real upstream router would be (one interface, one address), and a
failure of one host's link is a port of the switch going dark, as a pulled
cable. Offloads are off on both ends of every veth (TCP through the
userspace datapath breaks otherwise).
"""

from __future__ import annotations

import asyncio

from kumonet.lab.command import in_netns, run
from kumonet.lab.layout import LabLayout
from kumonet.lab.state import HostRecord

EXTERNAL_MTU = 1500
# the upstream re-learns a moved address quickly (the default is 1 s per try)
ARP_RETRANS_MS = 100


async def create_segment(layout: LabLayout) -> None:
    """The switch namespace with its bridge, and the upstream namespace."""
    switch, upstream = layout.external_switch_netns, layout.external_netns
    bridge, uplink, device = layout.external_bridge, layout.external_uplink_port, \
        layout.external_device
    for ns in (switch, upstream):
        await run(["ip", "netns", "add", ns])
        await run(["ip", "-n", ns, "link", "set", "lo", "up"])
    await run(["ip", "-n", switch, "link", "add", bridge, "type", "bridge",
               "stp_state", "0", "forward_delay", "0"])
    await run(["ip", "-n", switch, "link", "set", bridge, "up"])
    await run(["ip", "link", "add", uplink, "netns", switch, "mtu", str(EXTERNAL_MTU),
               "type", "veth", "peer", "name", device, "netns", upstream,
               "mtu", str(EXTERNAL_MTU)])
    await asyncio.gather(
        run(in_netns(switch, ["ethtool", "-K", uplink, "tx", "off"])),
        run(in_netns(upstream, ["ethtool", "-K", device, "tx", "off"])),
        run(in_netns(upstream, ["sysctl", "-qw",
                                f"net.ipv4.neigh.{device}.retrans_time_ms={ARP_RETRANS_MS}"])),
    )
    await run(["ip", "-n", switch, "link", "set", uplink, "master", bridge, "up"])
    await run(["ip", "-n", upstream, "addr", "add",
               f"{layout.external_ip}/{layout.external_prefixlen}", "dev", device])
    await run(["ip", "-n", upstream, "link", "set", device, "up"])


async def attach_host(layout: LabLayout, host: HostRecord) -> None:
    """The host's veth into the external switch; the host end becomes a port
    of br-ex when the host's OVS is configured."""
    switch, port, link = layout.external_switch_netns, layout.external_port(host.name), \
        layout.host_external_link
    await run(["ip", "link", "add", port, "netns", switch, "mtu", str(EXTERNAL_MTU),
               "type", "veth", "peer", "name", link, "netns", host.netns,
               "mtu", str(EXTERNAL_MTU)])
    await asyncio.gather(
        run(in_netns(switch, ["ethtool", "-K", port, "tx", "off"])),
        run(in_netns(host.netns, ["ethtool", "-K", link, "tx", "off"])),
    )
    await run(["ip", "-n", switch, "link", "set", port, "master", layout.external_bridge, "up"])
    await run(["ip", "-n", host.netns, "link", "set", link, "up"])


def host_links(layout: LabLayout, host: HostRecord) -> list[tuple[str, str]]:
    """Both ends of every cable of ``host`` as (namespace, interface): what a
    link failure sets down."""
    links = [
        (layout.underlay_netns, layout.underlay_port(host.name)),
        (host.netns, layout.host_uplink),
    ]
    if host.l3:
        links += [
            (layout.external_switch_netns, layout.external_port(host.name)),
            (host.netns, layout.host_external_link),
        ]
    return links
