"""Neutron's API errors, as exceptions carrying their HTTP status.

The ``type`` of each error is the class name Neutron uses (neutron-lib's
``neutron_lib.exceptions``), because clients such as openstacksdk and the
``openstack`` CLI only show the message, but scripts match on the type.
"""

from __future__ import annotations


class NeutronError(Exception):
    """An error answered as ``{"NeutronError": {"type", "message", "detail"}}``."""

    status = 500
    type_name = "NeutronError"

    def __init__(self, message: str, *, type_name: str | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        if type_name is not None:
            self.type_name = type_name

    def body(self) -> dict[str, dict[str, str]]:
        return {"NeutronError": {"type": self.type_name, "message": self.message,
                                 "detail": self.detail}}


class BadRequest(NeutronError):
    status = 400
    type_name = "HTTPBadRequest"


class InvalidInput(BadRequest):
    type_name = "InvalidInput"

    def __init__(self, error_message: str) -> None:
        super().__init__(f"Invalid input for operation: {error_message}.")


class NotAuthorized(NeutronError):
    status = 403
    type_name = "PolicyNotAuthorized"


class NotFound(NeutronError):
    status = 404
    type_name = "HTTPNotFound"


class Conflict(NeutronError):
    status = 409
    type_name = "Conflict"


class PreconditionFailed(NeutronError):
    status = 412
    type_name = "RevisionNumberConstraintFailed"


class RequestTooLarge(NeutronError):
    status = 413
    type_name = "HTTPRequestEntityTooLarge"


class ServiceUnavailable(NeutronError):
    status = 503
    type_name = "ServiceUnavailable"


# Where neutron-lib's exception differs from the rule below (type, message).
_NOT_FOUND_EXCEPTIONS = {
    "floatingip": ("FloatingIPNotFound", "Floating IP {} could not be found"),
    "router": ("RouterNotFound", "Router {} could not be found"),
    "security_group": ("SecurityGroupNotFound", "Security group {} does not exist"),
    "security_group_rule": ("SecurityGroupRuleNotFound", "Security group rule {} does not exist"),
}


def resource_not_found(member: str, resource_id: str) -> NotFound:
    """``NetworkNotFound`` and friends: Neutron names the type after the resource."""
    if member in _NOT_FOUND_EXCEPTIONS:
        type_name, message = _NOT_FOUND_EXCEPTIONS[member]
        return NotFound(message.format(resource_id), type_name=type_name)
    title = "".join(part.title() for part in member.split("_"))
    words = member.replace("_", " ").capitalize()
    return NotFound(f"{words} {resource_id} could not be found.", type_name=f"{title}NotFound")
