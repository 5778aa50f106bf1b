"""The RESTCONF view: the stored resources in OpenDaylight's neutron YANG
JSON shape, with ODL's basic auth."""

from __future__ import annotations

import base64
from typing import Any

from kumonet.api.restconf import BasicAuth, network_item, yang_uuid
from tests.api.conftest import Api

ROOT = "/restconf/config/neutron:neutron/"
ADMIN_ADMIN = {"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()}
TENANT = "aaa0ecf59218482d9e55b75a50f22a5c"


async def get(api: Api, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    return await api.call("GET", path, headers=ADMIN_ADMIN if headers is None else headers)


async def test_network_as_in_the_seed(api: Api) -> None:
    net = await api.create("networks", "network", name="net01", tenant_id=TENANT,
                           **{"provider:network_type": "vxlan",
                              "provider:segmentation_id": 10})
    status, body = await get(api, ROOT)
    assert status == 200, body
    (item,) = body["neutron"]["networks"]["network"]
    assert item == {
        "uuid": net["id"], "name": "net01", "admin-state-up": True,
        "tenant-id": "aaa0ecf5-9218-482d-9e55-b75a50f22a5c",
        "neutron-L3-ext:external": False, "shared": False, "status": "ACTIVE",
        "neutron-provider-ext:network-type": "neutron-networks:network-type-vxlan",
        "neutron-provider-ext:segmentation-id": "10", "mtu": item["mtu"],
    }
    assert set(body["neutron"]) == {"networks", "subnets", "ports", "routers", "floatingips",
                                    "security-groups", "security-rules"}


async def test_subnets_ports_routers_and_single_items(api: Api) -> None:
    net = await api.create("networks", "network", name="n", tenant_id=TENANT)
    subnet = await api.create("subnets", "subnet", network_id=net["id"], cidr="10.0.0.0/24",
                              ip_version=4, tenant_id=TENANT,
                              dns_nameservers=["10.0.0.53"])
    port = await api.create("ports", "port", network_id=net["id"], tenant_id=TENANT,
                            allowed_address_pairs=[{"ip_address": "10.0.0.99"}])
    router = await api.create("routers", "router", name="r1", tenant_id=TENANT)

    status, body = await get(api, ROOT + "subnets/")
    (s,) = body["subnets"]["subnet"]
    assert s["ip-version"] == "neutron-constants:ip-version-v4"
    assert s["network-id"] == net["id"] and s["cidr"] == "10.0.0.0/24"
    assert s["allocation-pools"] == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert s["dns-nameservers"] == ["10.0.0.53"] and s["gateway-ip"] == "10.0.0.1"
    assert s["uuid"] == subnet["id"] and s["enable-dhcp"] is True

    status, body = await get(api, ROOT + "ports")
    (p,) = [p for p in body["ports"]["port"] if p["uuid"] == port["id"]]
    assert p["fixed-ips"] == [{"subnet-id": subnet["id"],
                               "ip-address": port["fixed_ips"][0]["ip_address"]}]
    assert p["mac-address"] == port["mac_address"]
    assert p["allowed-address-pairs"] == [{"ip-address": "10.0.0.99",
                                           "mac-address": port["mac_address"]}]
    assert p["neutron-portsecurity:port-security-enabled"] is True
    assert p["security-groups"] == port["security_groups"]
    assert p["neutron-binding:vnic-type"] == "normal"

    status, body = await get(api, ROOT + "neutron:routers/router/" + router["id"])
    assert status == 200
    assert body == {"router": [{"uuid": router["id"], "name": "r1", "admin-state-up": True,
                                "tenant-id": yang_uuid(TENANT), "status": "ACTIVE",
                                **({"distributed": False} if "distributed" in
                                   body["router"][0] else {})}]}
    status, body = await get(api, ROOT + "security-rules")
    rules = body["security-rules"]["security-rule"]
    assert {r["direction"] for r in rules} == {"neutron-constants:direction-ingress",
                                               "neutron-constants:direction-egress"}
    assert {r["ethertype"] for r in rules} == {"neutron-constants:ethertype-ipv4",
                                               "neutron-constants:ethertype-ipv6"}


async def test_missing_things_are_404(api: Api) -> None:
    assert (await get(api, ROOT + "bridges"))[0] == 404
    assert (await get(api, ROOT + "networks/network/0b6c1e4e-0000-4000-8000-000000000000"))[0] \
        == 404
    assert (await get(api, ROOT + "networks/subnet/x"))[0] == 404


async def test_basic_auth(api: Api) -> None:
    wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:nope").decode()}
    status, _ = await get(api, ROOT, wrong)
    assert status == 401
    status, _ = await get(api, ROOT, {"Authorization": "Bearer x"})
    assert status == 401
    # The noauth server takes callers without credentials, as its Neutron API does.
    assert (await get(api, ROOT, {}))[0] == 200


def test_required_basic_auth_refuses_no_credentials() -> None:
    from aiohttp.test_utils import make_mocked_request
    from aiohttp.web import HTTPUnauthorized

    auth = BasicAuth(required=True)
    try:
        auth.check(make_mocked_request("GET", ROOT))
    except HTTPUnauthorized:
        pass
    else:
        raise AssertionError("a request without credentials passed")
    auth.check(make_mocked_request("GET", ROOT, headers=ADMIN_ADMIN))


def test_yang_uuid_and_provider_fields() -> None:
    assert yang_uuid(TENANT) == "aaa0ecf5-9218-482d-9e55-b75a50f22a5c"
    assert yang_uuid("") is None and yang_uuid("admin") == "admin"
    item = network_item({"id": "i", "provider:network_type": "vlan",
                         "provider:physical_network": "physnet1",
                         "provider:segmentation_id": 100, "router:external": True})
    assert item["neutron-provider-ext:network-type"] == "neutron-networks:network-type-vlan"
    assert item["neutron-provider-ext:segmentation-id"] == "100"
    assert item["neutron-provider-ext:physical-network"] == "physnet1"
    assert item["neutron-L3-ext:external"] is True
