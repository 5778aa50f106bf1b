from __future__ import annotations

from kumonet.api.identity import identity_from_headers


def test_noauth_identity_from_headers() -> None:
    admin = identity_from_headers({})
    assert admin.is_admin and admin.project_id is None
    member = identity_from_headers({"X-Project-Id": "p", "X-Roles": "member, reader"})
    assert not member.is_admin and member.roles == {"member", "reader"}
    assert member.owns({"tenant_id": "p"}) and not member.owns({"tenant_id": "q"})
    assert identity_from_headers({"X-Project-Id": "p", "X-Roles": "Admin"}).is_admin
    assert identity_from_headers({"X-Tenant-Id": "t"}).project_id == "t"
