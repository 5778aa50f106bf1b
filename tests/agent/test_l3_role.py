"""The L3 role's pure decisions: which routers this host builds, and the VRRP
priority offset of its masters (who keeps the master role when a partition
heals)."""

import asyncio
import dataclasses
import types
from pathlib import Path

from kumonet.agent.config import AgentConfig
from kumonet.agent.l3_role import DEMOTION, TAKEOVER_BOOST, L3Role
from kumonet.agent.mirror import HaReport, IntentMirror
from kumonet.agent.server_client import ServerClient, ServerUnavailable
from kumonet.l3.ha_state import RouterHAState
from kumonet.l3.keepalived import read_priority_offset
from kumonet.l3.plan import KeepalivedFiles, plan_router

ROUTER = "/config/neutron/routers/r1"


def config(tmp_path: Path) -> AgentConfig:
    return AgentConfig(
        host="host1",
        server_urls=("http://127.0.0.1:1",),
        ovsdb_connection="unix:/nonexistent",
        ovs_rundir=tmp_path,
        local_ip="192.0.2.1",
        state_path=tmp_path,
        l3_agent=True,
    )


def seed(mirror: IntentMirror, *, ha_port_host: str = "host1") -> None:
    mirror.reset_config(
        [
            ("/config/neutron/networks/n1", {"id": "n1", "mtu": 1450}),
            (
                "/config/neutron/subnets/s1",
                {"id": "s1", "network_id": "n1", "cidr": "192.168.1.0/24"},
            ),
            (ROUTER, {"id": "r1", "ha": True, "ha_vr_id": 1, "project_id": "p"}),
            ("/config/neutron/l3_placements/r1/host1", {"router_id": "r1", "host": "host1"}),
            (
                "/config/neutron/ports/qr",
                {
                    "id": "qr",
                    "network_id": "n1",
                    "device_id": "r1",
                    "device_owner": "network:router_interface",
                    "mac_address": "fa:16:3e:00:00:01",
                    "fixed_ips": [{"subnet_id": "s1", "ip_address": "192.168.1.1"}],
                },
            ),
            (
                "/config/neutron/ports/ha",
                {
                    "id": "ha",
                    "network_id": "hanet",
                    "device_id": "r1",
                    "device_owner": "network:router_ha_interface",
                    "binding:host_id": ha_port_host,
                    "mac_address": "fa:16:3e:00:00:02",
                    "fixed_ips": [{"subnet_id": "hasub", "ip_address": "169.254.192.1"}],
                },
            ),
        ]
    )


async def test_builds_the_routers_placed_here(tmp_path: Path) -> None:
    mirror = IntentMirror()
    seed(mirror)
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        role = L3Role(config(tmp_path), client, mirror)
        (intent,) = role.wanted().values()
        assert intent.id == "r1"
        assert intent.internal[0].cidrs == ("192.168.1.1/24",)
        assert intent.ha is not None and intent.ha.vrrp_id == 1
        # Placed elsewhere only: nothing here.
        mirror.apply_config([("/config/neutron/l3_placements/r1/host1", None)])
        assert role.wanted() == {}


async def test_conntrack_sync_follows_the_agent_option(tmp_path: Path) -> None:
    """``[agent] ha_conntrack_sync``: on by default; off, the planned HA router has
    no conntrackd and keepalived runs no notify script."""
    ini = tmp_path / "agent.ini"
    base = (
        "[DEFAULT]\nhost = host1\n[kumonet]\nserver_urls = http://127.0.0.1:1\n"
        f"ovs_rundir = {tmp_path}\n[ovs]\novsdb_connection = unix:/x\nlocal_ip = 192.0.2.1\n"
        "[agent]\nl3_agent = true\n"
    )
    mirror = IntentMirror()
    seed(mirror)
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        for extra, synced in (("", True), ("ha_conntrack_sync = false\n", False)):
            ini.write_text(base + extra)
            loaded = dataclasses.replace(AgentConfig.from_file(ini), state_path=tmp_path)
            assert loaded.ha_conntrack_sync is synced
            role = L3Role(loaded, client, mirror)
            (intent,) = role.wanted().values()
            plan = plan_router(intent, role.settings)
            assert (plan.conntrackd_conf is not None) is synced
            assert plan.keepalived_conf is not None
            assert ("notify_master" in plan.keepalived_conf) is synced


