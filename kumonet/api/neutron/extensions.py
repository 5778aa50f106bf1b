"""``/v2.0/extensions``: only what this server really implements, with the
aliases Neutron uses (clients probe them before using a feature)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from kumonet.api.neutron.resource import json_response
from kumonet.model.errors import NotFound

UPDATED = "2026-11-21T00:00:00-00:00"


@dataclass(frozen=True, slots=True)
class Extension:
    alias: str
    name: str
    description: str

    def body(self) -> dict[str, object]:
        return {"alias": self.alias, "name": self.name, "description": self.description,
                "updated": UPDATED, "links": []}


# Features of the framework itself and of networks, subnets and ports.
CORE_EXTENSIONS = (
    Extension("project-id", "project_id field enabled", "Extension that indicates that "
              "project_id field is enabled."),
    Extension("standard-attr-description", "standard-attr-description",
              "Extension to add descriptions to standard attributes"),
    Extension("standard-attr-revisions", "Resource revision numbers",
              "This extension will display the revision number of neutron resources."),
    Extension("standard-attr-timestamp", "Resource timestamps",
              "Adds created_at and updated_at fields to all Neutron resources."),
    Extension("standard-attr-tag", "Tag support for resources with standard attribute",
              "Enables to set tag on resources with standard attribute."),
    Extension("revision-if-match", "If-Match constraints based on revision_number",
              "Extension indicating that If-Match based on revision_number is supported."),
    Extension("pagination", "Pagination support", "Extension that indicates that "
              "pagination is enabled."),
    Extension("sorting", "Sorting support", "Extension that indicates that sorting is "
              "enabled."),
    Extension("filter-validation", "Filter parameters validation", "Provides validation "
              "on filter parameters."),
    Extension("provider", "Provider Network", "Expose mapping of virtual networks to "
              "physical networks"),
    Extension("external-net", "Neutron external network", "Adds external network "
              "attribute to network resource."),
    Extension("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    Extension("net-mtu-writable", "Network MTU (writable)", "Provides a writable MTU "
              "attribute for a network resource."),
    Extension("port-security", "Port Security", "Provides port security"),
    Extension("binding", "Port Binding", "Expose port bindings of a virtual port to "
              "external application"),
    Extension("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address "
              "pairs"),
    Extension("subnet-external-network", "Subnet belongs to an external network",
              "Informs if the subnet belongs to an external network"),
)


class ExtensionsController:
    def __init__(self, extensions: Sequence[Extension]) -> None:
        self.by_alias = {e.alias: e for e in extensions}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v2.0/extensions", self.list)
        app.router.add_get("/v2.0/extensions/{alias}", self.show)

    async def list(self, request: web.Request) -> web.Response:
        return json_response({"extensions": [e.body() for e in self.by_alias.values()]})

    async def show(self, request: web.Request) -> web.Response:
        alias = request.match_info["alias"]
        if alias not in self.by_alias:
            raise NotFound(f"Extension with alias {alias} does not exist")
        return json_response({"extension": self.by_alias[alias].body()})
