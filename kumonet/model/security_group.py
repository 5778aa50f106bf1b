"""The Neutron security group and security group rule resources, and the
pure rule validation Neutron applies (protocol, port ranges or ICMP
type/code, ethertype against the remote prefix, remote prefix vs group).

A group's stored JSON embeds its rules (``security_group_rules``), so an
agent compiling ACLs reads one key per group; each rule is also stored on
its own key for ``/security-group-rules/{id}``. Both are written in one
transaction.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from kumonet.model import converters as c
from kumonet.model.common import base_attributes
from kumonet.model.errors import BadRequest, Conflict, NotFound
from kumonet.model.resource import Attribute, Default, ResourceDefinition

# IANA names Neutron accepts (neutron_lib.constants.IP_PROTOCOL_MAP), with
# their numbers; "icmpv6" and "ipv6-icmp" are the same protocol.
PROTOCOL_NUMBERS: Mapping[str, int] = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1,
    "igmp": 2, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58,
    "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89,
    "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}
# Protocols whose rules may carry a port range.
PORT_PROTOCOLS = frozenset({6, 17, 33, 132, 136})
ICMP_PROTOCOLS = frozenset({1, 58})
ETHERTYPES = ("IPv4", "IPv6")
DIRECTIONS = ("ingress", "egress")
DEFAULT_GROUP_NAME = "default"
DEFAULT_GROUP_DESCRIPTION = "Default security group"
# Default groups get a deterministic id per project: two servers creating a
# project's default at once write the same key, and its ``key_absent``
# compare lets only one of them commit.
DEFAULT_GROUP_NAMESPACE = uuid.UUID("6b3f0e52-5c2a-4b8e-9a55-2f1f6a1d0c01")


def protocol(value: Any) -> str | None:
    """A protocol name Neutron knows, or a number 0-255 (kept as text, as
    Neutron stores it); ``any`` means every protocol (stored as null)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _invalid_protocol(value)
    text = str(value).lower()
    if text == "any":
        return None
    if text in PROTOCOL_NUMBERS:
        return text
    if text.isdigit() and 0 <= int(text) <= 255:
        return str(int(text))
    raise _invalid_protocol(value)


def _invalid_protocol(value: Any) -> BadRequest:
    names = ", ".join(sorted(PROTOCOL_NUMBERS))
    return BadRequest(f"Security group rule protocol {value} not supported. Only protocol "
                      f"values [{names}] and integer representations [0 to 255] are "
                      "supported.", type_name="SecurityGroupRuleInvalidProtocol")


def port_value(value: Any) -> int | None:
    if value is None:
        return None
    try:
        number = c.to_int(value)
    except BadRequest:
        number = -1  # neutron-lib's convert_validate_port_value: one error for both
    if not 0 <= number <= 65535:
        raise BadRequest(f"Invalid value for port {value}",
                         type_name="SecurityGroupInvalidPortValue")
    return number


def ethertype(value: Any) -> str:
    for known in ETHERTYPES:
        if isinstance(value, str) and value.lower() == known.lower():
            return known
    raise BadRequest(f"Security group rule for ethertype '{value}' not supported. Allowed "
                     "values are ['IPv4', 'IPv6'].",
                     type_name="SecurityGroupRuleInvalidEtherType")


