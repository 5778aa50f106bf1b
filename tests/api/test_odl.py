"""networking-odl (v2 driver) as it talks to OpenDaylight, replayed
against kumonet: Neutron's full objects with ids, MACs and addresses
Neutron chose, its body quirks, journal re-sends, and its operational
reads (features, hostconfigs)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from kumonet.api.odl import hostconfig, normalized
from tests.api.conftest import Api

NB = "/controller/nb/v2/neutron"
TENANT = "aaa0ecf59218482d9e55b75a50f22a5c"
NOW = "2016-07-26T07:43:08Z"


def neutron_network(net_id: str) -> dict[str, Any]:
    # What Neutron's ML2 hands the driver (read-only fields included).
    return {"id": net_id, "name": "net01", "tenant_id": TENANT, "project_id": TENANT,
            "admin_state_up": True, "status": "ACTIVE", "subnets": [], "shared": False,
            "mtu": 1450, "router:external": False, "port_security_enabled": True,
            "availability_zone_hints": [], "availability_zones": [], "description": "",
            "ipv4_address_scope": None, "ipv6_address_scope": None, "tags": [],
            "created_at": NOW, "updated_at": NOW, "revision_number": 1,
            "provider:network_type": "vxlan", "provider:physical_network": None,
            "provider:segmentation_id": 1048, "qos_policy_id": None}


def neutron_subnet(subnet_id: str, net_id: str) -> dict[str, Any]:
    return {"id": subnet_id, "name": "sub01", "tenant_id": TENANT, "project_id": TENANT,
            "network_id": net_id, "ip_version": 4, "cidr": "10.0.0.0/24",
            "gateway_ip": "10.0.0.1", "enable_dhcp": True, "ipv6_ra_mode": None,
            "ipv6_address_mode": None, "subnetpool_id": None, "dns_nameservers": [],
            "host_routes": [], "allocation_pools": [{"start": "10.0.0.2", "end": "10.0.0.254"}],
            "description": "", "tags": [], "created_at": NOW, "updated_at": NOW,
            "revision_number": 0, "service_types": [], "segment_id": None}


def neutron_port(port_id: str, net_id: str, subnet_id: str, group_id: str,
                 ip: str, mac: str) -> dict[str, Any]:
    return {"id": port_id, "name": "", "tenant_id": TENANT, "project_id": TENANT,
            "network_id": net_id, "admin_state_up": True, "status": "DOWN",
            "mac_address": mac, "fixed_ips": [{"subnet_id": subnet_id, "ip_address": ip}],
            "device_id": "vm-1", "device_owner": "compute:nova",
            # networking-odl's quirks:
            "security_groups": [{"id": group_id}],
            "binding:profile": '{"local_link_information": []}',
            "binding:host_id": "compute1", "binding:vnic_type": "normal",
            "binding:vif_type": "unbound", "binding:vif_details": {},
            "allowed_address_pairs": [], "extra_dhcp_opts": [], "port_security_enabled": True,
            "description": "", "tags": [], "created_at": NOW, "updated_at": NOW,
            "revision_number": 1}


def neutron_group(group_id: str) -> dict[str, Any]:
    rule_ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    return {"id": group_id, "name": "default", "tenant_id": TENANT, "project_id": TENANT,
            "description": "Default security group", "stateful": True,
            "security_group_rules": [{"id": r, "direction": "egress"} for r in rule_ids],
            "tags": [], "created_at": NOW, "updated_at": NOW, "revision_number": 1}


async def odl(api: Api, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return await api.call(method, NB + path, body)


async def test_networking_odl_replay(api: Api) -> None:
    net_id, subnet_id, port_id, group_id = (str(uuid.uuid4()) for _ in range(4))
    status, body = await odl(api, "POST", "/networks", {"network": neutron_network(net_id)})
    assert status == 201, body
    assert body["network"]["id"] == net_id
    assert body["network"]["provider:segmentation_id"] == 1048

    status, body = await odl(api, "POST", "/subnets",
                             {"subnet": neutron_subnet(subnet_id, net_id)})
    assert status == 201, body

    status, body = await odl(api, "POST", "/security-groups",
                             {"security_group": neutron_group(group_id)})
    assert status == 201, body
    # Neutron's default group, as Neutron made it: its rules come one by one.
    assert body["security_group"]["security_group_rules"] == []
    rule_id = str(uuid.uuid4())
    status, body = await odl(api, "POST", "/security-group-rules", {"security_group_rule": {
        "id": rule_id, "security_group_id": group_id, "direction": "ingress",
        "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
        "remote_ip_prefix": "0.0.0.0/0", "remote_group_id": None, "tenant_id": TENANT,
        "project_id": TENANT, "description": "", "revision_number": 0}})
    assert status == 201, body

    # networking-odl upper-cases MACs (an old ODL bug's workaround).
    port = neutron_port(port_id, net_id, subnet_id, group_id, "10.0.0.37",
                        "FA:16:3E:12:34:56")
    status, body = await odl(api, "POST", "/ports", {"port": port})
    assert status == 201, body
    stored = body["port"]
    assert stored["id"] == port_id
    assert stored["mac_address"] == "fa:16:3e:12:34:56"
    assert stored["fixed_ips"] == [{"subnet_id": subnet_id, "ip_address": "10.0.0.37"}]
    assert stored["security_groups"] == [group_id]
    assert stored["binding:profile"] == {"local_link_information": []}

    # The journal re-sends an entry whose answer it lost: still one port.
    status, body = await odl(api, "POST", "/ports", {"port": port})
    assert status == 201 and body["port"]["id"] == port_id
    status, body = await api.call("GET", f"/v2.0/ports?network_id={net_id}")
    assert [p["id"] for p in body["ports"]] == [port_id]

    # The Neutron API sees what networking-odl sent, and the address is taken.
    status, body = await api.call("POST", "/v2.0/ports", {"port": {
        "network_id": net_id, "fixed_ips": [{"ip_address": "10.0.0.37"}]}})
    assert status == 409, body

    # An update carries the whole object again; only what changed is applied.
    status, body = await odl(api, "PUT", f"/ports/{port_id}",
                             {"port": {**port, "name": "vm-port", "status": "ACTIVE",
                                       "revision_number": 2}})
    assert status == 200, body
    assert body["port"]["name"] == "vm-port"
    assert body["port"]["revision_number"] == 2

    status, body = await odl(api, "GET", f"/ports/{port_id}")
    assert status == 200 and body["port"]["name"] == "vm-port"
    status, body = await odl(api, "GET", "/networks")
    assert [n["id"] for n in body["networks"]] == [net_id]

    assert (await odl(api, "DELETE", f"/ports/{port_id}"))[0] == 204
    assert (await odl(api, "DELETE", f"/ports/{port_id}"))[0] == 404
    assert (await odl(api, "DELETE", f"/security-group-rules/{rule_id}"))[0] == 204
    assert (await odl(api, "DELETE", f"/subnets/{subnet_id}"))[0] == 204
    assert (await odl(api, "DELETE", f"/networks/{net_id}"))[0] == 204
    status, body = await api.call("GET", "/v2.0/networks")
    assert net_id not in [n["id"] for n in body["networks"]]


async def test_unknown_collection_and_bad_body(api: Api) -> None:
    assert (await odl(api, "POST", "/bgpvpns", {"bgpvpn": {}}))[0] == 404
    status, body = await odl(api, "POST", "/networks", {"subnet": {}})
    assert status == 400, body


async def test_features_and_hostconfigs(api: Api) -> None:
    status, body = await api.call("GET", "/restconf/operational/neutron:neutron/neutron:features/")
    assert status == 200 and body == {"features": {}}
    status, body = await api.call("GET", "/restconf/operational/neutron:neutron/hostconfigs")
    assert status == 200 and body == {"hostconfigs": {"hostconfig": []}}
    status, answer = await api.call("PUT", "/v1/agent/hosts/compute1", {
        "host": "compute1", "agent_types": ["Open vSwitch agent"], "tunnel_ip": "192.0.2.10",
        "tunnel_types": ["vxlan"], "bridge_mappings": {"physnet1": "br-phys"},
        "heartbeat_interval": 30, "datapath_type": "netdev"})
    assert status == 200, answer
    status, body = await api.call("GET", "/restconf/operational/neutron:neutron/hostconfigs/")
    (config,) = body["hostconfigs"]["hostconfig"]
    assert config["host-id"] == "compute1" and config["host-type"] == "ODL L2"
    parsed = orjson.loads(config["config"])
    assert parsed["bridge_mappings"] == {"physnet1": "br-phys"}
    assert "vxlan" in parsed["allowed_network_types"]
    assert parsed["supported_vnic_types"][0]["vif_type"] == "ovs"


def test_quirks_undone() -> None:
    assert normalized("port", {"binding:profile": "", "security_groups": [{"id": "a"}, "b"]}) \
        == {"binding:profile": {}, "security_groups": ["a", "b"]}
    assert normalized("router", {"name": "r", "external_gateway_info": {}, "gw_port_id": "x"}) \
        == {"name": "r"}
    assert hostconfig({"host": "h"})["host-type"] == "ODL L2"


async def test_full_sync_canary(api: Api) -> None:
    # networking-odl's full sync: no canary network in the controller means
    # "resync everything", then it creates the canary.
    canary = "bd8db3a8-2b30-4083-a8b3-b3fd46401142"
    assert (await odl(api, "GET", f"/networks/{canary}"))[0] == 404
    status, body = await odl(api, "POST", "/networks", {"network": {
        "id": canary, "tenant_id": canary, "name": "Sync Canary Network",
        "admin_state_up": False}})
    assert status == 201, body
    status, body = await odl(api, "GET", f"/networks/{canary}")
    assert status == 200 and body["network"]["admin_state_up"] is False
