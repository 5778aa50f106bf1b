"""Attributes every Neutron resource shares (id, project, timestamps,
revision, description, tags), declared once and reused by each definition."""

from __future__ import annotations

from datetime import UTC, datetime

from kumonet.model import converters as c
from kumonet.model.resource import Access, Attribute


def base_attributes(*, with_name: bool = True, with_tags: bool = True
                    ) -> tuple[Attribute, ...]:
    attrs = [
        Attribute("id", c.uuid, on_update=False),
        Attribute("tenant_id", c.project_id, on_update=False),
        Attribute("project_id", c.project_id, on_update=False),
        Attribute("description", c.string(255), default=""),
        Attribute("created_at", c.string(64), on_create=False, on_update=False),
        Attribute("updated_at", c.string(64), on_create=False, on_update=False),
        Attribute("revision_number", c.to_int, on_create=False, on_update=False),
        Attribute("tags", c.list_of(c.tag), on_create=False, on_update=False,
                  filterable=False, sortable=False),
    ]
    if with_name:
        attrs.insert(1, Attribute("name", c.string(255), default=""))
    if not with_tags:
        attrs = [a for a in attrs if a.name != "tags"]
    return tuple(attrs)


def admin_only(attr: Attribute) -> Attribute:
    """The same attribute, readable and writable by admins only."""
    return Attribute(attr.name, attr.convert, attr.default, attr.on_create, attr.on_update,
                     Access.ADMIN, Access.ADMIN, attr.filterable, attr.sortable)


def timestamp(now: datetime) -> str:
    """Neutron's timestamp format: seconds, UTC, ``Z``."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

