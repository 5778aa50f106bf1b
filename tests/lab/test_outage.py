"""The outage probes: gap arithmetic, and a real cut seen by the pinger and by
a TCP connection (which survives a short cut and is reported broken when it
dies)."""

from __future__ import annotations

import asyncio
import time

import pytest

from kumonet.lab.command import run
from kumonet.lab.errors import LabError
from kumonet.lab.lab import Lab
from kumonet.lab.outage import EchoServer, Gap, PingReply, PingReport, longest_gap

# -- pure -------------------------------------------------------------------------


def test_longest_gap_counts_the_edges() -> None:
    assert longest_gap([1.0, 1.1, 1.6, 1.7], 0.95, 1.75) == Gap(1.1, 1.6)
    # replies that stopped: the gap runs to the stop
    assert longest_gap([1.0, 1.1], 0.95, 3.0) == Gap(1.1, 3.0)
    # none at all: the whole run
    assert longest_gap([], 1.0, 2.0) == Gap(1.0, 2.0)
    # late start counts as a gap too; times outside the run are ignored
    assert longest_gap([0.5, 2.0, 2.1], 1.0, 2.2) == Gap(1.0, 2.0)


def test_ping_report_outage_is_the_longest_gap_less_one_interval() -> None:
    replies = tuple(PingReply(seq, 10.0 + 0.05 * seq) for seq in (1, 2, 3, 10, 11))
    report = PingReport("203.0.113.10", 0.05, 10.02, 10.56, 11, replies, ())
    assert report.received == 5 and report.lost == 6
    assert report.gap == Gap(10.15, 10.5)
    assert report.outage == pytest.approx(0.30)
    assert "6 lost" in report.describe() and "outage 300 ms" in report.describe()
    steady = PingReport("x", 0.05, 10.02, 10.12, 2,
                        (PingReply(1, 10.05), PingReply(2, 10.10)), ())
    assert steady.outage == pytest.approx(0.0, abs=1e-9)


# -- on the lab -------------------------------------------------------------------


async def cut_external_cable(lab: Lab, host: str, seconds: float) -> tuple[float, float]:
    """Take the host's external cable down for ``seconds``; returns when it was
    surely down (after the command) and surely still down (before the up)."""
    ns, port = lab.layout.external_switch_netns, lab.layout.external_port(host)
    await run(["ip", "-n", ns, "link", "set", port, "down"])
    down = time.time()
    await asyncio.sleep(seconds)
    still_down = time.time()
    await run(["ip", "-n", ns, "link", "set", port, "up"])
    return down, still_down


@pytest.fixture
async def target(l3_lab: Lab) -> str:
    """An address on host2's br-ex, reachable from the upstream."""
    await l3_lab.host_exec("host2", ["ip", "addr", "replace", "203.0.113.41/24", "dev", "br-ex"])
    assert await l3_lab.external_ping("203.0.113.41")
    return "203.0.113.41"


@pytest.mark.lab
async def test_pinger_sees_a_half_second_cut(l3_lab: Lab, target: str) -> None:
    async with l3_lab.external_pinger(target) as pinger:
        await pinger.wait_for_replies(5)
        down, still_down = await cut_external_cable(l3_lab, "host2", 0.5)
        resumed = await pinger.wait_for_replies(5, after=still_down)
        assert resumed.running
    report = pinger.report
    assert report.lost > 0 and report.received >= 10
    # the longest gap is the cut: no reply can arrive while the cable is down
    assert report.gap.start <= down and report.gap.end >= still_down
    assert report.outage > 0
    unanswered = [reply.seq for reply in report.unanswered]
    assert unanswered and set(unanswered).isdisjoint(r.seq for r in report.replies)


@pytest.mark.lab
async def test_tcp_stream_survives_a_half_second_cut_and_measures_it(
    l3_lab: Lab, target: str
) -> None:
    host2 = l3_lab.host("host2").netns
    async with EchoServer(host2, port=5411), \
            l3_lab.external_tcp_stream(target, 5411) as stream:
        await asyncio.sleep(0.3)
        down, still_down = await cut_external_cable(l3_lab, "host2", 0.5)
        await asyncio.sleep(1.5)  # TCP retransmits after its backoff
        assert not stream.broken
    report = stream.report
    assert not report.broken, report.describe()
    assert report.sent > 20 and report.echoed > 10
    assert report.gap.start <= down and report.gap.end >= still_down
    assert "survived" in report.describe()


@pytest.mark.lab
async def test_tcp_stream_reports_a_broken_connection(l3_lab: Lab, target: str) -> None:
    host2 = l3_lab.host("host2").netns
    server = await EchoServer(host2, port=5412).start()
    stream = await l3_lab.external_tcp_stream(target, 5412).start()
    try:
        await asyncio.sleep(0.2)
        await server.stop()  # the server's end closes: the stream must notice
        assert await stream.wait_broken(10)
        assert stream.broken
    finally:
        await server.stop()
        report = await stream.stop()
    assert report.broken and report.error is not None
    assert report.echoed > 0
    assert "BROKEN" in report.describe()


@pytest.mark.lab
async def test_tcp_stream_gives_up_on_a_connection_that_stalls(
    l3_lab: Lab, target: str
) -> None:
    host2 = l3_lab.host("host2").netns
    async with EchoServer(host2, port=5413):
        stream = await l3_lab.external_tcp_stream(target, 5413, stall_limit=0.5).start()
        try:
            await cut_external_cable(l3_lab, "host2", 1.5)
        finally:
            report = await stream.stop()
    assert report.broken, report.describe()


@pytest.mark.lab
async def test_no_connection_is_an_error(l3_lab: Lab, target: str) -> None:
    with pytest.raises(LabError, match="no TCP connection"):
        await l3_lab.external_tcp_stream(target, 5499).start(time_limit=0.5)
