"""``/v2.0/security-groups`` and ``/v2.0/security-group-rules``.

A group's stored JSON embeds its full rules; each rule also has its own key.
Every rule change rewrites both in one transaction guarded by the group's
revision, so concurrent rule edits on one group serialise and the embedded
copy never drifts from the rule keys.

The default group of a project has a deterministic id
(:func:`kumonet.model.security_group.default_group_id`): the first request
that needs it (a member listing groups, a port created without groups)
creates it under ``key_absent``, so two servers racing create one group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from kumonet.api.context import ApiContext
from kumonet.api.identity import Identity
from kumonet.api.neutron.base import ResourceBase
from kumonet.api.neutron.extensions import Extension
from kumonet.api.neutron.resource import Visible, check_revision
from kumonet.api.repository import Resource, Stored, neutron_prefix
from kumonet.api.transaction import Plan, commit_with_retry
from kumonet.model.errors import Conflict, NotFound
from kumonet.model.security_group import (
    DEFAULT_GROUP_DESCRIPTION,
    DEFAULT_GROUP_NAME,
    SECURITY_GROUP,
    SECURITY_GROUP_RULE,
    default_group_id,
    default_rules,
    find_duplicate,
    group_not_found,
    rule_exists,
    validate_rule,
)
from kumonet.store.contract import Compare, Delete, Op, key_absent, key_unchanged

SECURITY_GROUP_EXTENSIONS = (
    Extension("security-group", "security-group", "The security groups extension."),
    Extension("stateful-security-group", "Stateful security group",
              "Indicates if the security group is stateful or not"),
    Extension("security-groups-normalized-cidr", "Normalized CIDR field for security group "
              "rules", "Add new field with normalized remote_ip_prefix cidr in SG rule"),
    Extension("security-groups-rules-belongs-to-default-sg", "Security group rule belongs "
              "to the project's default security group", "Flag to determine if the security "
              "group rule belongs to the project's default security group"),
)


def _default_exists() -> Conflict:
    return Conflict("Default security group already exists.",
                    type_name="SecurityGroupDefaultAlreadyExists")


class SecurityGroups(ResourceBase):
    """Groups; also the ports' :class:`~kumonet.api.neutron.ports.PortSecurityGroups`."""

    def __init__(self, context: ApiContext) -> None:
        super().__init__(context, SECURITY_GROUP)
        self.rules: ResourceBase = SecurityGroupRuleRecords(context, SECURITY_GROUP_RULE)

    def is_default(self, group: Resource) -> bool:
        return bool(group["id"] == default_group_id(group.get("tenant_id", "")))

    async def visibility(self, identity: Identity) -> Visible:
        # Neutron creates a project's default group when the project first
        # looks at its groups; every list/show passes through here. The
        # noauth admin's own resources have the empty project (see
        # resolve_project), so it gets a default group like any project.
        await self.ensure_default(identity.project_id or "")
        return await super().visibility(identity)

    def _rule_resources(self, group: Resource, rules: list[dict[str, Any]]
                        ) -> list[Resource]:
        made = []
        for rule in rules:
            made.append(validate_rule(self.rules.new_resource({
                **rule, "security_group_id": group["id"], "tenant_id": group["tenant_id"],
                "project_id": group["tenant_id"],
                "belongs_to_default_sg": self.is_default(group)})))
        return made

    def _new_group(self, attrs: dict[str, Any], rules: list[dict[str, Any]]
                   ) -> tuple[Resource, list[Op], list[Compare]]:
        group = self.new_resource({**attrs, "shared": False})
        group["security_group_rules"] = self._rule_resources(group, rules)
        ops: list[Op] = [self.repository.put(group)]
        compares = [key_absent(self.repository.key(group["id"]))]
        for rule in group["security_group_rules"]:
            ops.append(self.rules.repository.put(rule))
            compares.append(key_absent(self.rules.repository.key(rule["id"])))
        return group, ops, compares

    async def ensure_default(self, project_id: str) -> str:
        """The project's default group id, creating the group if needed."""
        group_id = default_group_id(project_id)
        key = self.repository.key(group_id)
        if await self.store.get(key) is not None:
            return group_id

        async def decide() -> Plan[str]:
            if await self.store.get(key) is not None:
                return Plan([], [], group_id)
            _, ops, compares = self._new_group(
                {"id": group_id, "name": DEFAULT_GROUP_NAME, "stateful": True,
                 "description": DEFAULT_GROUP_DESCRIPTION, "tenant_id": project_id,
                 "project_id": project_id}, default_rules(group_id))
            return Plan(compares, ops, group_id)

        return await commit_with_retry(self.store, decide)

    async def resolve(self, identity: Identity, project_id: str,
                      requested: list[str] | None, port_security_enabled: bool) -> list[str]:
        """A port's groups: the project's default unless some are requested;
        requested ones must exist and be usable by the port's project."""
        if requested is None:
            return [await self.ensure_default(project_id)] if port_security_enabled else []
        for group_id in requested:
            found = await self.repository.find(group_id)
            if found is None or not (identity.is_admin or
                                     found.resource.get("tenant_id") == project_id):
                raise group_not_found(group_id)
        return list(requested)

    async def create(self, identity: Identity, attrs: dict[str, Any]) -> Resource:
        if attrs.get("name") == DEFAULT_GROUP_NAME:
            raise _default_exists()
        await self.ensure_default(attrs["tenant_id"])
        # Neutron gives a new group egress-anything rules for both families.
        egress = [r for r in default_rules("") if r["direction"] == "egress"]

        async def decide() -> Plan[Resource]:
            group, ops, compares = self._new_group(attrs, egress)
            return Plan(compares, ops, group)

        return await commit_with_retry(self.store, decide)

    async def update(self, identity: Identity, resource_id: str, changes: dict[str, Any],
                     expected_revision: int | None) -> Resource:
        def check(old: Resource, new: Resource) -> None:
            if self.is_default(old) and new.get("name") != DEFAULT_GROUP_NAME:
                raise Conflict("Updating default security group not allowed.",
                               type_name="SecurityGroupCannotUpdateDefault")
            if not self.is_default(old) and changes.get("name") == DEFAULT_GROUP_NAME:
                raise _default_exists()

        return await self.update_plain(identity, resource_id, changes, expected_revision,
                                       check)

    async def delete(self, identity: Identity, resource_id: str,
                     expected_revision: int | None) -> None:
        async def decide() -> Plan[None]:
            found = await self.writable(identity, resource_id)
            check_revision(found.resource, expected_revision)
            group = found.resource
            if self.is_default(group) and not identity.is_admin:
                raise Conflict("Insufficient rights for removing default security group.",
                               type_name="SecurityGroupCannotRemoveDefault")
            ports = (await self.store.range(neutron_prefix("ports"))).kvs
            if any(resource_id in orjson.loads(kv.value).get("security_groups", ())
                   for kv in ports):
                raise Conflict(f"Security Group {resource_id} in use.",
                               type_name="SecurityGroupInUse")
            compares: list[Compare] = [key_unchanged(found.kv)]
            ops: list[Op] = [Delete(found.kv.key)]
            ops += [Delete(self.rules.repository.key(r["id"]))
                    for r in group.get("security_group_rules", [])]
            # Rules of other groups that name this one as remote go with it.
            for kv in (await self.store.range(self.repository.prefix)).kvs:
                other = orjson.loads(kv.value)
                gone = [r for r in other.get("security_group_rules", [])
                        if r.get("remote_group_id") == resource_id]
                if other["id"] == resource_id or not gone:
                    continue
                kept = [r for r in other["security_group_rules"] if r not in gone]
                compares.append(key_unchanged(kv))
                ops.append(self.repository.put(self.changed(other,
                                                            {"security_group_rules": kept})))
                ops += [Delete(self.rules.repository.key(r["id"])) for r in gone]
            return Plan(compares, ops, None)

        await commit_with_retry(self.store, decide)


