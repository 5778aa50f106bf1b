"""``kumonet-server --shards FILE``: the Neutron subtree on its own etcd
cluster, everything else on the default shard's, as seed 000's
module-shards.conf splits the datastore."""

from __future__ import annotations

import asyncio

from kumonet.store.etcd import EtcdStore
from tests.cluster.etcd_cluster import running_cluster
from tests.cluster.servers import Client, restconf_network_names, running_servers


async def keys_under(url: str, prefix: str) -> set[str]:
    store = await EtcdStore.open(url)
    try:
        return {kv.key for kv in (await store.range(prefix)).kvs}
    finally:
        await store.close()


def test_neutron_shard_on_its_own_cluster() -> None:
    with running_cluster(1, prefix="kumonet-shard-default-") as default, \
            running_cluster(1, prefix="kumonet-shard-neutron-") as neutron:
        shards = (f"[shard default]\nstore = {default.url}\nreplicas = member-1\n"
                  f"[shard neutron]\nstore = {neutron.url}\nreplicas = member-n1\n")
        with running_servers(None, 1, shards=shards, prefix="kumonet-shard-srv-") as servers:
            client = Client(servers.urls[0])
            created = client.create_network("sharded")
            assert created.status == 201, created
            net_id = created.body["network"]["id"]
            registered = client.call("PUT", "/v1/agent/hosts/compute1", {
                "host": "compute1", "agent_types": ["Open vSwitch agent"],
                "tunnel_ip": "192.0.2.10", "tunnel_types": ["vxlan"]})
            assert registered.status == 200, registered
            assert restconf_network_names(client.restconf()) == {"sharded"}

            in_neutron = asyncio.run(keys_under(neutron.url, "/config/neutron/networks/"))
            in_default = asyncio.run(keys_under(default.url, "/config/neutron/"))
            assert f"/config/neutron/networks/{net_id}" in in_neutron
            assert in_default == set()
            assert "/operational/topology/hosts/compute1" in asyncio.run(
                keys_under(default.url, "/operational/topology/"))

            status = client.call("GET", "/v1/cluster/status")
            assert status.status == 200, status
            by_name = {s["name"]: s for s in status.body["shards"]}
            assert by_name["neutron"]["leader"] == "member-n1-shard-neutron-config"
            assert by_name["neutron"]["replicas"][0]["endpoint"] == neutron.endpoints[0]
            assert by_name["topology"]["shares_store_of"] == "default"
