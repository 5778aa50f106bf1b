"""Who is calling: the identity keystonemiddleware leaves in the headers
after validating a token (or that a noauth caller states in them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    project_id: str | None
    user_id: str | None
    roles: frozenset[str]
    # A Keystone token scoped to no project: "system", "domain" or
    # "unscoped". Neutron's policies are project-scoped and refuse such a
    # token on its resources; operator paths take a system admin's.
    scope: str | None = None

    @property
    def is_admin(self) -> bool:
        # Neutron's noauth context is admin when it carries no project.
        return (self.project_id is None and self.scope is None) or "admin" in self.roles

    @property
    def project_scoped(self) -> bool:
        return self.scope is None

    @property
    def is_service(self) -> bool:
        """Neutron's ``service_api`` rule (``role:service``, 2023.2+): another
        service (Nova binding its instances' ports) without being admin; it
        sees every project's ports and may bind them, nothing more."""
        return "service" in self.roles

    def owns(self, resource: Mapping[str, object]) -> bool:
        return self.is_admin or resource.get("tenant_id") == self.project_id


ADMIN = Identity(project_id=None, user_id=None, roles=frozenset({"admin"}))


def identity_from_headers(headers: Mapping[str, str]) -> Identity:
    project = headers.get("X-Project-Id") or headers.get("X-Tenant-Id") or None
    roles = frozenset(r.strip().lower() for r in headers.get("X-Roles", "").split(",")
                      if r.strip())
    return Identity(project_id=project, user_id=headers.get("X-User-Id") or None, roles=roles)
