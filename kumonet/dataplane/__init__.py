"""The pure dataplane: intent + host facts → the desired OVS state of one host.

Nothing here does I/O or reads a clock; the agent is the shell around it
(import-linter forbids imports of agent/store/api/lab).

Modules:

- `intent`   — frozen intent types (`Network`, `Subnet`, `Port`, `Host`,
  `SecurityGroup`, `SecurityGroupRule`, `Intent`), the host's `HostFacts`, and
  `from_neutron(networks, subnets, ports, hosts, security_groups)` from Neutron
  API JSON (`security_group_from_neutron` for one stored group).
- `pipeline` — the br-int OpenFlow pipeline declared once as data
  (`KUMONET_PIPELINE`): tables, their matches, next tables, miss actions,
  registers; `describe_pipeline()` renders it as Markdown.
- `flow`     — `Flow` values and actions; `Flow.render()` is the exact
  `ovs-ofctl -O OpenFlow15 --bundle add-flows` line, `Flow.cookie` a
  content-derived 64-bit cookie whose high 16 bits are `COOKIE_MARKER` (0x6b6e).
- `compiler` — `compile_host(intent, facts) -> HostPlan` (flows per bridge by
  cookie, tunnel ports, patch ports), `PlanCompiler` (same result, reuses
  per-port/per-network units between calls), `diff_flows(desired, installed)`.
- `security_group` — security groups as stateful conntrack ACLs (per-port
  zones, rules shared per host, remote groups as conjunctive matches).
- `oftable`  — an in-memory OpenFlow table model for tests (`OpenFlowTables`,
  with conjunctive matches and a toy `ConnectionTable`).
- `dhcp`     — `answer_dhcp(frame, intent, port_id)`: the DHCPv4 reply frame.

The agent's loop, in short::

    compiler = PlanCompiler()
    intent = from_neutron(networks, subnets, ports, hosts)       # from the server
    facts = HostFacts(host="h1", tunnel_ip="192.0.2.1", local_ofports=..., ...)
    plan = compiler.compile(intent, facts)
    # OVSDB: ensure plan.tunnel_ports and plan.patch_ports (then re-read ofports
    # into facts and recompile: flows towards a port appear once it has an ofport)
    for bridge in plan.flows:
        change = diff_flows(plan.bridge_flows(bridge), installed_kumonet_cookies(bridge))
        bundle(bridge, change.bundle_lines())   # one atomic ovs-ofctl --bundle
    # packet-in from a local port's DHCP client:
    reply = answer_dhcp(frame, intent, port_for_ofport(facts.local_ofports.items(), in_port))
"""
