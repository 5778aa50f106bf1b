"""The multi-host lab: a small cloud on one machine, for the demo and for
end-to-end tests.

What it builds (prefix ``kl`` by default; every name below carries it)::

    kl-ul       underlay namespace: Linux bridge kl-ulbr 192.0.2.254/24
      |  veth kl-ul-hN  <->  kl-ul (in the host, a port of br-phy)
    kl-hostN    one per host: its own ovsdb-server + ovs-vswitchd (userspace
                datapath, datapath_type=netdev) with every file in
                /run/kumonet-lab/kl/hosts/hostN/ (conf.db, db.sock,
                br-int.mgmt, ovs-vswitchd.ctl, pid files, logs);
                br-phy (netdev) holds the underlay address 192.0.2.N/24,
                br-int (netdev, fail_mode=secure) is the integration bridge;
                kumonet-agent --config hostN/agent.ini (when available)
    kl-vm-NAME  one per VM: eth0 (veth, the port's MAC) whose peer
                tap<port id[:11]> is a port of its host's br-int with
                external_ids iface-id / attached-mac / iface-status=active /
                vm-uuid, as Nova with os-vif plugs it

    with --l3-hosts M (host1..hostM are L3 hosts), the external network:
    kl-exsw     external switch: Linux bridge kl-exbr, no address (flat,
                Neutron physical network "external")
      |  veth kl-ex-hN  <->  kl-ex (in an L3 host, a port of its br-ex)
      |  veth kl-ex-up  <->  eth0 in kl-ext
    kl-ext      the upstream router: 203.0.113.1/24 on eth0 (as the seed)
    kl-hostN-qrouter-ID  router namespaces of hostN (the L3 agent's
                [kumonet] router_namespace_prefix = kl-hostN-)

An L3 host's br-ex (netdev) is made by the lab with the external veth
plugged; the agent (``[ovs] bridge_mappings = external:br-ex``) then takes it
over (fail_mode secure, its flows, the patch to br-int). Non-L3 hosts have
no br-ex. Agent config of an L3 host: ``[agent] l3_agent = true``,
``[agent] agent_mode = legacy``, ``[ovs] bridge_mappings = external:br-ex``,
``[kumonet] router_namespace_prefix = kl-hostN-`` (others: ``l3_agent =
false``); see ``kumonet.lab.agent``.

Commands (``kumonet lab --help``; every one takes ``--prefix P``)::

    kumonet lab up --hosts N [--l3-hosts M] [--server URL] [--no-agents]
                   [--agent-command CMD] [--report-interval S]
                   [--underlay-mtu M] [--keep-on-failure]
    kumonet lab vm add NAME --host HOST (--network NET | --port PORT) [--server URL]
    kumonet lab vm dhcp NAME [--timeout S]    # real ISC dhclient; prints the lease
    kumonet lab vm exec NAME -- CMD ...
    kumonet lab vm del NAME
    kumonet lab host exec HOST -- CMD ...     # OVS_RUNDIR set: plain ovs-vsctl works
    kumonet lab flows HOST [--bridge br-int]
    kumonet lab external exec -- CMD ...      # in kl-ext (203.0.113.1)
    kumonet lab external ping ADDR [--seconds S] [--interval 0.05]
    kumonet lab host fail HOST --how agent|link|host [--management]
    kumonet lab host recover HOST
    kumonet lab status [--json]
    kumonet lab down [--keep-logs DIR]

``vm add --network`` creates the port through the Neutron API exactly as
``nova boot --nic net-id=`` does (``POST /v2.0/ports`` with device_owner
``compute:nova``, device_id, ``binding:host_id``); ``--port`` binds a given
port (``PUT``). ``vm del`` / ``down`` delete the ports the lab created and
unbind the others. The tap gets the network's MTU (os-vif does that); the
VM's eth0 learns its MTU by DHCP, like a real guest (``--mtu`` sets it by
hand). The underlay MTU is 1500 by default, so VXLAN networks are 1450 as
Neutron computes them and a VM without the DHCP MTU breaks on full-size
TCP segments exactly as it would in a real cloud.

Python API (``kumonet.lab.lab.Lab``; coroutines, usable from any loop)::

    lab = await Lab.up(3, prefix="kl", server_urls=["http://127.0.0.1:9696"])
    lab = Lab.load("kl")                        # any later process
    await lab.wait_for_agents()                 # the server lists an alive agent per host
    vm = await lab.add_vm("vm1", "host1", network="net1")
    lease = await lab.vm_dhcp("vm1")            # DhcpLease(address, gateway, dns, mtu, ...)
    await lab.ping("vm1", "10.0.0.3")           # retries: first packet to a new tunnel is lost
    await lab.tcp_check("vm1", "vm2", "10.0.0.3")   # 200 kB, SHA-256 checked
    await lab.vm_exec("vm1", ["ip", "route"]); await lab.host_exec("host1", [...])
    await lab.dump_flows("host1")               # ovs-ofctl -O OpenFlow15 dump-flows br-int
    lab.ovs("host1").vsctl(...), .ofctl(...), .appctl(...)
    await lab.status(); await lab.del_vm("vm1"); await lab.down()
    await Lab.teardown("kl")                    # without state, after a crash

    lab = await Lab.up(3, l3_hosts=2, server_urls=[url])     # L3 hosts, external net
    await lab.external_exec(["ping", "-c1", fip]); await lab.external_ping(fip)
    async with lab.external_pinger(fip) as pinger, \
            lab.echo_server("vm1", port=5301), \
            lab.external_tcp_stream(fip, 5301) as stream:   # a line every 50 ms
        failure = await lab.fail_host("host1", "agent")      # or "link", "host"
        await pinger.wait_for_replies(20, after=failure.at)  # traffic is back
        assert not stream.broken
    pinger.report.outage, pinger.report.lost, pinger.report.gap  # seconds, count, Gap
    stream.report.outage, stream.report.broken, stream.report.error
    await lab.recover_host("host1"); lab.failures()         # {host: Failure}
    lab.router_states(router_id)        # {"host1": RouterHAState.ACTIVE, ...} (state files)
    lab.router_netns("host1", router_id); await lab.router_exec("host1", router_id, argv)

Failure injection (``kumonet.lab.failure``): ``agent`` SIGKILLs the agent,
the keepalived of the host's routers (found by their files under the agent's
state path and by their network namespace) and anything else running from
the state path, all stopped first so none reacts to another's death;
``link`` sets both ends of the host's underlay and external veths down
(``--management``: the agent's connections to the relayed servers are
dropped too); ``host`` SIGKILLs OVS, the agent, keepalived and every process
in the host's namespaces. ``recover`` restarts what was killed (OVS from its
database, with the bridges' addresses; the agent, which restarts its
keepalived) or sets the links up. ``status`` marks failed hosts; one failure
per host at a time (``<host dir>/failure.json``).

Outage measurement (``kumonet.lab.outage``): ``Pinger`` runs ``ping -D -O
-i 0.05`` and keeps every reply's arrival time; ``TcpStream`` (client of
``python -m kumonet.lab.echo``) sends a numbered line every 50 ms on one
connection and times each echo, and exits at once, reported ``broken``,
on a reset, an end of stream, a wrong echo or a stall (``stall_limit``, also
``TCP_USER_TIMEOUT``). The outage is the longest gap without replies (start
and stop count as edges) less one interval. By hand, in three terminals::

    kumonet lab vm exec vm1 -- .venv/bin/python -m kumonet.lab.echo serve 0.0.0.0 5301
    kumonet lab external exec -- .venv/bin/python -m kumonet.lab.echo talk FIP 5301   # ^C: JSON
    kumonet lab external ping FIP --seconds 30 &  kumonet lab host fail host1 --how link

Put the VMs of a failover test on a host that is not failed (a non-L3 host):
``host`` stops the whole host's OVS, and its VMs with it.

State: ``/run/kumonet-lab/<prefix>/lab.json`` (hosts, servers, options, written
once by ``up``) and ``vms/<name>/vm.json`` per VM, so concurrent ``vm add``
commands never rewrite one file.

Agents and the server ("the agents reach a server given on loopback"): each
agent runs inside its host's namespace, like on a real hypervisor — its OVS,
routes and later router namespaces, keepalived and failure injection are
"on the host". There 127.0.0.1 is the namespace's own loopback, so the lab
runs one relay process (``kumonet.lab.relay``) that listens on the server's
loopback address and port *inside every host namespace* and forwards to the
machine's loopback. Agents keep the exact URL the operator gave, the server
keeps listening on loopback, and nothing changes outside the lab's namespaces
(no address, route or veth in the machine's namespace to clean up after a
crash). The alternative — agents in the machine's namespace using the OVS
socket files — would work for OVSDB/OpenFlow but not for what the agent does
later inside the host (router namespaces, keepalived, its own address).
Agents start only when ``kumonet.agent.main`` exists; until then ``up`` says
so and brings the hosts up without them.

Cleanup: ``down`` works with or without state and is safe to repeat. It
deletes the API ports of its VMs (best effort), stops processes named in pid
files, then every process whose command line names the run directory (a
crashed ``up`` records nothing), then whatever still runs inside the lab's
namespaces; deletes the namespaces by prefix (their veths go with them),
interfaces named after the lab in the machine's namespace (the lab creates
none there; defensive), and the run directory. A failed ``up`` tears down
what it built unless ``--keep-on-failure``.

Traps handled (DESIGN.md): TX checksum offload off on both ends of every
veth (TCP breaks otherwise, ping does not); dhclient with its own ``-sf``
script (``kumonet.lab.dhclient_script``: configures only the VM namespace,
writes resolv.conf into the VM's lab directory), ``-cf``, pid and lease file
per VM; ``net.ipv4.neigh.eth0.retrans_time_ms=100`` in VMs; probes retry;
per-lab prefixes; ``--unixctl`` for a fixed ovs-vswitchd control socket.

Tests: ``tests/lab/conftest.py`` holds the fixtures (a session-scoped shared
``lab``, ``vms`` for per-test VMs on it, ``lab_factory`` for tests that need
their own lab, ``server`` for a real kumonet-server); its docstring says how
to reuse them. ``tests/lab/test_cloud.py`` is the whole stack on the lab
(server, real agents, DHCP, ping and TCP across VXLAN). ``l3_lab`` is a
shared lab with two L3 hosts and stand-in agents for failure tests.
"""
