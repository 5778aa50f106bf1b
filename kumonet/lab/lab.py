"""The lab as a Python API: ``Lab.up``, ``Lab.load``, VMs, probes, ``down``.

All methods are coroutines creating their subprocesses in whatever event loop
runs them; a ``Lab`` holds only paths and the state read from disk, so one
object can be shared across tests that each run their own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from kumonet.l3.ha_state import RouterHAState, read_state_file
from kumonet.l3.plan import KeepalivedFiles, L3Settings, namespace_name
from kumonet.lab import agent as agent_mod
from kumonet.lab import external, probe
from kumonet.lab.command import CommandResult, all_of, in_netns, run, wait_until
from kumonet.lab.dhclient import DhclientFiles, DhcpLease, obtain_lease, write_script
from kumonet.lab.errors import LabError, LabNotFound
from kumonet.lab.failure import (
    MANAGEMENT_TABLE,
    Failure,
    FailureKind,
    claim_failure,
    clear_failure,
    failure_kind,
    host_pids,
    keepalived_pids,
    kill_at_once,
    management_cut_rules,
    read_failure,
    write_failure,
)
from kumonet.lab.layout import (
    DEFAULT_PREFIX,
    DEFAULT_ROOT,
    LabLayout,
    check_vm_name,
    host_name,
    tap_name,
)
from kumonet.lab.neutron import DEFAULT_SERVER, NeutronClient, PortInfo
from kumonet.lab.outage import DEFAULT_INTERVAL, ECHO_PORT, EchoServer, Pinger, TcpStream
from kumonet.lab.ovs import HostOVS
from kumonet.lab.process import (
    find_by_marker,
    netns_list,
    owned_pid,
    start_detached,
    stop_pids,
)
from kumonet.lab.state import HostRecord, LabState, VmRecord, write_json_atomically
from kumonet.lab.status import ExternalStatus, HostStatus, LabStatus, ProcessStatus, VmStatus
from kumonet.lab.teardown import (
    TeardownReport,
    delete_netns,
    netns_pids,
    release_port,
    teardown,
)

log = logging.getLogger(__name__)

VM_ARP_RETRANS_MS = 100


def _loopback_targets(server_urls: Sequence[str]) -> list[tuple[str, int]]:
    """Servers on the machine's loopback, which agents reach through the relay."""
    targets = []
    for url in server_urls:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host == "localhost":
            host = "127.0.0.1"
        if host.startswith("127."):
            port = parts.port or (443 if parts.scheme == "https" else 80)
            targets.append((host, port))
    return targets


