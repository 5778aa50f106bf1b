#!/usr/bin/env python3
"""Send the same Neutron API requests to the real neutron and to kumonet, and
print where the answers differ.

Both servers run one scenario each (networks, subnets, ports, security groups
and rules, routers with interfaces and gateway, floating IPs, agents,
extensions, the version documents, and a list of bad inputs); every step is
recorded under a label, then the two recordings are compared step by step:
status code, ``NeutronError.type``, the set of keys of each resource (nested
ones too) and the values that do not depend on the server (ids, timestamps,
MACs and generated URLs are masked).

Both are driven as the noauth admin (no ``X-Project-Id``; neutron's noauth
ignores it anyway) with ``tenant_id`` in each create body. Not a test: it
needs the real neutron (``/work/shared/bench/neutron/setup.sh``).

  .venv/bin/python bench/compat_neutron.py --neutron http://127.0.0.1:19696 \\
      --kumonet http://127.0.0.1:19797 [--verbose]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
import uuid
from typing import Any

PROJECT = "c0ffee00c0ffee00c0ffee00c0ffee00"
MISSING = "00000000-0000-4000-8000-000000000000"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
_MAC = re.compile(r"^fa:16:3e(:[0-9a-f]{2}){3}$")
# Keys whose values are the server's own choice: compared by presence only.
VOLATILE = {"id", "created_at", "updated_at", "mac_address", "provider:segmentation_id",
            "message", "detail", "updated", "href", "description_of_agent",
            "heartbeat_timestamp", "started_at", "host", "binding:host_id"}

# Neutron picks a random free address among the lowest ones; kumonet the
# lowest (and EUI-64 addresses follow the random MACs): compared by presence
# unless --exact-ips.
ADDRESSES = {"ip_address", "floating_ip_address", "fixed_ip_address"}

Observation = tuple[int, Any]


class Client:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.seen: dict[str, Observation] = {}
        self.order: list[str] = []

    def call(self, label: str, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None, raw: bytes | None = None) -> Observation:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, text = resp.status, resp.read()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read()
        try:
            parsed: Any = json.loads(text) if text else None
        except ValueError:
            parsed = {"<non-json>": text[:200].decode(errors="replace")}
        if label:
            if label in self.seen:
                raise SystemExit(f"duplicate label {label}")
            self.seen[label] = (status, parsed)
            self.order.append(label)
        return status, parsed

    def make(self, label: str, collection: str, member: str, **attrs: Any) -> dict[str, Any]:
        attrs.setdefault("tenant_id", PROJECT)
        status, body = self.call(label, "POST", f"/v2.0/{collection}", {member: attrs})
        if status != 201:
            raise SystemExit(f"{self.base}: {label} answered {status} {body}")
        result: dict[str, Any] = body[member]
        return result


def clean(c: Client) -> None:
    """Delete what an earlier run left (the flat network on ``public`` can
    exist once only)."""
    for fip in c.call("", "GET", "/v2.0/floatingips")[1].get("floatingips", []):
        c.call("", "DELETE", f"/v2.0/floatingips/{fip['id']}")
    for router in c.call("", "GET", "/v2.0/routers")[1].get("routers", []):
        c.call("", "PUT", f"/v2.0/routers/{router['id']}",
               {"router": {"external_gateway_info": {}}})
        ports = c.call("", "GET", f"/v2.0/ports?device_id={router['id']}")[1]["ports"]
        for port in ports:
            c.call("", "PUT", f"/v2.0/routers/{router['id']}/remove_router_interface",
                   {"port_id": port["id"]})
        c.call("", "DELETE", f"/v2.0/routers/{router['id']}")
    for port in c.call("", "GET", "/v2.0/ports")[1].get("ports", []):
        c.call("", "DELETE", f"/v2.0/ports/{port['id']}")
    for net in c.call("", "GET", "/v2.0/networks")[1].get("networks", []):
        c.call("", "DELETE", f"/v2.0/networks/{net['id']}")
    for sg in c.call("", "GET", "/v2.0/security-groups")[1].get("security_groups", []):
        c.call("", "DELETE", f"/v2.0/security-groups/{sg['id']}")


def scenario(c: Client) -> None:
    """One walk through the API; labels name the steps compared."""
    clean(c)
    tag = "t"  # names equal on both sides: earlier runs are cleaned away
    c.call("version", "GET", "/")
    c.call("v2.0 root", "GET", "/v2.0/")
    c.call("v2.0 root no slash", "GET", "/v2.0")
    c.call("extensions", "GET", "/v2.0/extensions")
    c.call("extension router", "GET", "/v2.0/extensions/router")
    c.call("extension unknown", "GET", "/v2.0/extensions/nope")

    # --------------------------------------------------------------- networks
    net = c.make("network create", "networks", "network", name="n-" + tag)
    c.call("network show", "GET", f"/v2.0/networks/{net['id']}")
    c.call("network show fields", "GET", f"/v2.0/networks/{net['id']}?fields=id&fields=name")
    c.call("network list by name", "GET", f"/v2.0/networks?name=n-{tag}")
    c.call("network list fields", "GET", f"/v2.0/networks?name=n-{tag}&fields=id&fields=mtu")
    c.call("network update", "PUT", f"/v2.0/networks/{net['id']}",
           {"network": {"name": "n2-" + tag, "description": "d"}})
    c.call("network update mtu", "PUT", f"/v2.0/networks/{net['id']}",
           {"network": {"mtu": 1400}})
    c.call("network update port_security", "PUT", f"/v2.0/networks/{net['id']}",
           {"network": {"port_security_enabled": False}})
    c.call("network update port_security back", "PUT", f"/v2.0/networks/{net['id']}",
           {"network": {"port_security_enabled": True}})
    c.make("network create vlan", "networks", "network", name="v-" + tag,
           **{"provider:network_type": "vlan", "provider:physical_network": "physnet1",
              "provider:segmentation_id": 150})
    ext = c.make("network create external", "networks", "network", name="ext-" + tag,
                 **{"router:external": True, "provider:network_type": "flat",
                    "provider:physical_network": "public"})
    c.call("network create shared", "POST", "/v2.0/networks",
           {"network": {"name": "sh-" + tag, "shared": True, "tenant_id": PROJECT}})
    c.call("network create bulk", "POST", "/v2.0/networks",
           {"networks": [{"name": "b1-" + tag, "tenant_id": PROJECT},
                         {"name": "b2-" + tag, "tenant_id": PROJECT}]})
    c.call("network tags put", "PUT", f"/v2.0/networks/{net['id']}/tags",
           {"tags": ["red", "blue"]})
    c.call("network tag add", "PUT", f"/v2.0/networks/{net['id']}/tags/green")
    c.call("network tags get", "GET", f"/v2.0/networks/{net['id']}/tags")
    c.call("network list tags filter", "GET", "/v2.0/networks?tags=red&fields=name")
    c.call("network list sorted", "GET",
           f"/v2.0/networks?sort_key=name&sort_dir=desc&fields=name&name=b1-{tag}"
           f"&name=b2-{tag}")
    c.call("network list paged", "GET",
           f"/v2.0/networks?limit=1&fields=name&name=b1-{tag}&name=b2-{tag}&sort_key=name")

    # --------------------------------------------------------------- subnets
    sub = c.make("subnet create", "subnets", "subnet", network_id=net["id"], ip_version=4,
                 cidr="10.77.0.0/24", name="s-" + tag)
    c.call("subnet show", "GET", f"/v2.0/subnets/{sub['id']}")
    c.call("subnet update", "PUT", f"/v2.0/subnets/{sub['id']}",
           {"subnet": {"dns_nameservers": ["8.8.8.8"], "enable_dhcp": False,
                       "host_routes": [{"destination": "10.9.0.0/16",
                                        "nexthop": "10.77.0.5"}]}})
    c.make("subnet create pools", "subnets", "subnet", network_id=net["id"], ip_version=4,
           cidr="10.78.0.0/24", allocation_pools=[{"start": "10.78.0.10",
                                                   "end": "10.78.0.20"}],
           gateway_ip=None, enable_dhcp=False)
    c.make("subnet create v6", "subnets", "subnet", network_id=net["id"], ip_version=6,
           cidr="fd00:77::/64", ipv6_ra_mode="slaac", ipv6_address_mode="slaac")
    c.make("subnet create v6 plain", "subnets", "subnet", network_id=net["id"], ip_version=6,
           cidr="fd00:78::/64")
    c.call("network show with subnets", "GET", f"/v2.0/networks/{net['id']}")

    # --------------------------------------------------------------- ports
    # The subnet is named: with two IPv4 subnets Neutron picks either.
    port = c.make("port create", "ports", "port", network_id=net["id"], name="p-" + tag,
                  fixed_ips=[{"subnet_id": sub["id"]}])
    c.make("port create any subnet", "ports", "port", network_id=net["id"])
    c.call("port show", "GET", f"/v2.0/ports/{port['id']}")
    c.call("port update", "PUT", f"/v2.0/ports/{port['id']}",
           {"port": {"name": "p2-" + tag, "device_owner": "compute:nova",
                     "device_id": str(uuid.uuid4())}})
    c.call("port update binding", "PUT", f"/v2.0/ports/{port['id']}",
           {"port": {"binding:host_id": "host-" + tag}})
    c.call("port update address pairs", "PUT", f"/v2.0/ports/{port['id']}",
           {"port": {"allowed_address_pairs": [{"ip_address": "10.77.0.200"}]}})
    fixed = c.make("port create fixed ip", "ports", "port", network_id=net["id"],
                   fixed_ips=[{"subnet_id": sub["id"], "ip_address": "10.77.0.50"}])
    c.make("port create by subnet", "ports", "port", network_id=net["id"],
           fixed_ips=[{"subnet_id": sub["id"]}])
    c.make("port create no security", "ports", "port", network_id=net["id"],
           port_security_enabled=False, security_groups=[])
    c.call("port list by ip", "GET",
           "/v2.0/ports?fixed_ips=ip_address%3D10.77.0.50&fields=fixed_ips")
    c.call("port list by device_owner", "GET",
           f"/v2.0/ports?device_owner=compute:nova&network_id={net['id']}&fields=name")

    # --------------------------------------------------------------- security groups
    sg = c.make("sg create", "security-groups", "security_group", name="sg-" + tag)
    c.call("sg show", "GET", f"/v2.0/security-groups/{sg['id']}")
    rule = c.make("sg rule create", "security-group-rules", "security_group_rule",
                  security_group_id=sg["id"], direction="ingress", protocol="tcp",
                  port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0",
                  ethertype="IPv4")
    c.call("sg rule show", "GET", f"/v2.0/security-group-rules/{rule['id']}")
    c.make("sg rule icmp", "security-group-rules", "security_group_rule",
           security_group_id=sg["id"], direction="ingress", protocol="icmp",
           port_range_min=8, port_range_max=0)
    c.make("sg rule remote group", "security-group-rules", "security_group_rule",
           security_group_id=sg["id"], direction="ingress", remote_group_id=sg["id"])
    c.call("sg show with rules", "GET", f"/v2.0/security-groups/{sg['id']}")
    c.call("sg update", "PUT", f"/v2.0/security-groups/{sg['id']}",
           {"security_group": {"name": "sg2-" + tag, "description": "x"}})
    c.call("sg list default", "GET",
           f"/v2.0/security-groups?name=default&tenant_id={PROJECT}")
    default_sg = c.call("", "GET", f"/v2.0/security-groups?name=default&tenant_id={PROJECT}")
    for r in default_sg[1]["security_groups"][0]["security_group_rules"]:
        if r["direction"] == "ingress" and r["ethertype"] == "IPv4":
            c.call("sg rule show default", "GET", f"/v2.0/security-group-rules/{r['id']}")
    c.call("sg rule list of sg", "GET",
           f"/v2.0/security-group-rules?security_group_id={sg['id']}&sort_key=protocol")
    c.call("port update sg", "PUT", f"/v2.0/ports/{port['id']}",
           {"port": {"security_groups": [sg["id"]]}})

    # --------------------------------------------------------------- routers
    ext_sub = c.make("ext subnet create", "subnets", "subnet", network_id=ext["id"],
                     ip_version=4, cidr="203.0.113.0/24", enable_dhcp=False,
                     allocation_pools=[{"start": "203.0.113.101", "end": "203.0.113.200"}])
    router = c.make("router create", "routers", "router", name="r-" + tag)
    c.call("router show", "GET", f"/v2.0/routers/{router['id']}")
    c.call("router add interface", "PUT", f"/v2.0/routers/{router['id']}/add_router_interface",
           {"subnet_id": sub["id"]})
    c.call("router add interface twice", "PUT",
           f"/v2.0/routers/{router['id']}/add_router_interface", {"subnet_id": sub["id"]})
    c.call("router ports", "GET",
           f"/v2.0/ports?device_id={router['id']}&fields=device_owner&fields=fixed_ips"
           "&fields=status&fields=name&fields=admin_state_up&fields=binding:vnic_type")
    c.call("router set gateway", "PUT", f"/v2.0/routers/{router['id']}",
           {"router": {"external_gateway_info": {"network_id": ext["id"]}}})
    c.call("router set gateway fixed ip", "PUT", f"/v2.0/routers/{router['id']}",
           {"router": {"external_gateway_info": {
               "network_id": ext["id"], "enable_snat": False,
               "external_fixed_ips": [{"subnet_id": ext_sub["id"],
                                       "ip_address": "203.0.113.150"}]}}})
    c.call("router routes", "PUT", f"/v2.0/routers/{router['id']}",
           {"router": {"routes": [{"destination": "10.200.0.0/16",
                                   "nexthop": "10.77.0.9"}]}})
    c.call("router routes clear", "PUT", f"/v2.0/routers/{router['id']}",
           {"router": {"routes": []}})
    c.call("router add extraroutes", "PUT", f"/v2.0/routers/{router['id']}/add_extraroutes",
           {"router": {"routes": [{"destination": "10.201.0.0/16",
                                   "nexthop": "10.77.0.9"}]}})
    c.call("router remove extraroutes", "PUT",
           f"/v2.0/routers/{router['id']}/remove_extraroutes",
           {"router": {"routes": [{"destination": "10.201.0.0/16",
                                   "nexthop": "10.77.0.9"}]}})
    c.call("router list", "GET", f"/v2.0/routers?name=r-{tag}")
    c.call("router l3 agents", "GET", f"/v2.0/routers/{router['id']}/l3-agents")

    # --------------------------------------------------------------- floating IPs
    fip = c.make("fip create", "floatingips", "floatingip", floating_network_id=ext["id"])
    c.call("fip show", "GET", f"/v2.0/floatingips/{fip['id']}")
    c.call("fip associate", "PUT", f"/v2.0/floatingips/{fip['id']}",
           {"floatingip": {"port_id": port["id"]}})
    c.call("fip disassociate", "PUT", f"/v2.0/floatingips/{fip['id']}",
           {"floatingip": {"port_id": None}})
    c.call("fip update description", "PUT", f"/v2.0/floatingips/{fip['id']}",
           {"floatingip": {"description": "fip"}})
    c.call("fip create with port", "POST", "/v2.0/floatingips",
           {"floatingip": {"floating_network_id": ext["id"], "port_id": fixed["id"],
                           "tenant_id": PROJECT}})
    c.call("fip on internal net", "POST", "/v2.0/floatingips",
           {"floatingip": {"floating_network_id": net["id"], "tenant_id": PROJECT}})
    c.call("fip list", "GET", f"/v2.0/floatingips?floating_network_id={ext['id']}"
           "&sort_key=floating_ip_address")

    # --------------------------------------------------------------- agents
    c.call("agents", "GET", "/v2.0/agents")
    c.call("agents filter", "GET", "/v2.0/agents?agent_type=L3%20agent")
    c.call("agent missing", "GET", f"/v2.0/agents/{MISSING}")

    # --------------------------------------------------------------- bad inputs
    c.call("bad uuid show", "GET", "/v2.0/networks/not-a-uuid")
    c.call("missing network show", "GET", f"/v2.0/networks/{MISSING}")
    c.call("missing network update", "PUT", f"/v2.0/networks/{MISSING}",
           {"network": {"name": "x"}})
    c.call("missing network delete", "DELETE", f"/v2.0/networks/{MISSING}")
    c.call("missing port show", "GET", f"/v2.0/ports/{MISSING}")
    c.call("missing subnet show", "GET", f"/v2.0/subnets/{MISSING}")
    c.call("missing router show", "GET", f"/v2.0/routers/{MISSING}")
    c.call("missing sg show", "GET", f"/v2.0/security-groups/{MISSING}")
    c.call("missing sg rule show", "GET", f"/v2.0/security-group-rules/{MISSING}")
    c.call("missing fip show", "GET", f"/v2.0/floatingips/{MISSING}")
    c.call("subnet on missing network", "POST", "/v2.0/subnets",
           {"subnet": {"network_id": MISSING, "ip_version": 4, "cidr": "10.1.0.0/24",
                       "tenant_id": PROJECT}})
    c.call("port on missing network", "POST", "/v2.0/ports",
           {"port": {"network_id": MISSING, "tenant_id": PROJECT}})
    c.call("port bad network uuid", "POST", "/v2.0/ports",
           {"port": {"network_id": "abc", "tenant_id": PROJECT}})
    c.call("overlapping cidr", "POST", "/v2.0/subnets",
           {"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "10.77.0.0/25",
                       "tenant_id": PROJECT}})
    c.call("ip already allocated", "POST", "/v2.0/ports",
           {"port": {"network_id": net["id"], "tenant_id": PROJECT,
                     "fixed_ips": [{"ip_address": "10.77.0.50"}]}})
    c.call("ip outside subnet", "POST", "/v2.0/ports",
           {"port": {"network_id": net["id"], "tenant_id": PROJECT,
                     "fixed_ips": [{"subnet_id": sub["id"], "ip_address": "10.99.0.5"}]}})
    c.call("ip not on network", "POST", "/v2.0/ports",
           {"port": {"network_id": net["id"], "tenant_id": PROJECT,
                     "fixed_ips": [{"ip_address": "10.99.0.5"}]}})
    c.call("port on missing subnet", "POST", "/v2.0/ports",
           {"port": {"network_id": net["id"], "tenant_id": PROJECT,
                     "fixed_ips": [{"subnet_id": MISSING}]}})
    c.call("port subnet of other network", "POST", "/v2.0/ports",
           {"port": {"network_id": ext["id"], "tenant_id": PROJECT,
                     "fixed_ips": [{"subnet_id": sub["id"]}]}})
    c.call("mac in use", "POST", "/v2.0/ports",
           {"port": {"network_id": net["id"], "tenant_id": PROJECT,
                     "mac_address": port["mac_address"]}})
    c.call("invalid mac", "POST", "/v2.0/ports",
           {"port": {"network_id": net["id"], "tenant_id": PROJECT, "mac_address": "zz"}})
    c.call("invalid cidr", "POST", "/v2.0/subnets",
           {"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "10.0.0.0/33",
                       "tenant_id": PROJECT}})
    c.call("cidr host bits", "POST", "/v2.0/subnets",
           {"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "10.79.0.1/24",
                       "tenant_id": PROJECT}})
    c.call("cidr version mismatch", "POST", "/v2.0/subnets",
           {"subnet": {"network_id": net["id"], "ip_version": 6, "cidr": "10.80.0.0/24",
                       "tenant_id": PROJECT}})
    c.call("gateway outside cidr", "POST", "/v2.0/subnets",
           {"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "10.81.0.0/24",
                       "gateway_ip": "10.82.0.1", "tenant_id": PROJECT}})
    c.call("pool outside cidr", "POST", "/v2.0/subnets",
           {"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "10.83.0.0/24",
                       "allocation_pools": [{"start": "10.84.0.2", "end": "10.84.0.9"}],
                       "tenant_id": PROJECT}})
    c.call("pool has gateway", "POST", "/v2.0/subnets",
           {"subnet": {"network_id": net["id"], "ip_version": 4, "cidr": "10.85.0.0/24",
                       "allocation_pools": [{"start": "10.85.0.1", "end": "10.85.0.9"}],
                       "tenant_id": PROJECT}})
    c.call("subnet missing cidr", "POST", "/v2.0/subnets",
           {"subnet": {"network_id": net["id"], "ip_version": 4, "tenant_id": PROJECT}})
    c.call("subnet bad ip_version", "POST", "/v2.0/subnets",
           {"subnet": {"network_id": net["id"], "ip_version": 5, "cidr": "10.86.0.0/24",
                       "tenant_id": PROJECT}})
    c.call("wrong type bool", "POST", "/v2.0/networks",
           {"network": {"admin_state_up": "yes", "tenant_id": PROJECT}})
    c.call("wrong type name", "POST", "/v2.0/networks",
           {"network": {"name": 5, "tenant_id": PROJECT}})
    c.call("wrong type mtu", "PUT", f"/v2.0/networks/{net['id']}", {"network": {"mtu": "x"}})
    c.call("name too long", "POST", "/v2.0/networks",
           {"network": {"name": "x" * 256, "tenant_id": PROJECT}})
    c.call("unknown attribute", "POST", "/v2.0/networks",
           {"network": {"colour": "red", "tenant_id": PROJECT}})
    c.call("unknown attribute update", "PUT", f"/v2.0/networks/{net['id']}",
           {"network": {"colour": "red"}})
    c.call("read-only attribute update", "PUT", f"/v2.0/networks/{net['id']}",
           {"network": {"status": "DOWN"}})
    c.call("update id", "PUT", f"/v2.0/networks/{net['id']}",
           {"network": {"id": str(uuid.uuid4())}})
    c.call("body wrong key", "POST", "/v2.0/networks", {"netwrk": {"name": "x"}})
    c.call("body not json", "POST", "/v2.0/networks", raw=b"{not json")
    c.call("body empty", "POST", "/v2.0/networks", raw=b"")
    c.call("body list", "POST", "/v2.0/networks", raw=b"[]")
    c.call("unknown filter", "GET", "/v2.0/networks?colour=red")
    c.call("unknown filter ports", "GET", "/v2.0/ports?colour=red")
    c.call("bad sort key", "GET", "/v2.0/networks?sort_key=colour")
    c.call("bad sort dir", "GET", "/v2.0/networks?sort_key=name&sort_dir=up")
    c.call("negative limit", "GET", "/v2.0/networks?limit=-1")
    c.call("bad limit", "GET", "/v2.0/networks?limit=x")
    c.call("bad marker", "GET", f"/v2.0/networks?limit=1&marker={MISSING}")
    c.call("unknown fields", "GET", f"/v2.0/networks/{net['id']}?fields=colour")
    c.call("filter bad bool", "GET", "/v2.0/networks?admin_state_up=maybe")
    c.call("if-match mismatch", "PUT", f"/v2.0/networks/{net['id']}",
           {"network": {"name": "x"}}, headers={"If-Match": "revision_number=9999"})
    c.call("if-match delete mismatch", "DELETE", f"/v2.0/networks/{net['id']}",
           headers={"If-Match": "revision_number=9999"})
    c.call("if-match bad", "PUT", f"/v2.0/networks/{net['id']}",
           {"network": {"name": "x"}}, headers={"If-Match": "nonsense"})
    c.call("delete network in use", "DELETE", f"/v2.0/networks/{net['id']}")
    c.call("delete subnet in use", "DELETE", f"/v2.0/subnets/{sub['id']}")
    c.call("delete sg in use", "DELETE", f"/v2.0/security-groups/{sg['id']}")
    c.call("delete router in use", "DELETE", f"/v2.0/routers/{router['id']}")
    c.call("delete router port", "DELETE",
           f"/v2.0/ports/{_router_port(c, router['id'])}")
    c.call("sg rule duplicate", "POST", "/v2.0/security-group-rules",
           {"security_group_rule": {"security_group_id": sg["id"], "direction": "ingress",
                                    "protocol": "tcp", "port_range_min": 22,
                                    "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0",
                                    "ethertype": "IPv4", "tenant_id": PROJECT}})
    c.call("sg rule bad range", "POST", "/v2.0/security-group-rules",
           {"security_group_rule": {"security_group_id": sg["id"], "direction": "ingress",
                                    "protocol": "tcp", "port_range_min": 30,
                                    "port_range_max": 20, "tenant_id": PROJECT}})
    c.call("sg rule bad protocol", "POST", "/v2.0/security-group-rules",
           {"security_group_rule": {"security_group_id": sg["id"], "direction": "ingress",
                                    "protocol": "bogus", "tenant_id": PROJECT}})
    c.call("sg rule bad direction", "POST", "/v2.0/security-group-rules",
           {"security_group_rule": {"security_group_id": sg["id"], "direction": "up",
                                    "tenant_id": PROJECT}})
    c.call("sg rule bad ethertype", "POST", "/v2.0/security-group-rules",
           {"security_group_rule": {"security_group_id": sg["id"], "direction": "ingress",
                                    "ethertype": "IPv5", "tenant_id": PROJECT}})
    c.call("sg rule prefix vs ethertype", "POST", "/v2.0/security-group-rules",
           {"security_group_rule": {"security_group_id": sg["id"], "direction": "ingress",
                                    "ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8",
                                    "tenant_id": PROJECT}})
    c.call("sg rule prefix and group", "POST", "/v2.0/security-group-rules",
           {"security_group_rule": {"security_group_id": sg["id"], "direction": "ingress",
                                    "remote_group_id": sg["id"],
                                    "remote_ip_prefix": "10.0.0.0/8", "tenant_id": PROJECT}})
    c.call("sg rule missing sg", "POST", "/v2.0/security-group-rules",
           {"security_group_rule": {"security_group_id": MISSING, "direction": "ingress",
                                    "tenant_id": PROJECT}})
    c.call("sg rule port without protocol", "POST", "/v2.0/security-group-rules",
           {"security_group_rule": {"security_group_id": sg["id"], "direction": "ingress",
                                    "port_range_min": 22, "port_range_max": 22,
                                    "tenant_id": PROJECT}})
    c.call("sg rule update", "PUT", f"/v2.0/security-group-rules/{rule['id']}",
           {"security_group_rule": {"description": "x"}})
    c.call("router interface missing subnet", "PUT",
           f"/v2.0/routers/{router['id']}/add_router_interface", {"subnet_id": MISSING})
    c.call("router interface no body keys", "PUT",
           f"/v2.0/routers/{router['id']}/add_router_interface", {})
    c.call("router interface both", "PUT",
           f"/v2.0/routers/{router['id']}/add_router_interface",
           {"subnet_id": sub["id"], "port_id": port["id"]})
    c.call("router remove interface not attached", "PUT",
           f"/v2.0/routers/{router['id']}/remove_router_interface",
           {"subnet_id": _subnet_of(c, "subnet create pools")})
    c.call("router gateway missing network", "PUT", f"/v2.0/routers/{router['id']}",
           {"router": {"external_gateway_info": {"network_id": MISSING}}})
    c.call("router gateway internal network", "PUT", f"/v2.0/routers/{router['id']}",
           {"router": {"external_gateway_info": {"network_id": net["id"]}}})
    c.call("router route bad nexthop", "PUT", f"/v2.0/routers/{router['id']}",
           {"router": {"routes": [{"destination": "10.200.0.0/16",
                                   "nexthop": "192.168.250.1"}]}})
    c.call("fip associate missing port", "PUT", f"/v2.0/floatingips/{fip['id']}",
           {"floatingip": {"port_id": MISSING}})
    c.call("unknown collection", "GET", "/v2.0/widgets")
    c.call("method not allowed", "PUT", "/v2.0/networks", {"network": {}})
    c.call("delete collection", "DELETE", "/v2.0/networks")

    # --------------------------------------------------------------- more probes
    c.call("sg rule protocol ip", "POST", "/v2.0/security-group-rules",
           {"security_group_rule": {"security_group_id": sg["id"], "direction": "egress",
                                    "protocol": "ip", "tenant_id": PROJECT}})
    c.call("sg rule protocol any", "POST", "/v2.0/security-group-rules",
           {"security_group_rule": {"security_group_id": sg["id"], "direction": "ingress",
                                    "protocol": "any", "ethertype": "IPv6",
                                    "tenant_id": PROJECT}})
    c.call("sg rule protocol number", "POST", "/v2.0/security-group-rules",
           {"security_group_rule": {"security_group_id": sg["id"], "direction": "ingress",
                                    "protocol": "47", "tenant_id": PROJECT}})
    c.call("port update fixed ips", "PUT", f"/v2.0/ports/{fixed['id']}",
           {"port": {"fixed_ips": [{"subnet_id": sub["id"], "ip_address": "10.77.0.60"}]}})
    c.call("port update mac", "PUT", f"/v2.0/ports/{fixed['id']}",
           {"port": {"mac_address": "fa:16:3e:00:00:77"}})
    c.call("port update network", "PUT", f"/v2.0/ports/{fixed['id']}",
           {"port": {"network_id": ext["id"]}})
    c.call("port tags", "PUT", f"/v2.0/ports/{fixed['id']}/tags", {"tags": ["a", "b"]})
    c.call("port list tags-any", "GET", "/v2.0/ports?tags-any=a,z&fields=tags")
    c.call("port list not-tags", "GET",
           f"/v2.0/ports?not-tags=a&network_id={net['id']}&fields=id&fields=name"
           "&sort_key=name&sort_dir=asc&name=p2-t")
    c.call("port list by sg", "GET", f"/v2.0/ports?security_groups={sg['id']}&fields=name")
    c.call("port list limit 0", "GET", f"/v2.0/ports?limit=0&network_id={net['id']}"
           "&fields=name&name=p2-t")
    c.call("port list page reverse", "GET",
           f"/v2.0/ports?limit=1&page_reverse=True&sort_key=name&sort_dir=asc"
           f"&network_id={net['id']}&fields=name&name=p2-t")
    c.call("port list unknown field", "GET", "/v2.0/ports?fields=colour&name=p2-t")
    c.call("port list binding field", "GET", "/v2.0/ports?fields=binding:host_id&name=p2-t")
    c.call("port show unknown field", "GET", f"/v2.0/ports/{port['id']}?fields=colour")
    c.call("port list sort list attr", "GET", "/v2.0/ports?sort_key=fixed_ips&sort_dir=asc")
    c.call("port list empty filter", "GET", "/v2.0/ports?name=&fields=id&device_id=nope")
    c.call("subnet update pools", "PUT", f"/v2.0/subnets/{sub['id']}",
           {"subnet": {"allocation_pools": [{"start": "10.77.0.100", "end": "10.77.0.200"}]}})
    c.call("subnet update gateway null", "PUT", f"/v2.0/subnets/{sub['id']}",
           {"subnet": {"gateway_ip": None}})
    c.call("subnet update cidr", "PUT", f"/v2.0/subnets/{sub['id']}",
           {"subnet": {"cidr": "10.99.0.0/24"}})
    c.call("subnet update network", "PUT", f"/v2.0/subnets/{sub['id']}",
           {"subnet": {"network_id": ext["id"]}})
    c.call("network update shared", "PUT", f"/v2.0/networks/{net['id']}",
           {"network": {"shared": True}})
    c.call("network update provider", "PUT", f"/v2.0/networks/{net['id']}",
           {"network": {"provider:segmentation_id": 77}})
    c.call("network vlan out of range", "POST", "/v2.0/networks",
           {"network": {"provider:network_type": "vlan", "tenant_id": PROJECT,
                        "provider:physical_network": "physnet1",
                        "provider:segmentation_id": 4000}})
    c.call("network vlan taken", "POST", "/v2.0/networks",
           {"network": {"provider:network_type": "vlan", "tenant_id": PROJECT,
                        "provider:physical_network": "physnet1",
                        "provider:segmentation_id": 150}})
    c.call("network unknown physnet", "POST", "/v2.0/networks",
           {"network": {"provider:network_type": "flat", "tenant_id": PROJECT,
                        "provider:physical_network": "nope"}})
    c.call("network bad type", "POST", "/v2.0/networks",
           {"network": {"provider:network_type": "geneve", "tenant_id": PROJECT}})
    c.call("network mtu too big", "PUT", f"/v2.0/networks/{net['id']}",
           {"network": {"mtu": 9000}})
    c.call("port bulk", "POST", "/v2.0/ports",
           {"ports": [{"network_id": net["id"], "tenant_id": PROJECT, "name": "bulk1"},
                      {"network_id": net["id"], "tenant_id": PROJECT, "name": "bulk2"}]})
    c.call("port bulk one bad", "POST", "/v2.0/ports",
           {"ports": [{"network_id": net["id"], "tenant_id": PROJECT, "name": "bulk3"},
                      {"network_id": MISSING, "tenant_id": PROJECT}]})
    c.call("port list after bad bulk", "GET", "/v2.0/ports?name=bulk3&fields=name")
    c.call("router create ha", "POST", "/v2.0/routers",
           {"router": {"name": "rha", "ha": True, "tenant_id": PROJECT}})
    c.call("router create distributed", "POST", "/v2.0/routers",
           {"router": {"name": "rdvr", "distributed": True, "tenant_id": PROJECT}})
    c.call("router with gateway on create", "POST", "/v2.0/routers",
           {"router": {"name": "rgw", "tenant_id": PROJECT,
                       "external_gateway_info": {"network_id": ext["id"]}}})
    pooled = c.make("port on pools subnet", "ports", "port", network_id=net["id"],
                    fixed_ips=[{"subnet_id": _subnet_of(c, "subnet create pools")}])
    c.call("router interface by port", "PUT",
           f"/v2.0/routers/{router['id']}/add_router_interface", {"port_id": pooled["id"]})
    c.call("router interface by port again", "PUT",
           f"/v2.0/routers/{router['id']}/add_router_interface", {"port_id": pooled["id"]})
    c.call("router remove interface by port", "PUT",
           f"/v2.0/routers/{router['id']}/remove_router_interface", {"port_id": pooled["id"]})
    c.call("fip with address", "POST", "/v2.0/floatingips",
           {"floatingip": {"floating_network_id": ext["id"], "tenant_id": PROJECT,
                           "floating_ip_address": "203.0.113.199"}})
    c.call("fip address taken", "POST", "/v2.0/floatingips",
           {"floatingip": {"floating_network_id": ext["id"], "tenant_id": PROJECT,
                           "floating_ip_address": "203.0.113.199"}})
    c.call("fip address outside", "POST", "/v2.0/floatingips",
           {"floatingip": {"floating_network_id": ext["id"], "tenant_id": PROJECT,
                           "floating_ip_address": "192.0.2.5"}})
    c.call("agent update", "PUT", f"/v2.0/agents/{MISSING}",
           {"agent": {"admin_state_up": False}})
    c.call("agents l3 routers", "GET", f"/v2.0/agents/{MISSING}/l3-routers")

    # --------------------------------------------------------------- teardown
    c.call("router remove interface", "PUT",
           f"/v2.0/routers/{router['id']}/remove_router_interface", {"subnet_id": sub["id"]})
    c.call("router clear gateway", "PUT", f"/v2.0/routers/{router['id']}",
           {"router": {"external_gateway_info": {}}})
    c.call("router after clear", "GET", f"/v2.0/routers/{router['id']}")
    c.call("fip delete", "DELETE", f"/v2.0/floatingips/{fip['id']}")
    c.call("router delete", "DELETE", f"/v2.0/routers/{router['id']}")
    c.call("port delete", "DELETE", f"/v2.0/ports/{port['id']}")
    c.call("port delete again", "DELETE", f"/v2.0/ports/{port['id']}")
    c.call("sg rule delete", "DELETE", f"/v2.0/security-group-rules/{rule['id']}")
    c.call("tags delete all", "DELETE", f"/v2.0/networks/{net['id']}/tags")


def _router_port(c: Client, router_id: str) -> str:
    _, body = c.call("", "GET", f"/v2.0/ports?device_id={router_id}"
                     "&device_owner=network:router_interface")
    ports = body.get("ports") or [{"id": MISSING}]
    return str(ports[0]["id"])


def _subnet_of(c: Client, label: str) -> str:
    return str(c.seen[label][1]["subnet"]["id"])


# ------------------------------------------------------------------ comparing


def mask(value: Any, key: str = "") -> Any:
    if key in VOLATILE:
        return "<v>"
    if isinstance(value, dict):
        return {k: mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, key) for v in value]
    if isinstance(value, str):
        if _UUID.match(value):
            return "<uuid>"
        if _TS.match(value):
            return "<ts>"
        if _MAC.match(value):
            return "<mac>"
        if value.startswith("http://"):
            return re.sub(r"^http://[^/]+", "<base>", re.sub(r"[0-9a-f-]{36}", "<uuid>", value))
    return value


def _canon(item: dict[str, Any]) -> str:
    return json.dumps({k: mask(v, k) for k, v in item.items()
                       if k not in ("revision_number", "description", "normalized_cidr",
                                    "standard_attr_id", "belongs_to_default_sg")},
                      sort_keys=True, default=str)


def _masked_text(text: Any) -> str:
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>",
                  str(text))


def diff(path: str, ours: Any, theirs: Any, out: list[str], *, values: bool) -> None:
    """Differences of kumonet's value (ours) from neutron's (theirs)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        missing = sorted(set(theirs) - set(ours))
        extra = sorted(set(ours) - set(theirs))
        if missing:
            out.append(f"{path}: keys missing {missing}")
        if extra:
            out.append(f"{path}: keys extra {extra}")
        for key in sorted(set(ours) & set(theirs)):
            diff(f"{path}.{key}", ours[key], theirs[key], out, values=values)
    elif isinstance(ours, list) and isinstance(theirs, list):
        if ours and theirs and all(isinstance(x, dict) for x in ours + theirs):
            # compare the keys of list members; values only if lengths match
            keys_o = set().union(*(x.keys() for x in ours))
            keys_t = set().union(*(x.keys() for x in theirs))
            if keys_o != keys_t:
                out.append(f"{path}[]: keys missing {sorted(keys_t - keys_o)} "
                           f"extra {sorted(keys_o - keys_t)}")
            if len(ours) == len(theirs) and values:
                # order is the server's choice unless sorted: pair members by content
                ours, theirs = sorted(ours, key=_canon), sorted(theirs, key=_canon)
                for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
                    diff(f"{path}[{i}]", {k: a[k] for k in a if k in b},
                         {k: b[k] for k in b if k in a}, out, values=values)
            elif values:
                out.append(f"{path}: {len(ours)} items vs neutron {len(theirs)}")
        elif values and sorted(map(repr, mask(ours))) != sorted(map(repr, mask(theirs))):
            out.append(f"{path}: kumonet {ours!r} neutron {theirs!r}")
    elif values and mask(ours, path.rsplit(".", 1)[-1]) != mask(theirs, path.rsplit(".", 1)[-1]):
        out.append(f"{path}: kumonet {ours!r} neutron {theirs!r}")