def remote_prefix(value: Any) -> str | None:
    """A prefix, host bits cleared as Neutron normalises it."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"Invalid input for operation: '{value}' is not a valid IP subnet.")
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise BadRequest(f"Invalid input for operation: '{value}' is not a valid IP "
                         "subnet.") from None


SECURITY_GROUP_RULE = ResourceDefinition("security_group_rules", "security_group_rule", (
    # Neutron's rules are not taggable (no "tags" key).
    *base_attributes(with_name=False, with_tags=False),
    Attribute("security_group_id", c.uuid, default=Default.REQUIRED, on_update=False),
    Attribute("direction", c.one_of(*DIRECTIONS), default=Default.REQUIRED, on_update=False),
    Attribute("ethertype", ethertype, default="IPv4", on_update=False),
    Attribute("protocol", protocol, default=None, on_update=False),
    Attribute("port_range_min", port_value, default=None, on_update=False),
    Attribute("port_range_max", port_value, default=None, on_update=False),
    Attribute("remote_ip_prefix", remote_prefix, default=None, on_update=False),
    Attribute("normalized_cidr", c.nullable(c.string(64)), on_create=False, on_update=False),
    Attribute("remote_group_id", c.nullable(c.uuid), default=None, on_update=False),
    Attribute("remote_address_group_id", c.one_of(None), default=None, on_update=False),
    Attribute("belongs_to_default_sg", c.to_bool, on_create=False, on_update=False),
), url_name="security-group-rules")

SECURITY_GROUP = ResourceDefinition("security_groups", "security_group", (
    *base_attributes(),
    Attribute("stateful", c.to_bool, default=True),
    Attribute("shared", c.to_bool, on_create=False, on_update=False),
    Attribute("security_group_rules", c.list_of(c.dict_body), on_create=False,
              on_update=False, filterable=False, sortable=False),
), url_name="security-groups")

# What a rule is, for duplicate detection (Neutron compares these fields).
RULE_IDENTITY = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max",
                 "remote_ip_prefix", "remote_group_id", "remote_address_group_id")


def default_group_id(project_id: str) -> str:
    return str(uuid.uuid5(DEFAULT_GROUP_NAMESPACE, project_id))


def protocol_number(name: str | None) -> int | None:
    if name is None:
        return None
    return PROTOCOL_NUMBERS.get(name, int(name) if name.isdigit() else None)


def validate_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """Check a rule's fields together as Neutron does; returns the rule with
    ``normalized_cidr`` filled in."""
    prefix = rule.get("remote_ip_prefix")
    if prefix is not None and rule.get("remote_group_id") is not None:
        raise BadRequest("Only one of remote_ip_prefix or remote_group_id or "
                         "remote_address_group_id may be provided.",
                         type_name="SecurityGroupMultipleRemoteEntites")
    if prefix is not None:
        version = ipaddress.ip_network(prefix).version
        if f"IPv{version}" != rule["ethertype"]:
            raise BadRequest(f"Conflicting value ethertype {rule['ethertype']} for CIDR "
                             f"{prefix}", type_name="SecurityGroupRuleParameterConflict")
    name = rule.get("protocol")
    number = protocol_number(name)
    if number == 58 and rule["ethertype"] == "IPv4":
        raise BadRequest(f"Ethertype IPv4 is not supported by protocol {name}.",
                         type_name="SecurityGroupEthertypeConflictWithProtocol")
    low, high = rule.get("port_range_min"), rule.get("port_range_max")
    if low is not None or high is not None:
        if number is None:
            raise BadRequest("Must also specify protocol if port range is given.",
                             type_name="SecurityGroupProtocolRequiredWithPorts")
        if number in PORT_PROTOCOLS:
            if low == 0 or high == 0:
                raise BadRequest("Invalid value for port 0",
                                 type_name="SecurityGroupInvalidPortValue")
            if low is None or high is None or low > high:
                raise BadRequest("For TCP/UDP protocols, port_range_min must be <= "
                                 "port_range_max", type_name="SecurityGroupInvalidPortRange")
        elif number in ICMP_PROTOCOLS:
            for value, field in ((low, "type"), (high, "code")):
                if value is not None and not 0 <= value <= 255:
                    raise BadRequest(f"Invalid value for ICMP {field} (port-range-min) "
                                     f"{value}. It must be 0 to 255.",
                                     type_name="SecurityGroupInvalidIcmpValue")
            if low is None and high is not None:
                raise BadRequest(f"ICMP code (port-range-max) {high} is provided but ICMP type "
                                 "(port-range-min) is missing.",
                                 type_name="SecurityGroupMissingIcmpType")
        else:
            raise BadRequest(f"Invalid protocol {name} for port range, only supported for TCP, "
                             "UDP, UDPLITE, SCTP and DCCP.",
                             type_name="SecurityGroupInvalidProtocolForPortRange")
    # Neutron: the prefix's network, or null when the rule names no prefix.
    return {**rule, "normalized_cidr": prefix}


def rule_key(rule: Mapping[str, Any]) -> tuple[Any, ...]:
    """Two rules with the same key are duplicates. ``0.0.0.0/0`` and no prefix
    mean the same, as do ``icmpv6`` and ``ipv6-icmp`` and a name and its number."""
    values = dict(rule)
    values["protocol"] = protocol_number(rule.get("protocol"))
    if values.get("remote_group_id") is None and values.get("remote_ip_prefix") is None:
        values["remote_ip_prefix"] = "0.0.0.0/0" if rule.get("ethertype") == "IPv4" else "::/0"
    return tuple(values.get(name) for name in RULE_IDENTITY)


def find_duplicate(rule: Mapping[str, Any], existing: Iterable[Mapping[str, Any]]
                   ) -> Mapping[str, Any] | None:
    key = rule_key(rule)
    return next((r for r in existing if rule_key(r) == key), None)


def rule_exists(existing_id: str) -> Conflict:
    return Conflict(f"Security group rule already exists. Rule id is {existing_id}.",
                    type_name="SecurityGroupRuleExists")


def group_not_found(group_id: str) -> NotFound:
    return NotFound(f"Security group {group_id} does not exist",
                    type_name="SecurityGroupNotFound")


def default_rules(group_id: str) -> list[dict[str, Any]]:
    """Neutron's default rules: all egress, ingress from the group itself,
    for IPv4 and IPv6 (without ids and owners; the API fills them in)."""
    rules = []
    for ether in ETHERTYPES:
        rules.append({"direction": "egress", "ethertype": ether, "remote_group_id": None})
        rules.append({"direction": "ingress", "ethertype": ether,
                      "remote_group_id": group_id})
    return [{"protocol": None, "port_range_min": None, "port_range_max": None,
             "remote_ip_prefix": None, "remote_address_group_id": None, "description": None,
             **r} for r in rules]
