from __future__ import annotations

from tests.api.conftest import Api

P1 = "11111111111111111111111111111111"
P2 = "22222222222222222222222222222222"


async def test_create_show_list_network(api: Api) -> None:
    net = await api.create("networks", "network", project=P1, name="net01")
    assert net["tenant_id"] == net["project_id"] == P1
    assert net["status"] == "ACTIVE" and net["subnets"] == [] and net["mtu"] == 1450
    assert net["revision_number"] == 1 and net["created_at"].endswith("Z")
    assert "provider:network_type" not in net
    status, body = await api.call("GET", f"/v2.0/networks/{net['id']}", project=P1)
    assert status == 200 and body["network"] == net
    status, body = await api.call("GET", f"/v2.0/networks/{net['id']}")
    assert body["network"]["provider:network_type"] == "vxlan"
    assert body["network"]["provider:segmentation_id"] == 1
    status, body = await api.call("GET", "/v2.0/networks", project=P1)
    assert [n["id"] for n in body["networks"]] == [net["id"]]


async def test_other_projects_network_is_404_unless_shared(api: Api) -> None:
    net = await api.create("networks", "network", project=P1, name="private")
    status, body = await api.call("GET", f"/v2.0/networks/{net['id']}", project=P2)
    assert status == 404 and body["NeutronError"]["type"] == "NetworkNotFound"
    status, body = await api.call("DELETE", f"/v2.0/networks/{net['id']}", project=P2)
    assert status == 404
    shared = await api.create("networks", "network", shared=True, tenant_id=P1)
    ext = await api.create("networks", "network", **{"router:external": True})
    status, body = await api.call("GET", "/v2.0/networks", project=P2)
    assert {n["id"] for n in body["networks"]} == {shared["id"], ext["id"]}
    status, body = await api.call("PUT", f"/v2.0/networks/{shared['id']}",
                                  {"network": {"name": "x"}}, project=P2)
    assert status == 403 and body["NeutronError"]["type"] == "PolicyNotAuthorized"


async def test_member_may_not_write_admin_only_attributes(api: Api) -> None:
    for attrs in ({"provider:network_type": "vlan"}, {"router:external": True},
                  {"shared": True}):
        status, body = await api.call("POST", "/v2.0/networks", {"network": attrs},
                                      project=P1)
        assert status == 403, attrs
        assert body["NeutronError"]["type"] == "PolicyNotAuthorized"
    status, body = await api.call("GET", "/v2.0/networks", project=P1)
    assert body["networks"] == []


async def test_segments_lowest_free_released_and_exclusive(api: Api) -> None:
    nets = [await api.create("networks", "network", project=P1) for _ in range(5)]
    ids = []
    for net in nets:
        _, body = await api.call("GET", f"/v2.0/networks/{net['id']}")
        ids.append((body["network"]["provider:network_type"],
                    body["network"]["provider:segmentation_id"]))
    # vni_ranges 1:3,10:11 then tenant_network_types falls back to vlan
    assert ids == [("vxlan", 1), ("vxlan", 2), ("vxlan", 3), ("vxlan", 10), ("vxlan", 11)]
    six = await api.create("networks", "network", project=P1)
    _, body = await api.call("GET", f"/v2.0/networks/{six['id']}")
    assert body["network"]["provider:network_type"] == "vlan"
    assert body["network"]["mtu"] == 1500
    assert body["network"]["provider:segmentation_id"] == 100
    status, _ = await api.call("DELETE", f"/v2.0/networks/{nets[1]['id']}", project=P1)
    assert status == 204
    again = await api.create("networks", "network", project=P1)
    _, body = await api.call("GET", f"/v2.0/networks/{again['id']}")
    assert body["network"]["provider:segmentation_id"] == 2
    status, body = await api.call("POST", "/v2.0/networks", {"network": {
        "provider:network_type": "vxlan", "provider:segmentation_id": 2}})
    assert status == 409 and body["NeutronError"]["type"] == "TunnelIdInUse"
    status, body = await api.call("POST", "/v2.0/networks", {"network": {
        "provider:network_type": "vlan", "provider:physical_network": "physnet1",
        "provider:segmentation_id": 5000}})
    assert status == 400
    status, body = await api.call("POST", "/v2.0/networks", {"network": {
        "provider:network_type": "flat", "provider:physical_network": "nope"}})
    assert status == 400
    flat = await api.create("networks", "network", **{
        "provider:network_type": "flat", "provider:physical_network": "extnet",
        "router:external": True})
    assert flat["mtu"] == 1500 and flat["provider:segmentation_id"] is None
    status, body = await api.call("POST", "/v2.0/networks", {"network": {
        "provider:network_type": "flat", "provider:physical_network": "extnet"}})
    assert status == 409 and body["NeutronError"]["type"] == "FlatNetworkInUse"
    gre = await api.create("networks", "network", **{"provider:network_type": "gre"})
    assert gre["mtu"] == 1458 and gre["provider:segmentation_id"] == 1