async def test_an_ha_router_without_its_port_here_waits(tmp_path: Path) -> None:
    mirror = IntentMirror()
    seed(mirror, ha_port_host="host2")
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        assert L3Role(config(tmp_path), client, mirror).wanted() == {}


async def test_priority_offset_decides_who_keeps_the_master_role(tmp_path: Path) -> None:
    mirror = IntentMirror()
    seed(mirror)
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        role = L3Role(config(tmp_path), client, mirror)
        # A standby: no offset, whatever the others say.
        mirror.ha_states["r1"] = {"host2": HaReport("active", 4)}
        assert role.priority_offset("r1") == 0
        # Just became master here, not acknowledged by the servers yet: yields on a tie.
        role._on_ha_state("r1", RouterHAState.ACTIVE)
        assert role.priority_offset("r1") == -DEMOTION
        role._unacknowledged.discard("r1")  # the report went through
        # The old master's report still stands (dead or cut off): keep the role.
        assert role.priority_offset("r1") == TAKEOVER_BOOST
        mirror.ha_states["r1"]["host1"] = HaReport("active", 5)  # echoed
        assert role.priority_offset("r1") == TAKEOVER_BOOST
        # The old master's report went (lease expired) or says standby: settled.
        mirror.ha_states["r1"]["host2"] = HaReport("standby", 6)
        assert role.priority_offset("r1") == 0
        # A newer master elsewhere: we were cut off from our peers, yield.
        mirror.ha_states["r1"]["host2"] = HaReport("active", 9)
        assert role.priority_offset("r1") == -DEMOTION
        # Cut off from the servers: yield, whatever the (stale) mirror says.
        mirror.ha_states["r1"]["host2"] = HaReport("standby", 10)
        assert role.priority_offset("r1") == 0
        role.isolated = True
        assert role.priority_offset("r1") == -DEMOTION
        role._on_ha_state("r1", RouterHAState.STANDBY)
        assert role.priority_offset("r1") == 0


async def test_offsets_are_written_for_keepalived(tmp_path: Path) -> None:
    mirror = IntentMirror()
    seed(mirror)
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        role = L3Role(config(tmp_path), client, mirror)
        role._applied = role.wanted()
        role._l3 = object()  # type: ignore[assignment]  # only "running" is looked at
        files = KeepalivedFiles(role.settings.router_dir("r1"))
        role.update_offsets()
        assert read_priority_offset(files) == 0
        role._on_ha_state("r1", RouterHAState.ACTIVE)
        assert read_priority_offset(files) == -DEMOTION
        assert role.offsets == {"r1": -DEMOTION}
        role._applied = {}
        role.update_offsets()
        assert role.offsets == {}


async def test_a_master_cut_off_from_the_servers_counts_as_isolated(tmp_path: Path) -> None:
    mirror = IntentMirror()
    seed(mirror)
    settings = dataclasses.replace(config(tmp_path), report_interval=0.1)
    # Nothing listens on port 1: every probe fails at once.
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        role = L3Role(settings, client, mirror)
        probe = asyncio.create_task(role._contact_loop())
        try:
            await asyncio.sleep(0.5)
            assert not role.isolated  # standby only: nothing to decide
            role.local_active["r1"] = True
            for _ in range(100):
                if role.isolated:
                    break
                await asyncio.sleep(0.05)
            assert role.isolated
            assert role.priority_offset("r1") == -DEMOTION
        finally:
            probe.cancel()


def _master_here(tmp_path: Path, mirror: IntentMirror, client: ServerClient) -> L3Role:
    """host1 master of r1 for a while: its report acknowledged and echoed (revision 5)."""
    role = L3Role(config(tmp_path), client, mirror)
    role._on_ha_state("r1", RouterHAState.ACTIVE)
    role._pending.clear()  # reported...
    role._unacknowledged.discard("r1")  # ...and acknowledged
    mirror.ha_states["r1"] = {"host1": HaReport("active", 5)}
    assert role.priority_offset("r1") == 0
    return role


