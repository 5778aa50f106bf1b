"""Filters, fields, sorting and pagination, through the HTTP API."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.api.conftest import Api

P1 = "11111111111111111111111111111111"


async def _nets(api: Api) -> list[dict[str, object]]:
    specs = [("b", True), ("a", False), ("c", True), ("a", True), ("d", False)]
    return [await api.create("networks", "network", project=P1, name=n, admin_state_up=up)
            for n, up in specs]


async def test_filters_repeated_values_are_or(api: Api) -> None:
    nets = await _nets(api)
    _, body = await api.call("GET", "/v2.0/networks?name=a&name=d", project=P1)
    assert sorted(n["name"] for n in body["networks"]) == ["a", "a", "d"]
    _, body = await api.call("GET", "/v2.0/networks?name=a&admin_state_up=false", project=P1)
    assert [n["id"] for n in body["networks"]] == [nets[1]["id"]]
    _, body = await api.call("GET", "/v2.0/networks?admin_state_up=True", project=P1)
    assert len(body["networks"]) == 3
    status, body = await api.call("GET", "/v2.0/networks?bogus=1", project=P1)
    assert status == 400 and body["NeutronError"]["type"] == "HTTPBadRequest"
    # members cannot filter on what they cannot see
    _, body = await api.call("GET", "/v2.0/networks?provider:network_type=vxlan", project=P1)
    assert body["networks"] == []
    _, body = await api.call("GET", "/v2.0/networks?provider:network_type=vxlan")
    assert len(body["networks"]) == 5


async def test_fields(api: Api) -> None:
    await _nets(api)
    _, body = await api.call("GET", "/v2.0/networks?fields=id&fields=name", project=P1)
    assert all(set(n) == {"id", "name"} for n in body["networks"])
    net = body["networks"][0]
    _, body = await api.call("GET", f"/v2.0/networks/{net['id']}?fields=name", project=P1)
    assert body == {"network": {"name": net["name"]}}


async def test_sorting(api: Api) -> None:
    nets = await _nets(api)
    _, body = await api.call("GET", "/v2.0/networks?sort_key=name&sort_dir=desc", project=P1)
    assert [n["name"] for n in body["networks"]] == ["d", "c", "b", "a", "a"]
    _, body = await api.call(
        "GET", "/v2.0/networks?sort_key=name&sort_dir=asc&sort_key=admin_state_up"
        "&sort_dir=desc", project=P1)
    assert [n["id"] for n in body["networks"]][:2] == [nets[3]["id"], nets[1]["id"]]
    status, _ = await api.call("GET", "/v2.0/networks?sort_key=name&sort_dir=up", project=P1)
    assert status == 400
    status, _ = await api.call("GET", "/v2.0/networks?sort_key=bogus&sort_dir=asc",
                               project=P1)
    assert status == 400


async def test_pagination_with_links(api: Api) -> None:
    await _nets(api)
    _, body = await api.call("GET", "/v2.0/networks?sort_key=name&sort_dir=asc",
                             project=P1)
    expected = [n["id"] for n in body["networks"]]
    seen: list[str] = []
    path = "/v2.0/networks?limit=2&sort_key=name&sort_dir=asc"
    pages = 0
    while path:
        status, body = await api.call("GET", path, project=P1)
        assert status == 200
        pages += 1
        seen += [n["id"] for n in body["networks"]]
        links = {link["rel"]: link["href"] for link in body.get("networks_links", [])}
        if pages > 1:
            assert "previous" in links
        path = ""
        if "next" in links:
            parts = urlsplit(links["next"])
            path = f"{parts.path}?{parts.query}"
    assert seen == expected and pages == 3
    # walking back from the last page
    status, body = await api.call(
        "GET", f"/v2.0/networks?limit=2&sort_key=name&sort_dir=asc&marker={expected[-1]}"
        "&page_reverse=True",
        project=P1)
    assert [n["id"] for n in body["networks"]] == expected[2:4]
    for bad in ("limit=-1", "limit=x"):
        status, body = await api.call("GET", f"/v2.0/networks?{bad}", project=P1)
        assert status == 400, bad
        assert body["NeutronError"]["type"] == "BadRequest"  # neutron-lib's, as Neutron
    # An unknown marker is looked up as a member, as Neutron does.
    status, body = await api.call("GET", "/v2.0/networks?marker=nope&limit=1", project=P1)
    assert (status, body["NeutronError"]["type"]) == (404, "NetworkNotFound")


async def test_port_fixed_ips_filter(api: Api) -> None:
    net = await api.create("networks", "network", project=P1)
    sub = await api.create("subnets", "subnet", project=P1, network_id=net["id"],
                           ip_version=4, cidr="10.0.0.0/24")
    ports = [await api.create("ports", "port", project=P1, network_id=net["id"])
             for _ in range(3)]
    _, body = await api.call("GET", "/v2.0/ports?fixed_ips=ip_address=10.0.0.3", project=P1)
    assert [p["id"] for p in body["ports"]] == [ports[1]["id"]]
    _, body = await api.call("GET", f"/v2.0/ports?fixed_ips=subnet_id={sub['id']}"
                             "&fixed_ips=ip_address=10.0.0.4", project=P1)
    assert [p["id"] for p in body["ports"]] == [ports[2]["id"]]
    _, body = await api.call("GET", f"/v2.0/ports?network_id={net['id']}&device_owner=",
                             project=P1)
    assert len(body["ports"]) == 3


async def test_sort_keys_and_dirs_come_in_pairs(api: Api) -> None:
    await _nets(api)
    for query in ("sort_key=name", "sort_dir=asc", "sort_key=name&sort_key=id&sort_dir=asc"):
        status, body = await api.call("GET", f"/v2.0/networks?{query}", project=P1)
        assert (status, body["NeutronError"]["type"]) == (400, "HTTPBadRequest"), query


async def test_typed_filters_refuse_what_they_cannot_convert(api: Api) -> None:
    nets = await _nets(api)
    for query in ("admin_state_up=maybe", "mtu=abc"):
        status, body = await api.call("GET", f"/v2.0/networks?{query}", project=P1)
        assert (status, body["NeutronError"]["type"]) == (400, "InvalidInput"), query
    _, body = await api.call("GET", "/v2.0/networks?admin_state_up=yes", project=P1)
    assert len(body["networks"]) == sum(1 for n in nets if n["admin_state_up"])
    # Refusals of other converters (formats) just match nothing.
    status, body = await api.call("GET", "/v2.0/networks?id=nope", project=P1)
    assert (status, body["networks"]) == (200, [])