class Lab:
    def __init__(self, layout: LabLayout, state: LabState) -> None:
        self.layout = layout
        self.state = state

    # construction ----------------------------------------------------------
    @classmethod
    def load(cls, prefix: str = DEFAULT_PREFIX, *, root: Path = DEFAULT_ROOT) -> Lab:
        layout = LabLayout(prefix, root)
        try:
            data = json.loads(layout.state_file.read_text())
        except FileNotFoundError:
            raise LabNotFound(
                f"no lab {prefix!r} is up ({layout.state_file} missing);"
                f" start one with `kumonet lab up --prefix {prefix}`"
            ) from None
        return cls(layout, LabState.from_json(data))

    @classmethod
    async def up(
        cls,
        hosts: int,
        *,
        l3_hosts: int = 0,
        prefix: str = DEFAULT_PREFIX,
        root: Path = DEFAULT_ROOT,
        server_urls: Sequence[str] = (),
        agents: bool = True,
        underlay_mtu: int = 1500,
        tunnel_types: Sequence[str] = ("vxlan",),
        cleanup_on_failure: bool = True,
        agent_command: Sequence[str] | None = None,
        report_interval: float | None = None,
    ) -> Lab:
        """Create hosts ``host1..hostN``, the underlay, and (when asked and
        available) one agent per host. ``host1..host<l3_hosts>`` are L3 hosts:
        br-ex on the external network shared with the upstream namespace
        (203.0.113.1/24), the agent's L3 role on. On failure the half-built
        lab is torn down (unless ``cleanup_on_failure`` is false) and the
        error re-raised. ``agent_command`` replaces ``kumonet-agent``
        (``--config FILE`` is appended), e.g. to run another build or a
        stand-in in tests; ``report_interval`` goes into the agents' config
        (``[agent] report_interval``)."""
        layout = LabLayout(prefix, root)
        if not 1 <= hosts <= 99:
            raise LabError(f"--hosts must be 1..99, not {hosts}")
        if not 0 <= l3_hosts <= hosts:
            raise LabError(f"--l3-hosts must be 0..{hosts} (the hosts), not {l3_hosts}")
        # Creating the run directory claims the prefix: of two concurrent
        # `up`s the loser stops here and never tears down the winner's lab.
        layout.root.mkdir(parents=True, exist_ok=True)
        try:
            layout.run_dir.mkdir()
        except FileExistsError:
            raise LabError(
                f"lab {prefix!r} exists ({layout.run_dir});"
                f" run `kumonet lab down --prefix {prefix}`"
            ) from None
        stale = [ns for ns in await netns_list() if ns.startswith(layout.netns_prefix)]
        if stale:
            layout.run_dir.rmdir()
            raise LabError(
                f"namespaces of lab {prefix!r} are left over ({', '.join(stale)});"
                f" run `kumonet lab down --prefix {prefix}`"
            )
        names = [host_name(i) for i in range(1, hosts + 1)]
        if agents and not server_urls:
            server_urls = (DEFAULT_SERVER,)
        state = LabState(
            prefix=prefix,
            hosts=tuple(
                HostRecord(
                    name=name,
                    netns=layout.host_netns(name),
                    dir=str(layout.host_dir(name)),
                    underlay_ip=layout.underlay_ip(name),
                    l3=index <= l3_hosts,
                )
                for index, name in enumerate(names, start=1)
            ),
            server_urls=tuple(server_urls),
            agents=False,
            underlay_mtu=underlay_mtu,
            tunnel_types=tuple(tunnel_types),
            agent_command=tuple(agent_command) if agent_command is not None else None,
            report_interval=report_interval,
        )
        lab = cls(layout, state)
        try:
            layout.vms_dir.mkdir()
            write_script(layout.run_dir / "dhclient-script")
            await lab._create_underlay()
            if state.external:
                await external.create_segment(layout)
            await all_of(*(lab._create_host(host) for host in state.hosts))
            if agents:
                started = await lab._start_agents()
                lab.state = replace(lab.state, agents=started)
            write_json_atomically(layout.state_file, lab.state.to_json())
        except BaseException:
            if cleanup_on_failure:
                log.error("lab %s: up failed, tearing down what was built", prefix)
                with contextlib.suppress(Exception):
                    await cls.teardown(prefix, root=root)
            raise
        return lab

    # hosts -------------------------------------------------------------------
    @property
    def hosts(self) -> dict[str, HostRecord]:
        return {host.name: host for host in self.state.hosts}

    def host(self, name: str) -> HostRecord:
        try:
            return self.hosts[name]
        except KeyError:
            raise LabError(
                f"no host {name!r} in lab {self.layout.prefix!r} (hosts: {', '.join(self.hosts)})"
            ) from None

    def ovs(self, host: str) -> HostOVS:
        record = self.host(host)
        return HostOVS(record.netns, Path(record.dir))

    async def _create_underlay(self) -> None:
        ns = self.layout.underlay_netns
        bridge = self.layout.underlay_bridge
        await run(["ip", "netns", "add", ns])
        await run(["ip", "-n", ns, "link", "set", "lo", "up"])
        await run(
            ["ip", "-n", ns, "link", "add", bridge, "type", "bridge",
             "stp_state", "0", "forward_delay", "0"]
        )
        await run(["ip", "-n", ns, "link", "set", bridge, "up"])
        await run(
            ["ip", "-n", ns, "addr", "add",
             f"{self.layout.underlay_gateway}/{self.layout.underlay_prefixlen}", "dev", bridge]
        )

    async def _create_host(self, host: HostRecord) -> None:
        ns, ul_ns = host.netns, self.layout.underlay_netns
        ul_port, uplink = self.layout.underlay_port(host.name), self.layout.host_uplink
        mtu = str(self.state.underlay_mtu)
        ovs = self.ovs(host.name)
        await run(["ip", "netns", "add", ns])
        await run(["ip", "-n", ns, "link", "set", "lo", "up"])
        await ovs.start_ovsdb()
        await run(
            ["ip", "link", "add", ul_port, "netns", ul_ns, "mtu", mtu, "type", "veth",
             "peer", "name", uplink, "netns", ns, "mtu", mtu]
        )
        # TCP through the userspace datapath needs software checksums on the
        # veth ends (OVS forwards partial checksums as they are).
        await asyncio.gather(
            run(in_netns(ul_ns, ["ethtool", "-K", ul_port, "tx", "off"])),
            run(in_netns(ns, ["ethtool", "-K", uplink, "tx", "off"])),
        )
        await run(["ip", "-n", ul_ns, "link", "set", ul_port, "master",
                   self.layout.underlay_bridge, "up"])
        await run(["ip", "-n", ns, "link", "set", uplink, "up"])
        br_ex: list[str] = []
        if host.l3:
            await external.attach_host(self.layout, host)
            # The agent creates br-ex too (bridge_mappings) and makes it
            # secure with its own flows; made here, the physical side is
            # plugged whether or not an agent runs.
            br_ex = [
                "--", "add-br", "br-ex",
                "--", "set", "Bridge", "br-ex", "datapath_type=netdev",
                "other_config:disable-in-band=true",
                "--", "add-port", "br-ex", self.layout.host_external_link,
            ]
        # Everything in one transaction before ovs-vswitchd starts: it then
        # configures all bridges in its first pass.
        await ovs.vsctl(
            "--", "init",
            "--", "set", "Open_vSwitch", ".",
            f"external_ids:system-id={host.name}",
            f"external_ids:hostname={host.name}",
            "--", "add-br", "br-phy",
            "--", "set", "Bridge", "br-phy", "datapath_type=netdev",
            f"other_config:hwaddr={self.layout.br_phy_mac(host.name)}",
            "--", "add-port", "br-phy", uplink,
            "--", "add-br", "br-int",
            "--", "set", "Bridge", "br-int", "datapath_type=netdev", "fail_mode=secure",
            "other_config:disable-in-band=true",
            *br_ex,
            wait=False,
        )
        await self._start_vswitchd(host)
        log.info("%s up: netns %s underlay %s%s", host.name, ns, host.underlay_ip,
                 ", L3 (br-ex on the external network)" if host.l3 else "")

    async def _start_vswitchd(self, host: HostRecord) -> None:
        """ovs-vswitchd, then what lives only in the kernel and goes with it:
        the bridges' internal ports (taps of the userspace datapath) and the
        underlay address on br-phy. Also the restart after a host failure."""
        ns = host.netns
        await self.ovs(host.name).start_vswitchd()
        bridges = ["br-phy", "br-int", *(["br-ex"] if host.l3 else [])]
        for bridge in bridges:
            await self._wait_for_link(ns, bridge)
        await run(["ip", "-n", ns, "addr", "replace",
                   f"{host.underlay_ip}/{self.layout.underlay_prefixlen}", "dev", "br-phy"])
        for bridge in bridges:
            await run(["ip", "-n", ns, "link", "set", bridge, "up"])

    async def start_relay(self) -> int | None:
        """Start the relay that makes loopback servers reachable from inside
        the host namespaces (see ``kumonet.lab.relay``); its pid, or None when
        no server is on loopback. ``up`` calls it when it starts agents."""
        targets = _loopback_targets(self.state.server_urls)
        if not targets:
            return None
        self.layout.relay_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "kumonet.lab.relay", "--run-dir", self._marker]
        for host in self.state.hosts:
            argv += ["--netns", host.netns]
        for address, port in targets:
            argv += ["--forward", f"{address}:{port}"]
        pid = await start_detached(
            argv,
            pidfile=self.layout.relay_dir / "relay.pid",
            logfile=self.layout.relay_dir / "relay.log",
        )
        await wait_until(
            (self.layout.relay_dir / "ready").exists,
            f"the relay did not start (see {self.layout.relay_dir / 'relay.log'})",
        )
        return pid

    async def wait_for_agents(self, *, time_limit: float = 30.0) -> None:
        """Wait until the server lists an alive agent for every host (the
        agents registered through the relay), so a test does not race them."""
        client = NeutronClient(self._server(None))
        hosts = set(self.hosts)
        missing = hosts
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while True:
            try:
                agents = await client.list_agents()
                missing = hosts - {a.get("host") for a in agents if a.get("alive")}
            except LabError:
                missing = hosts
            if not missing:
                return
            if loop.time() > deadline:
                raise LabError(
                    f"no alive agent for {', '.join(sorted(missing))} after {time_limit:g} s"
                    f" (see {self.layout.run_dir}/hosts/*/agent.log)"
                )
            await asyncio.sleep(0.2)

    @staticmethod
    async def _wait_for_link(ns: str, name: str, time_limit: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit
        while not (await run(["ip", "-n", ns, "link", "show", name], check=False)).ok:
            if loop.time() > deadline:
                raise LabError(f"{name} did not appear in {ns} within {time_limit:g} s")
            await asyncio.sleep(0.02)

    # agents ------------------------------------------------------------------
    @property
    def _marker(self) -> str:
        # Every lab process names a file below the run directory.
        return f"{self.layout.run_dir}/"

    async def _start_agents(self) -> bool:
        command = self.state.agent_command
        if command is None and not agent_mod.agent_available():
            log.warning(
                "kumonet-agent is not available yet (%s missing): hosts are up"
                " without agents", agent_mod.AGENT_MODULE,
            )
            return False
        urls = self.state.server_urls
        await self.start_relay()
        for host in self.state.hosts:
            config = agent_mod.AgentConfig(
                host=host.name,
                server_urls=urls,
                host_dir=Path(host.dir),
                local_ip=host.underlay_ip,
                tunnel_types=self.state.tunnel_types,
                bridge_mappings=(
                    ((self.layout.external_physnet, self.layout.external_ovs_bridge),)
                    if host.l3 else ()
                ),
                l3=host.l3,
                router_namespace_prefix=self.layout.router_netns_prefix(host.name),
                report_interval=self.state.report_interval,
            )
            (Path(host.dir) / "agent.ini").write_text(config.render())
            (Path(host.dir) / "agent").mkdir(exist_ok=True)
            await self._start_agent(host)
        return True

    async def _start_agent(self, host: HostRecord) -> int:
        config_file = Path(host.dir) / "agent.ini"
        pid = await start_detached(
            agent_mod.in_host_netns(
                host.netns, agent_mod.agent_argv(config_file, self.state.agent_command)),
            pidfile=Path(host.dir) / "agent.pid",
            logfile=Path(host.dir) / "agent.log",
            env=self.ovs(host.name).env,
        )
        log.info("%s: kumonet-agent started (%s)", host.name, config_file)
        return pid

    # external network and outage probes ---------------------------------------
    def _external_netns(self) -> str:
        if not self.state.external:
            raise LabError(
                f"lab {self.layout.prefix!r} has no external network"
                " (bring it up with `kumonet lab up --l3-hosts M`)"
            )
        return self.layout.external_netns

    async def external_exec(
        self, argv: Sequence[str], *, check: bool = True, time_limit: float = 60.0
    ) -> CommandResult:
        """Run ``argv`` in the upstream namespace (203.0.113.1/24)."""
        return await run(in_netns(self._external_netns(), argv), check=check,
                         time_limit=time_limit)

    async def external_ping(
        self, address: str, *, attempts: int = 10, wait: float = 1.0
    ) -> bool:
        """True as soon as one echo from the upstream namespace is answered."""
        return await probe.ping(self._external_netns(), address, attempts=attempts, wait=wait)

    def external_pinger(self, address: str, *, interval: float = DEFAULT_INTERVAL) -> Pinger:
        """A background ping train from the upstream namespace (not started:
        ``async with lab.external_pinger(fip) as pinger``)."""
        return Pinger(self._external_netns(), address, interval=interval)

    def echo_server(self, vm: str, *, port: int = ECHO_PORT) -> EchoServer:
        """A TCP echo server in a VM (not started: ``async with``)."""
        return EchoServer(self.vm(vm).netns, port=port)

    def external_echo_server(self, *, port: int = ECHO_PORT) -> EchoServer:
        """A TCP echo server in the upstream namespace, for connections from
        VMs going out through SNAT (not started: ``async with``)."""
        return EchoServer(self._external_netns(), port=port)

    def vm_pinger(self, vm: str, address: str, *, interval: float = DEFAULT_INTERVAL) -> Pinger:
        """A background ping train from a VM (not started: ``async with``)."""
        return Pinger(self.vm(vm).netns, address, interval=interval)

    def vm_tcp_stream(
        self, vm: str, address: str, port: int = ECHO_PORT, *,
        interval: float = DEFAULT_INTERVAL, stall_limit: float = 20.0,
    ) -> TcpStream:
        """A long-lived TCP connection from a VM (e.g. out through SNAT to
        ``external_echo_server``), not started: ``async with``."""
        return TcpStream(self.vm(vm).netns, address, port, interval=interval,
                         stall_limit=stall_limit)

    def external_tcp_stream(
        self, address: str, port: int = ECHO_PORT, *, interval: float = DEFAULT_INTERVAL,
        stall_limit: float = 20.0,
    ) -> TcpStream:
        """A long-lived TCP connection from the upstream namespace to an echo
        server (through a floating IP), a line every ``interval`` (not
        started: ``async with``)."""
        return TcpStream(self._external_netns(), address, port, interval=interval,
                         stall_limit=stall_limit)

    # routers on L3 hosts -----------------------------------------------------
    def router_netns(self, host: str, router_id: str) -> str:
        """The namespace of ``router_id`` on ``host``, as its L3 agent names it."""
        return namespace_name(router_id, self.layout.router_netns_prefix(self.host(host).name))

    async def router_exec(
        self, host: str, router_id: str, argv: Sequence[str], *, check: bool = True,
        time_limit: float = 60.0,
    ) -> CommandResult:
        """Run ``argv`` in the router's namespace on ``host`` (``ip addr``,
        ``nft list ruleset``, ``conntrack -L`` ...)."""
        return await run(in_netns(self.router_netns(host, router_id), argv), check=check,
                         time_limit=time_limit)

    def router_states(self, router_id: str) -> dict[str, RouterHAState]:
        """The HA state each L3 host's keepalived last reported for the router
        (the state file under the agent's state path; hosts without one are
        left out). A killed keepalived reports nothing more: after an
        ``agent`` or ``host`` failure the failed host's entry is stale."""
        states = {}
        for host in self.state.hosts:
            if not host.l3:
                continue
            settings = L3Settings(state_path=Path(host.dir) / "agent")
            state = read_state_file(KeepalivedFiles(settings.router_dir(router_id)))
            if state is not None:
                states[host.name] = state
        return states

    # failure injection -------------------------------------------------------
    async def _host_namespaces(self, host: HostRecord) -> list[str]:
        """The host's namespace and its router namespaces."""
        routers = self.layout.router_netns_prefix(host.name)
        return [host.netns, *(ns for ns in await netns_list() if ns.startswith(routers))]

    def failure(self, host: str) -> Failure | None:
        return read_failure(Path(self.host(host).dir))

    def failures(self) -> dict[str, Failure]:
        """The hosts that are failed now, with how."""
        return {
            host.name: failure for host in self.state.hosts
            if (failure := read_failure(Path(host.dir))) is not None
        }

    async def fail_host(
        self, host: str, how: str | FailureKind, *, management: bool = False
    ) -> Failure:
        """Inject a failure (``agent``, ``link``, ``management`` or ``host``;
        see ``kumonet.lab.failure``); LabError if the host has failed already.
        ``management`` (links only): the agent loses the servers too."""
        record = self.host(host)
        kind = failure_kind(how)
        if management and kind is not FailureKind.LINK:
            raise LabError("only a link failure can cut the management network too")
        management |= kind is FailureKind.MANAGEMENT
        host_dir = Path(record.dir)
        links = tuple(external.host_links(self.layout, record)) \
            if kind is FailureKind.LINK else ()
        # recorded before anything is done: a failure that stops halfway is
        # still undone completely by recover
        failure = Failure(host, kind, time.time(), links=links, management=management)
        claim_failure(host_dir, failure)
        namespaces = await self._host_namespaces(record)
        if kind in (FailureKind.LINK, FailureKind.MANAGEMENT):
            if management:
                servers = _loopback_targets(self.state.server_urls)
                if servers:
                    await run(in_netns(record.netns, ["nft", "-f", "-"]),
                              stdin=management_cut_rules(servers))
            for ns, name in links:
                await run(["ip", "-n", ns, "link", "set", "dev", name, "down"])
        else:
            if kind is FailureKind.AGENT:
                agent = owned_pid(host_dir / "agent.pid", self._marker)
                # and whatever else the agent runs from its state path
                helpers = find_by_marker(f"{host_dir / 'agent'}/")
                pids = [*keepalived_pids(host_dir, namespaces), *helpers,
                        *([agent] if agent is not None else [])]
            else:
                pids = host_pids(host_dir, namespaces)
            failure = Failure(host, kind, failure.at, killed=tuple(await kill_at_once(pids)))
        write_failure(host_dir, failure)
        log.info("%s: failed (%s) at %.3f", host, kind.value, failure.at)
        return failure

    async def recover_host(self, host: str) -> Failure:
        """Undo the host's failure: links up, or OVS and the agent started
        again. Returns the failure undone; LabError if there is none."""
        record = self.host(host)
        host_dir = Path(record.dir)
        failure = read_failure(host_dir)
        if failure is None:
            raise LabError(f"{host} has not failed (nothing to recover)")
        if failure.how in (FailureKind.LINK, FailureKind.MANAGEMENT):
            for ns, name in failure.links:
                await run(["ip", "-n", ns, "link", "set", "dev", name, "up"])
            if failure.management:
                # absent when the lab has no relayed server: nothing was cut
                await run(in_netns(record.netns, ["nft", "delete", "table", "inet",
                                                  MANAGEMENT_TABLE]), check=False)
        else:
            if failure.how is FailureKind.HOST:
                ovs = self.ovs(host)
                if owned_pid(ovs.ovsdb_pidfile, self._marker) is None:
                    await ovs.start_ovsdb()
                if owned_pid(ovs.vswitchd_pidfile, self._marker) is None:
                    await self._start_vswitchd(record)
            if self.state.agents and owned_pid(host_dir / "agent.pid", self._marker) is None:
                await self._start_agent(record)
        clear_failure(host_dir)
        log.info("%s: recovered from %s", host, failure.how.value)
        return failure


    # VMs ---------------------------------------------------------------------
    def vms(self) -> dict[str, VmRecord]:
        found = {}
        for path in sorted(self.layout.vms_dir.glob("*/vm.json")):
            record = VmRecord.from_json(json.loads(path.read_text()))
            found[record.name] = record
        return found

    def vm(self, name: str) -> VmRecord:
        path = self.layout.vm_dir(name) / "vm.json"
        try:
            return VmRecord.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            raise LabError(f"no VM {name!r} in lab {self.layout.prefix!r}") from None

    def _server(self, server_url: str | None) -> str:
        if server_url:
            return server_url
        if self.state.server_urls:
            return self.state.server_urls[0]
        return DEFAULT_SERVER

    async def add_vm(
        self,
        name: str,
        host: str,
        *,
        network: str | None = None,
        port: str | None = None,
        server_url: str | None = None,
        port_id: str | None = None,
        mac: str | None = None,
        mtu: int | None = None,
    ) -> VmRecord:
        """Boot a VM on ``host``, as ``nova boot --nic net-id=NETWORK`` (the
        port is created through the API) or ``--nic port-id=PORT`` (the given
        port is bound to the host). Without the API (unit plumbing tests),
        give ``port_id`` and ``mac`` instead. ``mtu`` sets the VM's eth0 MTU
        (a real VM learns it by DHCP); the OVS-side tap always gets the
        network's MTU as os-vif sets it."""
        check_vm_name(name)
        host_record = self.host(host)
        if sum(x is not None for x in (network, port, port_id)) != 1:
            raise LabError("give exactly one of network, port, or port_id (with mac)")
        if port_id is not None and mac is None:
            raise LabError("port_id needs mac")
        vm_dir = self.layout.vm_dir(name)
        try:
            vm_dir.mkdir()  # claims the name, also against a concurrent `vm add`
        except FileExistsError:
            raise LabError(f"VM {name!r} exists in lab {self.layout.prefix!r}") from None
        recorded = False
        acquired: VmRecord | None = None
        try:
            device_id = str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"kumonet-lab:{self.layout.prefix}:{name}")
            )
            url: str | None = None
            network_mtu: int | None = None
            created = False
            info: PortInfo
            if network is not None or port is not None:
                url = self._server(server_url)
                client = NeutronClient(url)
                if network is not None:
                    net = await client.find_network(network)
                    network_mtu = int(net["mtu"]) if net.get("mtu") else None
                    info = await client.create_port(
                        net["id"], name=name, host=host, device_id=device_id
                    )
                    created = True
                else:
                    assert port is not None
                    info = await client.bind_port(port, host=host, device_id=device_id)
                    network_mtu = await client.network_mtu(info.network_id)
            else:
                assert port_id is not None and mac is not None
                info = PortInfo(id=port_id, mac=mac, network_id="", fixed_ips=())
            record = VmRecord(
                name=name,
                host=host,
                netns=self.layout.vm_netns(name),
                port_id=info.id,
                mac=info.mac,
                tap=tap_name(info.id),
                network_id=info.network_id or None,
                server_url=url,
                created_port=created,
                mtu=mtu,
                extra={"device_id": device_id, "fixed_ips": ",".join(info.fixed_ips)},
            )
            acquired = record
            clash = [vm.name for vm in self.vms().values()
                     if vm.host == host and vm.tap == record.tap]
            if clash:
                raise LabError(f"port {info.id} would get tap {record.tap}, used by {clash[0]}")
            # Recorded before plugging so del/down find a half-plugged VM and its port.
            write_json_atomically(vm_dir / "vm.json", record.to_json())
            recorded = True
            await self._plug(record, host_record, network_mtu)
        except BaseException:
            if recorded:
                with contextlib.suppress(Exception):
                    await self.del_vm(name)
            else:
                if acquired is not None:
                    await release_port(acquired)
                shutil.rmtree(vm_dir, ignore_errors=True)
            raise
        return record

    async def _plug(self, vm: VmRecord, host: HostRecord, network_mtu: int | None) -> None:
        """Plug the VM as Nova with os-vif's OVS plugin does: a tap on br-int
        carrying the Neutron port id, MAC and status in external_ids."""
        ns = vm.netns
        await run(["ip", "netns", "add", ns])
        await run(["ip", "-n", ns, "link", "set", "lo", "up"])
        await run(
            ["ip", "link", "add", vm.tap, "netns", host.netns, "type", "veth",
             "peer", "name", "eth0", "netns", ns]
        )
        await run(["ip", "-n", ns, "link", "set", "eth0", "address", vm.mac])
        if vm.mtu:
            await run(["ip", "-n", ns, "link", "set", "eth0", "mtu", str(vm.mtu)])
        if network_mtu:
            await run(["ip", "-n", host.netns, "link", "set", vm.tap, "mtu", str(network_mtu)])
        await asyncio.gather(
            run(in_netns(ns, ["ethtool", "-K", "eth0", "tx", "off"])),
            run(in_netns(host.netns, ["ethtool", "-K", vm.tap, "tx", "off"])),
            # the default 1 s ARP retransmit rounds every first ping up to a second
            run(in_netns(ns, ["sysctl", "-qw",
                              f"net.ipv4.neigh.eth0.retrans_time_ms={VM_ARP_RETRANS_MS}"])),
        )
        await run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        await run(["ip", "-n", host.netns, "link", "set", vm.tap, "up"])
        await self.ovs(host.name).vsctl(
            "--", "--may-exist", "add-port", "br-int", vm.tap,
            "--", "set", "Interface", vm.tap,
            f"external_ids:iface-id={vm.port_id}",
            f"external_ids:attached-mac={vm.mac}",
            "external_ids:iface-status=active",
            f"external_ids:vm-uuid={vm.extra.get('device_id', '')}",
        )

    async def del_vm(self, name: str) -> None:
        vm = self.vm(name)
        vm_dir = self.layout.vm_dir(name)
        await self._stop_dhclient(vm_dir)
        if vm.host in self.hosts and _is_socket(Path(self.host(vm.host).dir, "db.sock")):
            with contextlib.suppress(LabError):
                await self.ovs(vm.host).vsctl("--if-exists", "del-port", "br-int", vm.tap)
        # a process left inside (a test's server, a `vm exec`) would keep the
        # namespace and its veth alive after `ip netns del`
        await stop_pids(await netns_pids(vm.netns))
        await delete_netns([vm.netns])
        await release_port(vm)
        shutil.rmtree(vm_dir, ignore_errors=True)

    async def _stop_dhclient(self, vm_dir: Path) -> None:
        pid = owned_pid(vm_dir / "dhclient.pid", self._marker)
        if pid is not None:
            await stop_pids([pid])

    async def vm_dhcp(self, name: str, *, time_limit: int = 15) -> DhcpLease:
        """Run ISC dhclient in the VM until it has a lease (it then keeps
        running to renew); LabError if none came within ``time_limit`` s."""
        vm = self.vm(name)
        vm_dir = self.layout.vm_dir(name)
        await self._stop_dhclient(vm_dir)
        return await obtain_lease(
            vm.netns, DhclientFiles(vm_dir), self.layout.run_dir / "dhclient-script",
            time_limit=time_limit,
        )

    async def vm_exec(
        self, name: str, argv: Sequence[str], *, check: bool = True, time_limit: float = 60.0
    ) -> CommandResult:
        return await run(in_netns(self.vm(name).netns, argv), check=check, time_limit=time_limit)

    async def host_exec(
        self, host: str, argv: Sequence[str], *, check: bool = True, time_limit: float = 60.0
    ) -> CommandResult:
        """Run in the host's namespace with ``OVS_RUNDIR`` pointing at its OVS,
        so plain ``ovs-vsctl show`` or ``ovs-ofctl dump-flows br-int`` work."""
        record = self.host(host)
        return await run(
            in_netns(record.netns, argv), check=check, time_limit=time_limit, env=self.ovs(host).env
        )

    # probes ------------------------------------------------------------------
    async def ping(self, vm: str, address: str, *, attempts: int = 10, wait: float = 1.0) -> bool:
        return await probe.ping(self.vm(vm).netns, address, attempts=attempts, wait=wait)

    async def tcp_check(
        self, client_vm: str, server_vm: str, address: str, *, port: int = 5201,
        size: int = 200_000, time_limit: float = 10.0,
    ) -> bool:
        return await probe.tcp_exchange(
            self.vm(client_vm).netns, self.vm(server_vm).netns, address,
            port=port, size=size, time_limit=time_limit,
        )

    async def dump_flows(self, host: str, bridge: str = "br-int") -> list[str]:
        return await self.ovs(host).dump_flows(bridge)

    async def vm_addresses(self, name: str) -> list[str]:
        vm = self.vm(name)
        result = await run(["ip", "-n", vm.netns, "-4", "-o", "addr", "show", "dev", "eth0"],
                           check=False)
        return [line.split()[3] for line in result.stdout.splitlines() if " inet " in line]

    # status and teardown -----------------------------------------------------
    async def status(self) -> LabStatus:
        namespaces = set(await netns_list())
        hosts = []
        for host in self.state.hosts:
            d = Path(host.dir)
            procs = [
                ProcessStatus(name, owned_pid(d / pidfile, self._marker))
                for name, pidfile in (
                    ("ovsdb-server", "ovsdb-server.pid"),
                    ("ovs-vswitchd", "ovs-vswitchd.pid"),
                )
            ]
            if self.state.agents:
                procs.append(ProcessStatus("kumonet-agent", owned_pid(d / "agent.pid",
                                                                      self._marker)))
            failure = read_failure(d)
            host_namespaces = [ns for ns in await self._host_namespaces(host)
                               if ns in namespaces]
            hosts.append(HostStatus(
                host.name, host.netns, host.netns in namespaces, host.underlay_ip,
                tuple(procs), host.l3,
                failure.how.value if failure else None, failure.at if failure else None,
                tuple(ns for ns in host_namespaces if ns != host.netns),
                tuple(keepalived_pids(d, host_namespaces)),
            ))
        vms = []
        for vm in self.vms().values():
            addresses = tuple(await self.vm_addresses(vm.name)) if vm.netns in namespaces else ()
            vms.append(VmStatus(
                vm.name, vm.host, vm.netns in namespaces, vm.mac, vm.port_id, addresses,
                owned_pid(self.layout.vm_dir(vm.name) / "dhclient.pid", self._marker),
                tuple(ip for ip in vm.extra.get("fixed_ips", "").split(",") if ip),
            ))
        relay = None
        if (self.layout.relay_dir / "relay.pid").exists():
            relay = ProcessStatus("relay", owned_pid(self.layout.relay_dir / "relay.pid",
                                                     self._marker))
        ext = None
        if self.state.external:
            ext = ExternalStatus(
                self.layout.external_netns, self.layout.external_netns in namespaces,
                f"{self.layout.external_ip}/{self.layout.external_prefixlen}",
            )
        return LabStatus(self.layout.prefix, self.layout.run_dir, self.state.server_urls,
                         relay, tuple(hosts), tuple(vms), ext)

    async def down(self) -> TeardownReport:
        return await self.teardown(self.layout.prefix, root=self.layout.root)

    @classmethod
    async def teardown(
        cls, prefix: str = DEFAULT_PREFIX, *, root: Path = DEFAULT_ROOT,
        keep_logs: Path | None = None,
    ) -> TeardownReport:
        """Remove everything of lab ``prefix``, with or without its state:
        the API ports its VMs created, processes (pid files, then a scan for
        any process naming the run directory, then whatever still runs in the
        lab's namespaces), namespaces by prefix, stray interfaces by prefix,
        and the run directory. Safe to repeat. With ``keep_logs``, the logs
        (OVS, agents, relay, dhclient) are first copied below that directory."""
        return await teardown(LabLayout(prefix, root), keep_logs=keep_logs)


def _is_socket(path: Path) -> bool:
    return path.is_socket()


__all__ = [
    "ExternalStatus",
    "Failure",
    "FailureKind",
    "HostStatus",
    "Lab",
    "LabStatus",
    "ProcessStatus",
    "TeardownReport",
    "VmStatus",
]
