"""conntrackd per HA router: the configuration (pure) and, on the two-host lab, a
SNATed TCP connection whose outside end speaks first after a failover: it
survives with the connection tracking synced and stalls without it."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from pathlib import Path

import pytest

from kumonet.l3.conntrackd import (
    ConntrackdFiles,
    ConntrackdProcess,
    conntrackd_conf,
    notify_script,
    sync_port,
)
from kumonet.l3.ha_state import RouterHAState
from kumonet.l3.interface import host_end_name
from kumonet.l3.plan import L3Settings, plan_router
from kumonet.l3.router import L3Host
from tests.l3.failover import QUIET_AFTER, SPARSE_PUSH, TcpServer, TcpTalk
from tests.l3.netlab import (
    EXTERNAL_IP,
    VLAN,
    NetLab,
    RouterPorts,
    router_intent,
    sh,
)


def test_conf_syncs_over_the_ha_link_and_ignores_its_traffic(tmp_path: Path) -> None:
    files = ConntrackdFiles(tmp_path / "r1")
    conf = conntrackd_conf(
        files=files,
        ha_interface="ha-1234",
        ha_cidr="169.254.192.7/18",
        vrrp_id=5,
        vip_network="169.254.0.0/24",
    )
    assert "Mode FTFW" in conf
    assert "IPv4_interface 169.254.192.7" in conf and "Interface ha-1234" in conf
    assert f"Group {sync_port(5)}" in conf and sync_port(5) != sync_port(6)
    assert "IPv4_address 169.254.192.0/18" in conf and "IPv4_address 169.254.0.0/24" in conf
    assert f"LockFile {files.lock}" in conf and f"Path {files.socket}" in conf


def test_socket_path_stays_within_the_unix_limit(tmp_path: Path) -> None:
    short = ConntrackdFiles(tmp_path / "r")
    assert short.socket.parent == tmp_path / "r"
    deep = ConntrackdFiles(tmp_path / ("x" * 120))
    assert len(str(deep.socket)) < 108
    assert deep.socket != ConntrackdFiles(tmp_path / ("y" * 120)).socket


def test_notify_script_follows_primary_backup(tmp_path: Path) -> None:
    script = notify_script(ConntrackdFiles(tmp_path))
    primary = script.split("primary)")[1].split(";;")[0]
    assert [line.split()[-1] for line in primary.strip().splitlines()] == ["-c", "-f", "-R"]
    backup = script.split("backup)")[1].split(";;")[0]
    assert [line.split()[-1] for line in backup.strip().splitlines()] == ["-t", "-n"]


def test_plan_has_conntrackd_only_when_enabled(tmp_path: Path) -> None:
    intent = router_intent(RouterPorts(), ha_ip="169.254.192.1", ha_port="p")
    on = plan_router(intent, L3Settings(state_path=tmp_path))
    assert on.conntrackd_conf is not None and on.keepalived_conf is not None
    assert "notify_master" in on.keepalived_conf and "primary" in on.keepalived_conf
    # The script user is set before the notify FIFO (see keepalived_conf).
    conf = on.keepalived_conf
    assert conf.index("script_user root") < conf.index("vrrp_notify_fifo")
    off = plan_router(intent, L3Settings(state_path=tmp_path, conntrack_sync=False))
    assert off.conntrackd_conf is None and off.keepalived_conf is not None
    assert "notify_master" not in off.keepalived_conf
    legacy = plan_router(dataclasses.replace(intent, ha=None), L3Settings(state_path=tmp_path))
    assert legacy.conntrackd_conf is None


async def _wait_state(states: dict[str, RouterHAState], host: str, state: RouterHAState) -> None:
    async with asyncio.timeout(20):
        while states.get(host) is not state:  # noqa: ASYNC110 - a dict filled by callbacks
            await asyncio.sleep(0.02)


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.parametrize("sync", [True, False], ids=["synced", "unsynced"])
async def test_snat_connection_survives_failover_only_when_synced(
    netlab: NetLab, sync: bool
) -> None:
    ports = RouterPorts()
    ext, vm2 = netlab.ns("ext"), netlab.ns("vm2")
    states: dict[str, RouterHAState] = {}
    members = (("h1", "169.254.192.1", ports.ha1), ("h2", "169.254.192.2", ports.ha2))
    hosts: dict[str, L3Host] = {}
    try:
        for name, ha_ip, ha_port in members:
            host = netlab.hosts[name]
            settings = dataclasses.replace(
                host.settings(netlab.root / f"state-{sync}", netlab.prefix, 0.1),
                conntrack_sync=sync,
            )
            l3 = L3Host(
                settings,
                host.driver(ha_vlan=VLAN["ha"]),
                on_ha_state=lambda _r, s, name=name: states.__setitem__(name, s),
            )
            hosts[name] = await l3.__aenter__()
            await l3.apply(router_intent(ports, ha_ip=ha_ip, ha_port=ha_port, fips=False))
            if name == "h1":
                # Started first, h1 is master; h2 then joins as standby (nopreempt).
                await _wait_state(states, "h1", RouterHAState.ACTIVE)
        await _wait_state(states, "h2", RouterHAState.STANDBY)
        assert hosts["h1"].conntrackd(ports.router_id).running is sync
        assert hosts["h2"].conntrackd(ports.router_id).running is sync

        server = TcpServer(ext, EXTERNAL_IP, 7020, "push", str(SPARSE_PUSH))
        try:
            answer = TcpTalk(vm2, EXTERNAL_IP, 7020, seconds=6, mode="answer")
            for _ in range(3):  # established, and synced to the standby
                await asyncio.to_thread(answer.next_line)
            await asyncio.sleep(QUIET_AFTER)
            plan = hosts["h1"].plan(router_intent(ports, ha_ip="169.254.192.1", fips=False))
            for interface in plan.interfaces:
                sh("ip", "-n", netlab.hosts["h1"].netns, "link", "set",
                   host_end_name(interface.port_id if interface.kind != "ha" else ports.ha1),
                   "down")  # fmt: skip
            cut_at = time.monotonic()
            await _wait_state(states, "h2", RouterHAState.ACTIVE)
            print(f"\ntakeover after {(time.monotonic() - cut_at) * 1000:.0f} ms")
            result = await asyncio.to_thread(answer.result)
        finally:
            server.stop()
        print(f"sync={sync}: {result}")
        if sync:
            # The same connection, lines both ways after the failover too.
            assert result.error is None, result
            assert result.echoed >= 3 + 4, result
        else:
            # The new master drops the outside's segments (no translation known),
            # and the VM, which only answers, never re-creates the entry.
            assert result.error is not None, result
    finally:
        for l3 in hosts.values():
            await l3.remove(ports.router_id)
            await l3.__aexit__(None, None, None)


@pytest.mark.lab
async def test_process_starts_once_restarts_on_change_and_stops(tmp_path: Path) -> None:
    ns = f"kct{secrets.token_hex(3)}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "add", "ha-test", "type", "veth", "peer", "name", "ha-peer")
        sh("ip", "-n", ns, "link", "set", "ha-test", "up")
        sh("ip", "-n", ns, "addr", "add", "169.254.192.9/18", "dev", "ha-test")
        files = ConntrackdFiles(tmp_path / "r1")
        process = ConntrackdProcess(files, ns)

        def conf(vrrp_id: int) -> str:
            return conntrackd_conf(
                files=files,
                ha_interface="ha-test",
                ha_cidr="169.254.192.9/18",
                vrrp_id=vrrp_id,
                vip_network="169.254.0.0/24",
            )

        # A lock file left by a killed daemon does not keep it from starting.
        files.directory.mkdir(parents=True)
        files.lock.write_text("")
        assert await process.ensure(conf(1), notify_script(files))
        first = process.pid
        assert first is not None and files.notify_script.stat().st_mode & 0o111
        assert await process.control("-s")  # answers on its own socket
        assert not await process.ensure(conf(1), notify_script(files))
        assert process.pid == first
        assert await process.ensure(conf(2), notify_script(files))
        assert process.pid not in (None, first)
        await process.stop()
        assert process.pid is None
        assert not files.config.exists() and not files.socket.exists()
    finally:
        sh("ip", "netns", "del", ns, check=False)
