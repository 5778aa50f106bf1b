"""OpenFlow reconciliation I/O: read kumonet's installed flows, apply a change atomically.

A kumonet flow is known by its cookie alone: the compiler derives the cookie from the
flow's content and puts ``COOKIE_MARKER`` in its high 16 bits. Reconciling is then a
set difference on cookies (``kumonet.dataplane.compiler.diff_flows``, pure), applied
as ONE atomic bundle that deletes obsolete cookies and adds missing flows. A flow still
wanted is never deleted and re-added, so restarting the agent does not disturb traffic
(its counters and ``duration`` survive).

Both ways reach the bridge's service socket (``unix:RUNDIR/<bridge>.mgmt``), so no
controller has to be configured on the bridge. A change goes through the bridge's
`FlowChannel` when it has one (a persistent connection: a 1-flow change in about 1 ms,
2,000 flows in about 30 ms) and through ``ovs-ofctl --bundle`` otherwise, or when a
line is beyond the channel's encoder (15-35 ms per call, mostly the process start).
Dumps (the first pass after a start, or after a failure) always use ``ovs-ofctl``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kumonet.agent.flow_channel import BundleFailed, FlowChannel
from kumonet.agent.flow_mod import UnsupportedFlow
from kumonet.dataplane.compiler import FlowDiff, diff_flows
from kumonet.dataplane.flow import Flow

LOG = logging.getLogger(__name__)

#: High 16 bits of every kumonet flow cookie: "kn". Agreed with the compiler
#: (``kumonet.dataplane.flow.COOKIE_MARKER``); a test keeps the two equal.
COOKIE_MARKER = 0x6B6E
COOKIE_MARKER_SHIFT = 48
COOKIE_MARKER_MASK = 0xFFFF << COOKIE_MARKER_SHIFT
COOKIE_MARKER_VALUE = COOKIE_MARKER << COOKIE_MARKER_SHIFT

OPENFLOW_VERSION = "OpenFlow15"

_COOKIE_FILTER = f"cookie={COOKIE_MARKER_VALUE:#x}/{COOKIE_MARKER_MASK:#x}"
_FIELD = re.compile(r"(cookie|duration|table|n_packets|n_bytes|priority)=([0-9a-fx.]+)s?")
_FLOW_KEYWORDS = ("add", "modify", "modify_strict", "delete", "delete_strict")


def is_kumonet_cookie(cookie: int) -> bool:
    return (cookie & COOKIE_MARKER_MASK) == COOKIE_MARKER_VALUE


class OpenFlowError(RuntimeError):
    """ovs-ofctl failed; for a bundle this means nothing was changed."""


@dataclass(frozen=True, slots=True)
class InstalledFlow:
    """One flow as ``ovs-ofctl dump-flows`` shows it."""

    cookie: int
    table: int
    priority: int
    duration: float
    n_packets: int
    n_bytes: int
    text: str  # the dump line, stats included, for diagnostics


def check_flow_lines(desired: Mapping[int, str]) -> None:
    """Refuse text that is not one kumonet flow per cookie: a line without the
    cookie marker would never be found again, and a line holding several flow mods
    (or a ``delete``) would slip past the cookie diff."""
    for cookie, line in desired.items():
        if not is_kumonet_cookie(cookie):
            raise ValueError(f"cookie {cookie:#x} lacks the kumonet marker: {line}")
        if "\n" in line or line.split(None, 1)[0] in _FLOW_KEYWORDS:
            raise ValueError(f"not a single flow line: {line!r}")


def parse_dump_flows(output: str) -> list[InstalledFlow]:
    """Parse ``ovs-ofctl dump-flows`` output (any OpenFlow version)."""
    flows: list[InstalledFlow] = []
    for raw in output.splitlines():
        line = raw.strip()
        if not line.startswith("cookie=") and " actions=" not in line:
            continue  # the reply header ("OFPST_FLOW reply ...")
        fields = dict(_FIELD.findall(line.split(" actions=", 1)[0]))
        flows.append(
            InstalledFlow(
                cookie=int(fields.get("cookie", "0"), 16),
                table=int(fields.get("table", "0")),
                # dump-flows leaves the default priority out
                priority=int(fields.get("priority", "32768")),
                duration=float(fields.get("duration", "0")),
                n_packets=int(fields.get("n_packets", "0")),
                n_bytes=int(fields.get("n_bytes", "0")),
                text=line,
            )
        )
    return flows


@dataclass(frozen=True, slots=True)
class OpenFlowBridge:
    """One bridge's flow tables, reached through its service socket.

    ``target`` is what ``ovs-ofctl`` takes, e.g. ``unix:/run/openvswitch/br-int.mgmt``.
    """

    target: str
    ofctl: str = "ovs-ofctl"
    timeout: float = 60.0
    # Changes go through this persistent connection when given (and every line of
    # the change can be encoded); through one ``ovs-ofctl --bundle`` otherwise.
    channel: FlowChannel | None = field(default=None, compare=False)

    @classmethod
    def for_bridge(cls, rundir: str | Path, bridge: str) -> OpenFlowBridge:
        return cls(target=f"unix:{Path(rundir) / bridge}.mgmt")

    async def dump_flows(self) -> list[InstalledFlow]:
        """kumonet's installed flows (the switch filters on the cookie marker)."""
        output = await self._ofctl("dump-flows", self.target, _COOKIE_FILTER)
        return [flow for flow in parse_dump_flows(output) if is_kumonet_cookie(flow.cookie)]

    async def dump_cookies(self) -> dict[int, int]:
        """Installed kumonet cookies, each with how many flows carry it (normally 1)."""
        return dict(Counter(flow.cookie for flow in await self.dump_flows()))

    async def apply(self, change: FlowDiff[Flow] | FlowDiff[str]) -> None:
        """Apply ``change`` in one atomic bundle: if any flow mod fails, none applies."""
        if change.empty:
            return
        if self.channel is not None:
            try:
                await self.channel.apply(change.delete_cookies, change.add_lines())
                return
            except UnsupportedFlow as error:
                # Nothing was sent: the same change goes through ovs-ofctl.
                LOG.info("flow change through ovs-ofctl: %s", error)
            except BundleFailed as error:
                raise OpenFlowError(str(error)) from None
        await self._ofctl("--bundle", "add-flows", self.target, "-", stdin=change.bundle_text())

    async def reconcile(self, desired: Mapping[int, str]) -> FlowDiff[str]:
        """Make kumonet's flows exactly ``desired`` (cookie -> ``add-flows`` line);
        returns the change applied. Other flows on the bridge (without the marker)
        are left alone.
        """
        check_flow_lines(desired)
        change = diff_flows(desired, await self.dump_cookies())
        await self.apply(change)
        return change

    async def _ofctl(self, *args: str, stdin: str | None = None) -> str:
        argv = (self.ofctl, "-O", OPENFLOW_VERSION, *args)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), self.timeout
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise OpenFlowError(f"{' '.join(argv[:4])}: no answer in {self.timeout} s") from None
        if proc.returncode != 0:
            raise OpenFlowError(
                f"{' '.join(argv[:5])} failed (rc={proc.returncode}): "
                f"{stderr.decode(errors='replace').strip()}"
            )
        return stdout.decode()


