"""The L3 host side: routers as Linux namespaces, NAT, and keepalived VRRP for HA.

A library the agent calls on L3 hosts (it imports nothing of the API, the store or
the lab). The pieces, from pure to I/O:

- ``intent``: ``RouterIntent`` (a router as this host sees it) and
  ``router_from_neutron`` (Neutron v2.0 JSON → intent);
- ``plan``: ``plan_router`` (intent → ``RouterPlan``: names, addresses, routes,
  sysctls, the nftables ruleset, keepalived.conf), pure;
- ``namespace``, ``interface`` (veth pairs onto br-int), ``keepalived``,
  ``ha_state`` (the notify FIFO), ``garp``: the shell;
- ``router``: ``L3Host``, which applies plans idempotently and reports VRRP
  transitions.

Wiring in the agent (one ``L3Host`` per agent; the callback must not block, so it
queues the report and a task sends ``PUT /v1/agent/routers/{id}/ha_state``)::

    settings = L3Settings(state_path=Path("/var/lib/kumonet"))
    driver = OvsVethDriver(ovsdb="unix:/run/openvswitch/db.sock", bridge="br-int")
    reports: asyncio.Queue[tuple[str, RouterHAState]] = asyncio.Queue()
    async with L3Host(settings, driver,
                      on_ha_state=lambda rid, s: reports.put_nowait((rid, s))) as l3:
        intents = [router_from_neutron(r, ports, subnets, host=HOST, floatingips=fips,
                                       networks=nets) for r in routers_for_this_host]
        await l3.reconcile(intents)   # at start: cleans routers no longer wanted
        ...                           # then l3.apply(intent) / l3.remove(router_id)
"""
