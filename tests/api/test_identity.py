from __future__ import annotations

from dataclasses import replace

from kumonet.api.identity import identity_from_headers


def test_noauth_identity_from_headers() -> None:
    admin = identity_from_headers({})
    assert admin.is_admin and admin.project_id is None
    member = identity_from_headers({"X-Project-Id": "p", "X-Roles": "member, reader"})
    assert not member.is_admin and member.roles == {"member", "reader"}
    assert member.owns({"tenant_id": "p"}) and not member.owns({"tenant_id": "q"})
    assert identity_from_headers({"X-Project-Id": "p", "X-Roles": "Admin"}).is_admin
    assert identity_from_headers({"X-Tenant-Id": "t"}).project_id == "t"


def test_service_and_scope() -> None:
    nova = identity_from_headers({"X-Project-Id": "service", "X-Roles": "service"})
    assert nova.is_service and not nova.is_admin and nova.project_scoped
    assert not nova.owns({"tenant_id": "tenant"})
    system = replace(identity_from_headers({"X-Roles": "admin"}), scope="system")
    # a system admin is an operator, not a project's caller
    assert system.is_admin and not system.project_scoped
    assert not replace(identity_from_headers({"X-Roles": "reader"}), scope="system").is_admin