async def test_back_from_isolation_a_master_stays_lowered_until_checked(tmp_path: Path) -> None:
    mirror = IntentMirror()
    seed(mirror)
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        role = _master_here(tmp_path, mirror, client)
        role._cut_off()
        assert role.priority_offset("r1") == -DEMOTION
        # Contact is back; the mirror has not caught up (it lacks any takeover).
        role._contact()
        assert not role.isolated
        assert role.priority_offset("r1") == -DEMOTION
        # Fresh HA states: nobody took over. Reported again, lowered until acknowledged.
        assert role.settle_held({"r1": {"host1": HaReport("active", 5)}}) == []
        assert role._pending["r1"][0] is RouterHAState.ACTIVE
        assert role.priority_offset("r1") == -DEMOTION
        role._unacknowledged.discard("r1")
        assert role.priority_offset("r1") == 0


async def test_a_master_replaced_while_cut_off_yields_without_reporting(tmp_path: Path) -> None:
    mirror = IntentMirror()
    seed(mirror)
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        role = _master_here(tmp_path, mirror, client)
        role._cut_off()
        role._contact()
        # Re-registered (its lease expired meanwhile): every state is queued again.
        watcher = types.SimpleNamespace(states={"r1": RouterHAState.ACTIVE})
        role._l3 = types.SimpleNamespace(watcher=watcher)  # type: ignore[assignment]
        role.report_all_states()
        # host2 took over (revision 9) while host1's report expired with its lease.
        fresh = {"r1": {"host2": HaReport("active", 9)}}
        assert role.settle_held(fresh) == ["r1"]
        assert role.priority_offset("r1") == -DEMOTION
        # The re-report is not sent: with a revision newer than 9 it would look like a
        # takeover by host1, and host2 would yield to it.
        reported: list[str] = []

        async def report(router_id: str, host: str, state: str) -> bool:
            reported.append(state)
            return True

        role.client = types.SimpleNamespace(report_ha_state=report)  # type: ignore[assignment]
        loop = asyncio.create_task(role._report_loop())
        try:
            for _ in range(100):  # the loop takes what report_all_states queued
                if not role._pending:
                    break
                await asyncio.sleep(0.01)
            assert not role._pending
            assert reported == []
            # VRRP hears host2 (priority 200 against ours lowered): standby, reported.
            role._on_ha_state("r1", RouterHAState.STANDBY)
            for _ in range(100):
                if reported:
                    break
                await asyncio.sleep(0.01)
            assert reported == ["standby"]
            assert role.priority_offset("r1") == 0
        finally:
            loop.cancel()
        role._l3 = None


async def test_a_held_master_alone_again_is_released(tmp_path: Path) -> None:
    mirror = IntentMirror()
    seed(mirror)
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        role = _master_here(tmp_path, mirror, client)
        role._cut_off()
        role._contact()
        # An older active elsewhere (the master host1 took over from) is no takeover.
        assert role.settle_held({"r1": {"host2": HaReport("active", 3)}}) == []
        role._cut_off()
        role._contact()
        assert role.settle_held({"r1": {"host2": HaReport("active", 9)}}) == ["r1"]
        # host2's report went (its lease expired): host1 is the master again.
        assert role.settle_held({"r1": {"host2": HaReport("standby", 11)}}) == []
        assert role._pending["r1"][0] is RouterHAState.ACTIVE


async def _report_loop_with(role: L3Role, answer: Exception | None) -> list[str]:
    """Run the report loop until it has taken what is queued; ``answer`` raised
    by every report (None: accepted). Returns the states sent."""
    sent: list[str] = []

    async def report(router_id: str, host: str, state: str) -> bool:
        sent.append(state)
        if answer is not None:
            raise answer
        return True

    role.client = types.SimpleNamespace(report_ha_state=report)  # type: ignore[assignment]
    loop = asyncio.create_task(role._report_loop())
    try:
        for _ in range(100):
            if not role._pending:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.02)
    finally:
        loop.cancel()
    return sent


