"""HAProxy (the Debian package) in front of 3 servers with the shipped
``etc/haproxy.cfg``: round robin over every member, and when one member
stops, requests keep succeeding through HAProxy."""

from __future__ import annotations

from tests.cluster.etcd_cluster import running_cluster
from tests.cluster.servers import (
    REPO,
    Client,
    haproxy_config,
    restconf_network_names,
    running_haproxy,
    running_servers,
)


def test_shipped_config_is_adapted_to_loopback() -> None:
    shipped = (REPO / "etc" / "haproxy.cfg").read_text()
    config = haproxy_config(shipped, 19696, [("a", 1), ("b", 2)])
    assert "bind 127.0.0.1:19696" in config and config.count("bind ") == 1
    assert "server a 127.0.0.1:1 check" in config and "server b 127.0.0.1:2 check" in config
    assert "balance roundrobin" in config and "option httpchk GET /" in config
    assert "192.0.2." not in config


def test_requests_keep_succeeding_when_a_server_stops() -> None:
    with running_cluster(3, prefix="kumonet-haproxy-etcd-") as etcd, \
            running_servers(etcd.url, 3, prefix="kumonet-haproxy-srv-") as servers, \
            running_haproxy([(s.name, s.port) for s in servers.members]) as haproxy:
        front = Client(haproxy.url)
        statuses = [front.create_network(f"before-{i}").status for i in range(6)]
        assert statuses == [201] * 6
        # One store behind every member: each one shows them all.
        for server in servers.members:
            assert restconf_network_names(Client(server.url).restconf()) >= \
                {f"before-{i}" for i in range(6)}

        servers.members[1].stop()
        answers = [front.create_network(f"after-{i}") for i in range(12)]
        reads = [front.call("GET", "/v2.0/networks") for _ in range(6)]
        assert [a.status for a in answers] == [201] * 12, answers
        assert [r.status for r in reads] == [200] * 6
        names = {n["name"] for n in reads[-1].body["networks"]}
        assert names >= {f"after-{i}" for i in range(12)}
        # Each create made exactly one network (no retried duplicate).
        listed = [n["name"] for n in reads[-1].body["networks"]]
        assert len(listed) == len(set(listed)) == 18
