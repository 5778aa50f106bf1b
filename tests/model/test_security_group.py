from __future__ import annotations

from typing import Any

import pytest

from kumonet.model.errors import BadRequest
from kumonet.model.security_group import (
    default_group_id,
    default_rules,
    ethertype,
    find_duplicate,
    protocol,
    validate_rule,
)


def _rule(**attrs: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"direction": "ingress", "ethertype": "IPv4", "protocol": None,
                            "port_range_min": None, "port_range_max": None,
                            "remote_ip_prefix": None, "remote_group_id": None,
                            "remote_address_group_id": None}
    return {**base, **attrs}


@pytest.mark.parametrize(("given", "stored"), [
    ("tcp", "tcp"), ("TCP", "tcp"), ("icmpv6", "icmpv6"), (6, "6"), ("017", "17"),
    ("any", None), (None, None), ("0", "0"), ("255", "255")])
def test_protocol_accepts_names_and_numbers(given: Any, stored: str | None) -> None:
    assert protocol(given) == stored


@pytest.mark.parametrize("given", ["256", -1, "tcpx", True, [], "1.5"])
def test_protocol_refuses_others(given: Any) -> None:
    with pytest.raises(BadRequest) as info:
        protocol(given)
    assert info.value.type_name == "SecurityGroupRuleInvalidProtocol"


def test_ethertype_is_case_insensitive() -> None:
    assert ethertype("ipv6") == "IPv6"
    with pytest.raises(BadRequest):
        ethertype("IPX")


def test_validate_rule_normalized_cidr() -> None:
    # As Neutron: the prefix's network, null when the rule names none.
    assert validate_rule(_rule())["normalized_cidr"] is None
    assert validate_rule(_rule(ethertype="IPv6"))["normalized_cidr"] is None
    assert validate_rule(_rule(remote_group_id="g"))["normalized_cidr"] is None
    assert validate_rule(_rule(remote_ip_prefix="10.0.0.0/8"))["normalized_cidr"] == \
        "10.0.0.0/8"
    assert validate_rule(_rule(protocol="icmp", port_range_min=8, port_range_max=0))


@pytest.mark.parametrize(("attrs", "kind"), [
    ({"protocol": "tcp", "port_range_min": 10, "port_range_max": 9},
     "SecurityGroupInvalidPortRange"),
    ({"protocol": "sctp", "port_range_min": 0, "port_range_max": 9},
     "SecurityGroupInvalidPortValue"),
    ({"protocol": "icmp", "port_range_max": 0}, "SecurityGroupMissingIcmpType"),
    ({"protocol": "58", "ethertype": "IPv4"}, "SecurityGroupEthertypeConflictWithProtocol"),
    ({"protocol": "vrrp", "port_range_min": 1, "port_range_max": 1},
     "SecurityGroupInvalidProtocolForPortRange"),
    ({"remote_ip_prefix": "::/0"}, "SecurityGroupRuleParameterConflict"),
])
def test_validate_rule_refusals(attrs: dict[str, Any], kind: str) -> None:
    with pytest.raises(BadRequest) as info:
        validate_rule(_rule(**attrs))
    assert info.value.type_name == kind


def test_duplicates_compare_meaning_not_spelling() -> None:
    existing = [{**validate_rule(_rule(protocol="ipv6-icmp", ethertype="IPv6")), "id": "a"},
                {**validate_rule(_rule(protocol="tcp", remote_ip_prefix="0.0.0.0/0")),
                 "id": "b"}]
    assert find_duplicate(validate_rule(_rule(protocol="icmpv6", ethertype="IPv6")),
                          existing)["id"] == "a"  # type: ignore[index]
    assert find_duplicate(validate_rule(_rule(protocol="6")), existing)["id"] == "b"  # type: ignore[index]
    assert find_duplicate(validate_rule(_rule(protocol="udp")), existing) is None


def test_default_group() -> None:
    assert default_group_id("p1") == default_group_id("p1") != default_group_id("p2")
    rules = default_rules("g")
    assert len(rules) == 4
    assert {r["remote_group_id"] for r in rules if r["direction"] == "ingress"} == {"g"}
