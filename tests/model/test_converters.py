from __future__ import annotations

from typing import Any

import pytest

from kumonet.model import converters as c
from kumonet.model.errors import BadRequest


@pytest.mark.parametrize(("convert", "value", "expected"), [
    (c.to_bool, "True", True), (c.to_bool, 0, False), (c.to_int, "12", 12),
    (c.cidr, "10.0.0.0/8", "10.0.0.0/8"), (c.cidr, "2001:DB8::/64", "2001:db8::/64"),
    (c.ip_address, "2001:DB8::1", "2001:db8::1"),
    (c.mac_address, "FA-16-3E-00-00-01", "fa:16:3e:00:00:01"),
    (c.ip_version, "6", 6),
])
def test_converts(convert: c.Converter, value: Any, expected: Any) -> None:
    assert convert(value) == expected


@pytest.mark.parametrize(("convert", "value"), [
    (c.to_bool, "maybe"), (c.to_bool, 2), (c.to_int, True), (c.to_int, 1.5),
    (c.cidr, "10.0.0.1/8"), (c.cidr, "10.0.0.0"), (c.ip_address, 5), (c.uuid, "x"),
    (c.mac_address, "01:00:00:00:00:01"), (c.string(3), "long"), (c.ip_version, True),
    (c.list_of(c.uuid, unique=True), ["1" * 32, "1" * 32]), (c.tag, "a,b"),
])
def test_refuses(convert: c.Converter, value: Any) -> None:
    with pytest.raises(BadRequest):
        convert(value)


def test_booleans_as_oslo_reads_them() -> None:
    # Neutron's convert_to_boolean is oslo's bool_from_string(strict=True).
    for text, value in (("yes", True), ("On", True), ("t", True), ("n", False), ("off", False)):
        assert c.to_bool(text) is value


@pytest.mark.parametrize(("convert", "value"), [
    (c.to_bool, "maybe"), (c.to_int, "x"), (c.ip_version, "x"), (c.subnet_cidr, "10.0.0.0/33"),
    (c.subnet_cidr, "nonsense")])
def test_converter_refusals_are_invalid_input(convert: c.Converter, value: Any) -> None:
    # Neutron's converters raise InvalidInput; its validators HTTPBadRequest.
    with pytest.raises(BadRequest) as info:
        convert(value)
    assert info.value.type_name == "InvalidInput"


def test_subnet_cidr_clears_host_bits() -> None:
    assert c.subnet_cidr("10.0.0.1/24") == "10.0.0.0/24"


def test_choice_refusal_worded_as_neutron_lib() -> None:
    with pytest.raises(BadRequest) as info:
        c.one_of("ingress", "egress")("up")
    assert info.value.message == "Invalid input for operation: up is not in valid_values."