def desired_from_lines(lines: Iterable[tuple[int, str]]) -> dict[int, str]:
    """Build the ``desired`` mapping, refusing two different flows with one cookie."""
    desired: dict[int, str] = {}
    for cookie, line in lines:
        if desired.setdefault(cookie, line) != line:
            raise ValueError(f"cookie {cookie:#x} names two flows: {desired[cookie]!r}, {line!r}")
    return desired


class InstalledFlows:
    """What kumonet has installed on one bridge, remembered between changes.

    The first ``converge`` reads the bridge (the agent-restart path: nothing still
    wanted is touched); later ones diff against memory, so a one-flow change costs one
    bundle instead of a dump of every flow. Call ``forget`` when the switch may have
    lost its flows behind our back (ovs-vswitchd restarted: the packet-in channel's
    ``generation`` went up) to read the bridge again on the next ``converge``.
    """

    def __init__(self, bridge: OpenFlowBridge) -> None:
        self.bridge = bridge
        self._cookies: dict[int, int] | None = None

    def forget(self) -> None:
        self._cookies = None

    async def converge(self, desired: Mapping[int, str]) -> FlowDiff[str]:
        """Make kumonet's flows on the bridge exactly ``desired``; returns what changed."""
        check_flow_lines(desired)
        if self._cookies is None:
            self._cookies = await self.bridge.dump_cookies()
        change = diff_flows(desired, self._cookies)
        try:
            await self.bridge.apply(change)
        except OpenFlowError:
            # The bundle is atomic, but the failure may be the switch restarting: read
            # it again next time rather than trust memory.
            self._cookies = None
            raise
        self._cookies = dict.fromkeys(desired, 1)
        return change
