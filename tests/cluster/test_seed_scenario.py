"""Seed 000's scenario on real processes: a 3-member etcd cluster and 3
kumonet-server members on loopback. net01 is read back through RESTCONF on
every member; the etcd leader stops; a new leader shows in
``/v1/cluster/status``; net02 is created through a surviving server; the
stopped member comes back and every server's RESTCONF shows both."""

from __future__ import annotations

import time

from tests.cluster.etcd_cluster import running_cluster
from tests.cluster.servers import Client, restconf_network_names, running_servers

GUARD = 30.0  # seconds; a guard against hanging, never an expectation


def status_leader(client: Client) -> str | None:
    """The leader the default shard's replicas agree on, as the API shows it."""
    answer = client.call("GET", "/v1/cluster/status")
    assert answer.status == 200, answer
    (shard,) = [s for s in answer.body["shards"] if s["name"] == "default"]
    leader: str | None = shard["leader"]
    return leader


def test_seed_000_scenario() -> None:
    with running_cluster(3, prefix="kumonet-seed000-") as etcd, \
            running_servers(etcd.url, 3, prefix="kumonet-seed000-srv-") as servers:
        clients = [Client(url) for url in servers.urls]
        created = clients[0].create_network("net01")
        assert created.status == 201, created
        net01 = created.body["network"]
        assert net01["provider:segmentation_id"] >= 1000
        for client in clients:
            answer = client.restconf()
            assert restconf_network_names(answer) == {"net01"}
            (item,) = answer.body["neutron"]["networks"]["network"]
            assert item["uuid"] == net01["id"]
            assert item["neutron-provider-ext:network-type"] == \
                "neutron-networks:network-type-vxlan"
            assert item["neutron-provider-ext:segmentation-id"] == \
                str(net01["provider:segmentation_id"])

        old_leader = etcd.leader()
        old_shard_leader = status_leader(clients[1])
        assert old_shard_leader is not None and old_shard_leader.startswith(old_leader)
        stopped = time.monotonic()
        etcd.stop(old_leader)
        new_leader = None
        while new_leader is None or new_leader == old_shard_leader:
            assert time.monotonic() - stopped < GUARD, "no new leader in the status"
            new_leader = status_leader(clients[1])
            time.sleep(0.05)
        elapsed = time.monotonic() - stopped
        print(f"\nnew leader {new_leader} in the status {elapsed:.2f} s after stopping "
              f"{old_leader} (seed: within 3 s)")

        answer = clients[2].create_network("net02")
        assert answer.status == 201, answer

        etcd.start(old_leader)
        etcd.wait_healthy()
        for client in clients:
            assert restconf_network_names(client.restconf()) == {"net01", "net02"}
        # The restarted member caught up: reading from it alone shows both too.
        (member,) = [m for m in etcd.members if m.name == old_leader]
        with running_servers(f"etcd://{member.endpoint}", 1,
                             prefix="kumonet-seed000-one-") as alone:
            assert restconf_network_names(Client(alone.urls[0]).restconf()) == \
                {"net01", "net02"}
