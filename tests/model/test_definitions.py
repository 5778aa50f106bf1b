"""Meta-test over every resource definition (STYLE.md point 6)."""

from __future__ import annotations

import pytest

from kumonet.model.definitions import ALL_DEFINITIONS
from kumonet.model.resource import Access, Attribute, Default, ResourceDefinition

CASES = [(d, a) for d in ALL_DEFINITIONS for a in d.attributes]


def _ids(case: tuple[ResourceDefinition, Attribute]) -> str:
    return f"{case[0].member}.{case[1].name}"


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_default_passes_its_own_converter(case: tuple[ResourceDefinition, Attribute]) -> None:
    _, attr = case
    if isinstance(attr.default, Default):
        return
    assert attr.convert(attr.default) == attr.default


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_admin_only_attribute_is_hidden_from_members(
        case: tuple[ResourceDefinition, Attribute]) -> None:
    definition, attr = case
    resource = {a.name: None for a in definition.attributes}
    member_view = definition.view(resource, is_admin=False)
    admin_view = definition.view(resource, is_admin=True)
    assert attr.name in admin_view
    assert (attr.name in member_view) == (attr.read is Access.EVERYONE)
    if attr.read is Access.ADMIN:
        # Members cannot write what they cannot read.
        assert attr.write is not Access.EVERYONE


@pytest.mark.parametrize("definition", ALL_DEFINITIONS, ids=lambda d: d.member)
def test_definition_has_the_standard_attributes(definition: ResourceDefinition) -> None:
    for name in ("id", "tenant_id", "project_id", "created_at", "updated_at",
                 "revision_number", "description"):
        assert name in definition.by_name
    # Neutron's security group rules are the one resource here without tags.
    assert ("tags" in definition.by_name) == (definition.member != "security_group_rule")
    assert not definition.by_name["id"].on_update
    # A required attribute can only come from a create body.
    for attr in definition.attributes:
        if attr.is_required:
            assert attr.on_create