class SecurityGroupRuleRecords(ResourceBase):
    """Rules as records (a group's default rules are made with it)."""

    initial_revision = 0


class SecurityGroupRules(SecurityGroupRuleRecords):
    def __init__(self, context: ApiContext, groups: SecurityGroups) -> None:
        super().__init__(context, SECURITY_GROUP_RULE)
        self.groups = groups

    async def visibility(self, identity: Identity) -> Visible:
        if identity.is_admin:
            return lambda _r: True
        project = identity.project_id
        # The owner of a group sees every rule in it (an admin may add some).
        owned = {g["id"] for g in await self.groups.repository.all()
                 if g.get("tenant_id") == project}
        return lambda r: r.get("tenant_id") == project or r.get("security_group_id") in owned

    async def _group_for(self, identity: Identity, group_id: str) -> Stored:
        found = await self.groups.repository.find(group_id)
        if found is None or not identity.owns(found.resource):
            raise group_not_found(group_id)
        return found

    async def create(self, identity: Identity, attrs: dict[str, Any]) -> Resource:
        async def decide() -> Plan[Resource]:
            found = await self._group_for(identity, attrs["security_group_id"])
            group = found.resource
            remote = attrs.get("remote_group_id")
            if remote is not None and remote != group["id"]:
                remote_group = await self.groups.repository.find(remote)
                if remote_group is None or not identity.owns(remote_group.resource):
                    raise group_not_found(remote)
            values = {k: v for k, v in attrs.items() if k not in ("tenant_id", "project_id")}
            if identity.is_admin and not attrs.get("tenant_id"):
                values["tenant_id"] = values["project_id"] = group["tenant_id"]
            else:
                values["tenant_id"] = values["project_id"] = attrs["tenant_id"]
            rule = validate_rule(self.new_resource(
                {**values, "belongs_to_default_sg": self.groups.is_default(group)}))
            existing = group.get("security_group_rules", [])
            duplicate = find_duplicate(rule, existing)
            if duplicate is not None:
                raise rule_exists(duplicate["id"])
            new_group = self.groups.changed(group, {"security_group_rules": [*existing, rule]})
            return Plan([key_absent(self.repository.key(rule["id"])), key_unchanged(found.kv)],
                        [self.repository.put(rule), self.groups.repository.put(new_group)],
                        rule)

        return await commit_with_retry(self.store, decide)

    async def _rewrite(self, identity: Identity, resource_id: str,
                       expected_revision: int | None,
                       changes: Callable[[Resource], dict[str, Any]] | None
                       ) -> Resource | None:
        """Update (``changes`` of the current rule) or delete (None) a rule
        and its group's copy."""

        async def decide() -> Plan[Resource | None]:
            found = await self.writable(identity, resource_id)
            check_revision(found.resource, expected_revision)
            rule = found.resource
            group = await self.groups.repository.find(rule["security_group_id"])
            if group is None:
                raise NotFound(f"Security group rule {resource_id} does not exist",
                               type_name="SecurityGroupRuleNotFound")
            rules = [r for r in group.resource.get("security_group_rules", [])
                     if r["id"] != resource_id]
            new_rule = None if changes is None else self.changed(rule, changes(rule))
            ops: list[Op] = [Delete(found.kv.key) if new_rule is None
                             else self.repository.put(new_rule)]
            if new_rule is not None:
                rules.append(new_rule)
            ops.append(self.groups.repository.put(self.groups.changed(
                group.resource, {"security_group_rules": rules})))
            return Plan([key_unchanged(found.kv), key_unchanged(group.kv)], ops, new_rule)

        return await commit_with_retry(self.store, decide)

    async def update(self, identity: Identity, resource_id: str, changes: dict[str, Any],
                     expected_revision: int | None) -> Resource:
        updated = await self._rewrite(identity, resource_id, expected_revision,
                                      lambda _rule: changes)
        assert updated is not None
        return updated

    async def delete(self, identity: Identity, resource_id: str,
                     expected_revision: int | None) -> None:
        await self._rewrite(identity, resource_id, expected_revision, None)

    async def set_tags(self, identity: Identity, resource_id: str,
                       edit: Callable[[list[str]], list[str]]) -> Resource:
        # Through _rewrite, so the group's embedded copy gets the tags too.
        updated = await self._rewrite(identity, resource_id, None, lambda rule: {
            "tags": edit(list(rule.get("tags", [])))})
        assert updated is not None
        return updated