async def test_an_unreported_takeover_waits_for_vrrp_before_it_is_reported(
    tmp_path: Path,
) -> None:
    """A standby cut off from its peers and the servers becomes master; its
    report does not get through. It is not retried blindly (landing after the
    heal, it would move the router's ports here while VRRP makes this host a
    standby again): held and lowered, reported only if it is still master
    ``vrrp_settle`` after the servers show the other master."""
    mirror = IntentMirror()
    seed(mirror)
    mirror.ha_states["r1"] = {"host2": HaReport("active", 5), "host1": HaReport("standby", 4)}
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        role = L3Role(config(tmp_path), client, mirror)
        role._on_ha_state("r1", RouterHAState.ACTIVE)
        sent = await _report_loop_with(role, ServerUnavailable("cut off"))
        assert sent == ["active"]  # tried once...
        assert not role._pending  # ...and not queued again
        assert role._check_due.is_set()
        assert role.priority_offset("r1") == -DEMOTION
        # The servers answer again and still show host2 active: VRRP gets its time.
        fresh = {"r1": {"host2": HaReport("active", 5), "host1": HaReport("standby", 4)}}
        assert role.settle_held(fresh, now=100.0) == ["r1"]
        assert role.settle_held(fresh, now=100.0 + role.vrrp_settle - 0.01) == ["r1"]
        assert not role._pending
        # Still master after that: host2 does not hear this host; the takeover is
        # reported (the latest transition wins), lowered until acknowledged.
        assert role.settle_held(fresh, now=100.0 + role.vrrp_settle) == []
        assert role._pending["r1"][0] is RouterHAState.ACTIVE
        assert role.priority_offset("r1") == -DEMOTION


async def test_an_unreported_takeover_that_vrrp_settles_is_never_reported(
    tmp_path: Path,
) -> None:
    mirror = IntentMirror()
    seed(mirror)
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        role = L3Role(config(tmp_path), client, mirror)
        role._on_ha_state("r1", RouterHAState.ACTIVE)
        await _report_loop_with(role, ServerUnavailable("cut off"))
        fresh = {"r1": {"host2": HaReport("active", 5)}}
        assert role.settle_held(fresh, now=10.0) == ["r1"]
        # The heal: host1 hears host2's adverts (at a higher priority) and yields.
        role._on_ha_state("r1", RouterHAState.STANDBY)
        assert role._held == {} and role._unreported == {}
        assert await _report_loop_with(role, None) == ["standby"]
        assert role.priority_offset("r1") == 0
        assert role.settle_held(fresh, now=10.0 + 2 * role.vrrp_settle) == []
        assert not role._pending


async def test_an_unreported_takeover_alone_is_reported_when_the_servers_answer(
    tmp_path: Path,
) -> None:
    """The master died while this host was cut off from the servers too: no
    other master stands, the takeover is reported at the first answer."""
    mirror = IntentMirror()
    seed(mirror)
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        role = L3Role(config(tmp_path), client, mirror)
        role._on_ha_state("r1", RouterHAState.ACTIVE)
        await _report_loop_with(role, ServerUnavailable("cut off"))
        fresh = {"r1": {"host2": HaReport("standby", 7)}}
        assert role.settle_held(fresh, now=10.0) == []
        assert role._pending["r1"][0] is RouterHAState.ACTIVE
        assert await _report_loop_with(role, None) == ["active"]
        assert role.priority_offset("r1") == 0


async def test_a_failed_standby_report_is_retried(tmp_path: Path) -> None:
    mirror = IntentMirror()
    seed(mirror)
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        role = L3Role(config(tmp_path), client, mirror)
        role._on_ha_state("r1", RouterHAState.STANDBY)
        sent = await _report_loop_with(role, ServerUnavailable("cut off"))
        assert sent and set(sent) == {"standby"}
        assert role._held == {}
        assert role._pending["r1"][0] is RouterHAState.STANDBY  # queued again
