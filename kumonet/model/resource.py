"""Resource definitions: each Neutron resource declared once, as data.

A :class:`ResourceDefinition` lists its :class:`Attribute` s: how a client
value is converted, its default, whether it may be given on create or update,
and who may read and write it (:class:`Access`). The API's generic machinery
(body validation, member views, filters, sorting) is derived from it, so
adding an attribute is one line.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kumonet.model.converters import Converter
from kumonet.model.errors import BadRequest, NotAuthorized

# How converters word a refusal; Neutron names the attribute instead.
_OPERATION = "Invalid input for operation: "


class Access(enum.Enum):
    """Who may read or write an attribute (Neutron's default policy)."""

    EVERYONE = "everyone"
    # Neutron's ``ADMIN_OR_SERVICE`` (2023.2+): also a caller with the
    # ``service`` role (Nova setting and reading a port's binding).
    ADMIN_OR_SERVICE = "admin_or_service"
    ADMIN = "admin"
    NOBODY = "nobody"

    def allows(self, is_admin: bool, is_service: bool = False) -> bool:
        if self is Access.EVERYONE:
            return True
        if self is Access.ADMIN_OR_SERVICE:
            return is_admin or is_service
        return self is Access.ADMIN and is_admin


class Default(enum.Enum):
    """Markers for attributes without a literal default."""

    REQUIRED = "required"  # the client must give it on create
    COMPUTED = "computed"  # the resource's create logic fills it in


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    convert: Converter
    default: Any = Default.COMPUTED
    on_create: bool = True
    on_update: bool = True
    read: Access = Access.EVERYONE
    write: Access = Access.EVERYONE
    filterable: bool = True
    sortable: bool = True

    @property
    def is_required(self) -> bool:
        return self.default is Default.REQUIRED


@dataclass(frozen=True, slots=True)
class ResourceDefinition:
    collection: str
    member: str
    attributes: tuple[Attribute, ...]
    # The URL's collection name when it differs from the body key
    # (``/v2.0/security-groups`` answers ``{"security_groups": ...}``).
    url_name: str = ""
    by_name: Mapping[str, Attribute] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [a.name for a in self.attributes]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.collection}: duplicate attribute names")
        object.__setattr__(self, "by_name", {a.name: a for a in self.attributes})

    def with_attributes(self, *extra: Attribute) -> ResourceDefinition:
        """A new definition with more attributes (extensions add theirs)."""
        return ResourceDefinition(self.collection, self.member, (*self.attributes, *extra),
                                  self.url_name)

    @property
    def path(self) -> str:
        """The collection's name in URLs."""
        return self.url_name or self.collection

    def _body_of(self, body: Any) -> dict[str, Any]:
        # Neutron's wording for each refusal.
        if not isinstance(body, dict):
            raise BadRequest("Body contains invalid data")
        if not isinstance(body.get(self.member), dict):
            raise BadRequest(f"Unable to find '{self.member}' in request body")
        if len(body) != 1:
            raise BadRequest(f"Only one key '{self.member}' is allowed in the body")
        inner: dict[str, Any] = body[self.member]
        unknown = [k for k in inner if k not in self.by_name]
        if unknown:
            raise BadRequest(f"Unrecognized attribute(s) '{', '.join(sorted(unknown))}'")
        return inner

    @staticmethod
    def _convert(attr: Attribute, value: Any) -> Any:
        """The converted value; a validator's refusal names the attribute, as
        Neutron words it ("Invalid input for name. Reason: ...")."""
        try:
            return attr.convert(value)
        except BadRequest as error:
            if error.type_name != "HTTPBadRequest" or not error.message.startswith(_OPERATION):
                raise
            reason = error.message[len(_OPERATION):].rstrip(".")
            raise BadRequest(f"Invalid input for {attr.name}. Reason: {reason}.") from None

    def _check_write(self, attr: Attribute, action: str, is_admin: bool,
                     is_service: bool) -> None:
        if not attr.write.allows(is_admin, is_service):
            raise NotAuthorized(
                f"rule:{action}_{self.member}:{attr.name} is disallowed by policy")

    def parse_create(self, body: Any, *, is_admin: bool, is_service: bool = False
                     ) -> dict[str, Any]:
        """The converted attributes of a create request, literal defaults
        filled in; computed ones are left out for the resource's logic."""
        inner = self._body_of(body)
        out: dict[str, Any] = {}
        for attr in self.attributes:
            if attr.name in inner:
                if not attr.on_create:
                    raise BadRequest(f"Attribute '{attr.name}' not allowed in POST")
                self._check_write(attr, "create", is_admin, is_service)
                out[attr.name] = self._convert(attr, inner[attr.name])
            elif attr.is_required:
                raise BadRequest(f"Failed to parse request. Required attribute '{attr.name}' "
                                 "not specified")
            elif attr.default is not Default.COMPUTED:
                out[attr.name] = attr.default
        return out

    def parse_update(self, body: Any, *, is_admin: bool, is_service: bool = False
                     ) -> dict[str, Any]:
        inner = self._body_of(body)
        out: dict[str, Any] = {}
        for name, value in inner.items():
            attr = self.by_name[name]
            if not attr.on_update:
                raise BadRequest(f"Cannot update read-only attribute {name}")
            self._check_write(attr, "update", is_admin, is_service)
            out[name] = self._convert(attr, value)
        return out

    def view(self, resource: Mapping[str, Any], *, is_admin: bool, is_service: bool = False
             ) -> dict[str, Any]:
        """What a caller may see of a stored resource."""
        if is_admin:
            return {k: v for k, v in resource.items() if k in self.by_name}
        return {k: v for k, v in resource.items()
                if (a := self.by_name.get(k)) is not None
                and a.read.allows(False, is_service)}
