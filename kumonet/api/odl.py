"""OpenDaylight's Neutron northbound, so that an OpenStack running the
networking-odl ML2 driver (v2, journal based) can use kumonet in its place.

networking-odl sends what Neutron already decided (ids, MACs, fixed IPs,
segmentation ids) to ``/controller/nb/v2/neutron/<collection>[/<id>]``;
Neutron is the source of truth there. The objects go through the same
resource logic as the Neutron API (same validation, same guarded store
transactions, the given values reserved as they are), as the admin::

    POST   /controller/nb/v2/neutron/networks        {"network": {...}}  201
    PUT    /controller/nb/v2/neutron/networks/ID     {"network": {...}}  200
    DELETE /controller/nb/v2/neutron/networks/ID                          204
    GET    /controller/nb/v2/neutron/networks[/ID]   Neutron's bodies

for networks, subnets, ports, routers, floatingips, security-groups and
security-group-rules. What the driver's bodies need:

* they carry the whole Neutron object, read-only attributes included
  (``status``, ``created_at``, ``revision_number``...): a create keeps only
  what a create may set, an update only what changed and may be updated;
* ``binding:profile`` may come as a JSON string; ``security_groups`` as
  ``[{"id": ...}]``; MACs upper-cased (stored lower-cased, as Neutron);
  updates without the attributes its filters strip (``id``,
  ``tenant_id``, ``network_id``, ``fixed_ips``...);
* the journal re-sends an entry whose answer it did not get (a timeout, a
  503): a create of an id that exists answers the stored object (201), a
  delete of an absent id 404, which networking-odl counts as done;
* security groups arrive without the rules Neutron made with them (each rule
  is posted on its own with Neutron's id): a group is stored as given, with
  no rules of kumonet's own.

Reads networking-odl makes of OpenDaylight's operational datastore:

* ``GET /restconf/operational/neutron:neutron/neutron:features`` (which
  optional features the controller has): none beyond the base;
* ``GET /restconf/operational/neutron:neutron/hostconfigs``: one ``ODL L2``
  host config per live registered host (its bridge mappings, tunnel types,
  datapath), which networking-odl's pseudo-agent port binding reads.

Known limits: a router's gateway and a floating IP make their own ports in
kumonet, while Neutron also posts those ports; through this northbound a
router is stored without its gateway, and floating IPs only when Neutron has
not posted the floating-IP port first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from kumonet.api.hosts import HostRegistry
from kumonet.api.identity import ADMIN
from kumonet.api.neutron.resource import ResourceLogic, json_response, read_json
from kumonet.api.repository import Resource
from kumonet.api.restconf import BasicAuth
from kumonet.api.transaction import Plan, commit_with_retry
from kumonet.model.errors import BadRequest, resource_not_found
from kumonet.store.contract import key_absent

NB_ROOT = "/controller/nb/v2/neutron"
ODL_L2_HOST_TYPE = "ODL L2"
# What networking-odl passes through its body filters untouched, and kumonet
# fills in itself or does not keep.
_ROUTER_IGNORED = frozenset(("external_gateway_info", "gw_port_id"))


def _id_list(value: Any) -> Any:
    """``[{"id": X}]`` (networking-odl) or ``[X]`` (Neutron) -> ``[X]``."""
    if isinstance(value, list):
        return [item.get("id") if isinstance(item, dict) else item for item in value]
    return value


def _profile(value: Any) -> Any:
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            raise BadRequest(f"binding:profile is not JSON: {value!r}") from None
    return value


def normalized(member: str, body: dict[str, Any]) -> dict[str, Any]:
    """networking-odl's quirks undone: what Neutron's API would have sent."""
    out = dict(body)
    if "binding:profile" in out:
        out["binding:profile"] = _profile(out["binding:profile"])
    if "security_groups" in out:
        out["security_groups"] = _id_list(out["security_groups"])
    if member == "router":
        for name in _ROUTER_IGNORED:
            out.pop(name, None)
    return out


class OdlNorthbound:
    """The ODL northbound routes over the resource logics (a ``RouteProvider``)."""

    def __init__(self, resources: Sequence[ResourceLogic], hosts: HostRegistry,
                 auth: BasicAuth) -> None:
        self.resources = {logic.definition.path: logic for logic in resources}
        self.hosts = hosts
        self.auth = auth

    def add_routes(self, app: web.Application) -> None:
        for suffix in ("", "/"):
            app.router.add_post(NB_ROOT + "/{collection}" + suffix, self.create)
            app.router.add_get(NB_ROOT + "/{collection}" + suffix, self.list)
            app.router.add_put(NB_ROOT + "/{collection}/{id}" + suffix, self.update)
            app.router.add_delete(NB_ROOT + "/{collection}/{id}" + suffix, self.delete)
            app.router.add_get(NB_ROOT + "/{collection}/{id}" + suffix, self.show)
            operational = "/restconf/operational/neutron:neutron"
            app.router.add_get(operational + "/neutron:features" + suffix, self.features)
            app.router.add_get(operational + "/features" + suffix, self.features)
            app.router.add_get(operational + "/hostconfigs" + suffix, self.hostconfigs)
            app.router.add_get(operational + "/neutron:hostconfigs" + suffix, self.hostconfigs)

    def _logic(self, request: web.Request) -> ResourceLogic:
        self.auth.check(request)
        logic = self.resources.get(request.match_info["collection"])
        if logic is None:
            raise web.HTTPNotFound()
        return logic

    def _body(self, logic: ResourceLogic, raw: Any) -> dict[str, Any]:
        member = logic.definition.member
        if not isinstance(raw, dict) or not isinstance(raw.get(member), dict):
            raise BadRequest(f"Resource body required with key '{member}'")
        return normalized(member, raw[member])

    async def create(self, request: web.Request) -> web.Response:
        logic = self._logic(request)
        raw = await read_json(request)
        definition = logic.definition
        if isinstance(raw, dict) and isinstance(raw.get(definition.collection), list):
            items = [self._body(logic, {definition.member: i})
                     for i in raw[definition.collection]]
            created = [await self._create_one(logic, item) for item in items]
            return json_response({definition.collection: created}, status=201)
        created_one = await self._create_one(logic, self._body(logic, raw))
        return json_response({definition.member: created_one}, status=201)

    async def _create_one(self, logic: ResourceLogic, body: dict[str, Any]) -> Resource:
        definition = logic.definition
        if "id" in body:
            existing = await logic.repository.find(str(body["id"]))
            if existing is not None:
                # The journal re-sent an entry whose answer it lost.
                return existing.resource
        accepted = {k: v for k, v in body.items()
                    if (a := definition.by_name.get(k)) is not None and a.on_create}
        attrs = definition.parse_create({definition.member: accepted}, is_admin=True)
        owner = attrs.get("tenant_id") or attrs.get("project_id") or ""
        attrs["tenant_id"] = attrs["project_id"] = owner
        if definition.collection == "security_groups":
            return await self._store_group(logic, attrs)
        return await logic.create(ADMIN, attrs)

    async def _store_group(self, logic: ResourceLogic, attrs: dict[str, Any]) -> Resource:
        """A security group as Neutron made it (its default group too); its
        rules follow as their own posts."""
        new_resource = getattr(logic, "new_resource", None)
        if new_resource is None:
            raise TypeError("the security-group logic cannot make a resource")

        async def decide() -> Plan[Resource]:
            group: Resource = new_resource({**attrs, "shared": False,
                                            "security_group_rules": []})
            key = logic.repository.key(group["id"])
            return Plan([key_absent(key)], [logic.repository.put(group)], group)

        store = logic.repository.store
        return await commit_with_retry(store, decide)

    async def update(self, request: web.Request) -> web.Response:
        logic = self._logic(request)
        definition = logic.definition
        resource_id = request.match_info["id"]
        body = self._body(logic, await read_json(request))
        found = await logic.repository.find(resource_id)
        if found is None:
            raise resource_not_found(definition.member, resource_id)
        changes = {k: v for k, v in body.items()
                   if (a := definition.by_name.get(k)) is not None and a.on_update
                   and found.resource.get(k) != v}
        if not changes:
            return json_response({definition.member: found.resource})
        parsed = definition.parse_update({definition.member: changes}, is_admin=True)
        # Converted values may equal the stored ones (e.g. "True" -> True).
        parsed = {k: v for k, v in parsed.items() if found.resource.get(k) != v}
        if not parsed:
            return json_response({definition.member: found.resource})
        updated = await logic.update(ADMIN, resource_id, parsed, None)
        return json_response({definition.member: updated})

    async def delete(self, request: web.Request) -> web.Response:
        logic = self._logic(request)
        await logic.delete(ADMIN, request.match_info["id"], None)
        return web.Response(status=204)

    async def list(self, request: web.Request) -> web.Response:
        logic = self._logic(request)
        return json_response({logic.definition.collection: await logic.repository.all()})

    async def show(self, request: web.Request) -> web.Response:
        logic = self._logic(request)
        found = await logic.repository.get(request.match_info["id"])
        return json_response({logic.definition.member: found.resource})

    async def features(self, request: web.Request) -> web.Response:
        self.auth.check(request)
        # None of ODL's optional features (operational port status over
        # websockets, ...): networking-odl then keeps its defaults.
        return json_response({"features": {}})

    async def hostconfigs(self, request: web.Request) -> web.Response:
        self.auth.check(request)
        alive = await self.hosts.alive_hosts()
        configs = [hostconfig(record) for record in await self.hosts.records()
                   if record.get("host") in alive]
        return json_response({"hostconfigs": {"hostconfig": configs}})


def hostconfig(record: dict[str, Any]) -> dict[str, Any]:
    """One registered host as networking-odl's pseudo agent reads it."""
    tunnel_types = list(record.get("tunnel_types") or ())
    config = {
        "allowed_network_types": ["local", "flat", "vlan", *tunnel_types],
        "bridge_mappings": dict(record.get("bridge_mappings") or {}),
        "datapath_types": [record.get("datapath_type") or "system"],
        "supported_vnic_types": [{"vnic_type": "normal", "vif_type": "ovs", "vif_details": {}}],
    }
    return {"host-id": record["host"], "host-type": ODL_L2_HOST_TYPE,
            "config": orjson.dumps(config).decode()}