def compare(label: str, ours: Observation, theirs: Observation) -> list[str]:
    out: list[str] = []
    if ours[0] != theirs[0]:
        out.append(f"status kumonet {ours[0]} neutron {theirs[0]}")
    o_body, t_body = ours[1], theirs[1]
    o_err = isinstance(o_body, dict) and "NeutronError" in o_body
    t_err = isinstance(t_body, dict) and "NeutronError" in t_body
    if o_err or t_err:
        o_type = o_body["NeutronError"].get("type") if o_err else None
        t_type = t_body["NeutronError"].get("type") if t_err else None
        if o_type != t_type:
            out.append(f"error type kumonet {o_type} neutron {t_type}")
        o_msg = _masked_text(o_body["NeutronError"].get("message")) if o_err else None
        t_msg = _masked_text(t_body["NeutronError"].get("message")) if t_err else None
        if o_err and t_err and o_msg != t_msg and "-v" in sys.argv:
            out.append(f"  messages: kumonet {o_body['NeutronError'].get('message')!r}\n"
                       f"            neutron {t_body['NeutronError'].get('message')!r}")
        return out
    if ours[0] >= 400 or theirs[0] >= 400:
        if mask(o_body) != mask(t_body):
            out.append(f"body kumonet {str(o_body)[:200]} neutron {str(t_body)[:200]}")
        return out
    diff("", o_body, t_body, out, values=label not in {"extensions", "agents"})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--neutron", default="http://127.0.0.1:19696")
    ap.add_argument("--kumonet", required=True)
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="also show both error messages")
    ap.add_argument("--dump", action="append", default=[],
                    help="print both answers of this step (repeatable)")
    ap.add_argument("--exact-ips", action="store_true",
                    help="compare allocated addresses too")
    args = ap.parse_args()
    if not args.exact_ips:
        VOLATILE.update(ADDRESSES)
    theirs, ours = Client(args.neutron), Client(args.kumonet)
    scenario(theirs)
    scenario(ours)
    for label in args.dump:
        for name, client in (("neutron", theirs), ("kumonet", ours)):
            print(f"--- {label} {name}: {json.dumps(client.seen.get(label), indent=1)}")
    differing = 0
    for label in theirs.order:
        if label not in ours.seen:
            print(f"[{label}] not reached by kumonet")
            differing += 1
            continue
        found = compare(label, ours.seen[label], theirs.seen[label])
        if found:
            differing += 1
            print(f"[{label}] ({theirs.seen[label][0]})")
            for line in found:
                print("   " + line)
    ext_t = {e["alias"] for e in theirs.seen["extensions"][1]["extensions"]}
    ext_o = {e["alias"] for e in ours.seen["extensions"][1]["extensions"]}
    print(f"\nextensions only neutron lists: {sorted(ext_t - ext_o)}")
    print(f"extensions only kumonet lists: {sorted(ext_o - ext_t)}")
    print(f"\n{differing} of {len(theirs.order)} steps differ")


if __name__ == "__main__":
    main()