async def test_update_bumps_revision_and_honours_if_match(api: Api) -> None:
    net = await api.create("networks", "network", project=P1, name="a")
    status, body = await api.call("PUT", f"/v2.0/networks/{net['id']}",
                                  {"network": {"name": "b"}}, project=P1)
    assert status == 200 and body["network"]["name"] == "b"
    assert body["network"]["revision_number"] == 2
    status, body = await api.call("PUT", f"/v2.0/networks/{net['id']}",
                                  {"network": {"name": "c"}}, project=P1,
                                  headers={"If-Match": "revision_number=1"})
    assert status == 412
    status, body = await api.call("PUT", f"/v2.0/networks/{net['id']}",
                                  {"network": {"id": net["id"]}}, project=P1)
    assert status == 400
    status, body = await api.call("PUT", f"/v2.0/networks/{net['id']}",
                                  {"network": {"mtu": 9000}}, project=P1)
    assert status == 400


async def test_tags_subresource(api: Api) -> None:
    net = await api.create("networks", "network", project=P1)
    path = f"/v2.0/networks/{net['id']}/tags"
    status, body = await api.call("PUT", path, {"tags": ["b", "a"]}, project=P1)
    assert status == 200 and body == {"tags": ["a", "b"]}
    status, _ = await api.call("PUT", path + "/c", project=P1)
    assert status == 201
    status, _ = await api.call("DELETE", path + "/a", project=P1)
    assert status == 204
    _, body = await api.call("GET", "/v2.0/networks?tags=b,c", project=P1)
    assert [n["id"] for n in body["networks"]] == [net["id"]]
    _, body = await api.call("GET", "/v2.0/networks?tags=a", project=P1)
    assert body["networks"] == []


async def test_unsharing_a_network_other_projects_use_is_refused(api: Api) -> None:
    net = await api.create("networks", "network", shared=True, tenant_id=P1)
    await api.create("subnets", "subnet", project=P1, network_id=net["id"], ip_version=4,
                     cidr="10.0.0.0/24")
    port = await api.create("ports", "port", project=P2, network_id=net["id"])
    status, body = await api.call("PUT", f"/v2.0/networks/{net['id']}",
                                  {"network": {"shared": False}})
    assert status == 409 and body["NeutronError"]["type"] == "InvalidSharedSetting"
    status, _ = await api.call("DELETE", f"/v2.0/ports/{port['id']}", project=P2)
    assert status == 204
    status, body = await api.call("PUT", f"/v2.0/networks/{net['id']}",
                                  {"network": {"shared": False}})
    assert status == 200 and body["network"]["shared"] is False


async def test_client_chosen_id(api: Api) -> None:
    chosen = "0b5e6a2c-5d0e-4a53-9f39-0c5c3f0e0a11"
    net = await api.create("networks", "network", project=P1, id=chosen)
    assert net["id"] == chosen
    status, body = await api.call("POST", "/v2.0/networks", {"network": {"id": chosen}},
                                  project=P1)
    assert status == 409 and body["NeutronError"]["type"] == "Conflict"


async def test_network_keys_are_neutrons(api: Api) -> None:
    # l2_adjacency comes with an extension Neutron's ML2 here does not list.
    net = await api.create("networks", "network", project=P1)
    assert "l2_adjacency" not in net and "segments" not in net
    status, body = await api.call("GET", "/v2.0/networks")
    assert status == 200 and "l2_adjacency" not in body["networks"][0]


async def test_network_in_use_names_its_ports(api: Api) -> None:
    net = await api.create("networks", "network", project=P1)
    port = await api.create("ports", "port", project=P1, network_id=net["id"])
    status, body = await api.call("DELETE", f"/v2.0/networks/{net['id']}", project=P1)
    assert (status, body["NeutronError"]["type"]) == (409, "NetworkInUse")
    assert body["NeutronError"]["message"].endswith(f"id for these ports is: {port['id']}.")


async def test_mtu_too_big_is_invalid_input(api: Api) -> None:
    net = await api.create("networks", "network", project=P1)
    status, body = await api.call("PUT", f"/v2.0/networks/{net['id']}",
                                  {"network": {"mtu": 9000}}, project=P1)
    assert (status, body["NeutronError"]["type"]) == (400, "InvalidInput")
    assert body["NeutronError"]["message"] == \
        "Invalid input for operation: Requested MTU is too big, maximum is 1450."


async def test_delete_in_use_answers_in_use_before_a_revision_mismatch(api: Api) -> None:
    net = await api.create("networks", "network", project=P1)
    await api.create("ports", "port", project=P1, network_id=net["id"])
    path = f"/v2.0/networks/{net['id']}"
    stale = {"If-Match": "revision_number=999"}
    status, body = await api.call("DELETE", path, project=P1, headers=stale)
    assert (status, body["NeutronError"]["type"]) == (409, "NetworkInUse")
    free = await api.create("networks", "network", project=P1)
    status, body = await api.call("DELETE", f"/v2.0/networks/{free['id']}", project=P1,
                                  headers=stale)
    assert (status, body["NeutronError"]["type"]) == (412, "RevisionNumberConstraintFailed")
    status, _ = await api.call("GET", f"/v2.0/networks/{free['id']}", project=P1)
    assert status == 200
