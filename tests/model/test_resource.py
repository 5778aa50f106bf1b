from __future__ import annotations

import pytest

from kumonet.model import converters as c
from kumonet.model.errors import BadRequest, NotAuthorized, resource_not_found
from kumonet.model.resource import Access, Attribute, Default, ResourceDefinition

THING = ResourceDefinition("things", "thing", (
    Attribute("id", c.uuid, on_update=False),
    Attribute("name", c.string(10), default=""),
    Attribute("size", c.to_int, default=Default.REQUIRED),
    Attribute("secret", c.string(10), default="", read=Access.ADMIN, write=Access.ADMIN),
    Attribute("status", c.string(10), on_create=False, on_update=False),
))


def test_parse_create_fills_literal_defaults_only() -> None:
    assert THING.parse_create({"thing": {"size": "3"}}, is_admin=False) == \
        {"name": "", "size": 3, "secret": ""}


@pytest.mark.parametrize(("body", "error"), [
    ({"thing": {}}, BadRequest),  # size required
    ({"thing": {"size": 1, "bogus": 1}}, BadRequest),
    ({"thing": {"size": 1, "status": "x"}}, BadRequest),
    ({"thing": {"size": 1, "secret": "x"}}, NotAuthorized),
    ({"things": {"size": 1}}, BadRequest),
    ({"thing": {"size": 1}, "other": 1}, BadRequest),
    ([], BadRequest),
])
def test_parse_create_refusals(body: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        THING.parse_create(body, is_admin=False)


def test_parse_update_and_view() -> None:
    assert THING.parse_update({"thing": {"name": "n"}}, is_admin=False) == {"name": "n"}
    with pytest.raises(BadRequest, match="read-only"):
        THING.parse_update({"thing": {"id": "x"}}, is_admin=True)
    stored = {"id": "i", "name": "n", "size": 1, "secret": "s", "status": "UP"}
    assert "secret" not in THING.view(stored, is_admin=False)
    assert THING.view(stored, is_admin=True) == stored


def test_not_found_is_named_after_the_resource() -> None:
    error = resource_not_found("network", "x")
    assert error.status == 404 and error.type_name == "NetworkNotFound"
    assert error.body()["NeutronError"]["message"] == "Network x could not be found."
    error = resource_not_found("security_group_rule", "x")
    assert error.type_name == "SecurityGroupRuleNotFound"
    assert error.body()["NeutronError"]["message"] == "Security group rule x does not exist"


def test_not_found_types_neutron_spells_its_own_way() -> None:
    error = resource_not_found("floatingip", "x")
    assert (error.type_name, error.message) == ("FloatingIPNotFound",
                                                "Floating IP x could not be found")
    assert resource_not_found("router", "x").message == "Router x could not be found"


@pytest.mark.parametrize(("body", "type_name", "message"), [
    ({"thing": {"size": 1, "name": 5}}, "HTTPBadRequest",
     "Invalid input for name. Reason: '5' is not a valid string."),
    ({"thing": {"size": "x"}}, "InvalidInput",
     "Invalid input for operation: 'x' is not an integer."),
    ([], "HTTPBadRequest", "Body contains invalid data"),
    ({"things": {}}, "HTTPBadRequest", "Unable to find 'thing' in request body"),
])
def test_refusals_worded_as_neutron(body: object, type_name: str, message: str) -> None:
    # Validators name the attribute; converters (int, bool) speak of "operation".
    with pytest.raises(BadRequest) as info:
        THING.parse_create(body, is_admin=True)
    assert (info.value.type_name, info.value.message) == (type_name, message)


def test_admin_or_service_access() -> None:
    """Neutron 2023.2+'s ADMIN_OR_SERVICE: the ``service`` role (Nova) reads
    and writes such an attribute; a member neither."""
    bound = ResourceDefinition("things", "thing", (
        Attribute("size", c.to_int, default=0),
        Attribute("host", c.string(10), default="", read=Access.ADMIN_OR_SERVICE,
                  write=Access.ADMIN_OR_SERVICE),
        Attribute("secret", c.string(10), default="", read=Access.ADMIN, write=Access.ADMIN),
    ))
    assert bound.parse_update({"thing": {"host": "h"}}, is_admin=False, is_service=True) == \
        {"host": "h"}
    with pytest.raises(NotAuthorized, match="rule:update_thing:host"):
        bound.parse_update({"thing": {"host": "h"}}, is_admin=False)
    with pytest.raises(NotAuthorized, match="rule:create_thing:secret"):
        bound.parse_create({"thing": {"secret": "s"}}, is_admin=False, is_service=True)
    stored = {"size": 1, "host": "h", "secret": "s"}
    assert bound.view(stored, is_admin=False, is_service=True) == {"size": 1, "host": "h"}
    assert bound.view(stored, is_admin=False) == {"size": 1}
    assert bound.view(stored, is_admin=True) == stored
