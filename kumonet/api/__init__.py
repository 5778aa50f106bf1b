"""The Neutron v2.0 API (``kumonet-server``).

Layout:

* ``kumonet.model.<noun>``: each resource's :class:`~kumonet.model.resource.ResourceDefinition`
  (attributes, converters, defaults, who may read/write each) and pure logic
  (IPAM, segments). No I/O.
* ``kumonet.api.neutron.<collection>``: the resource's *logic*: create,
  update, delete as re-runnable store transactions
  (:func:`kumonet.api.transaction.commit_with_retry`), and its visibility.
* ``kumonet.api.neutron.resource.ResourceController``: the generic HTTP
  side for any logic: list (filters, ``fields``, sorting, pagination with
  ``<collection>_links``), show, create (201, bulk too), update, delete (204),
  ``/tags``, ``If-Match``; Neutron's policy on what is shown.
* ``kumonet.api.app.build_app``: middlewares (Neutron error format for every
  failure, identity), version documents, extensions, the resources given.
* ``kumonet.api.main``: builds config, store, logics and app; ``build_api``
  is the only wiring.

How to add a resource (say routers):

1. ``kumonet/model/router.py``: ``ROUTER = ResourceDefinition("routers",
   "router", (*base_attributes(), Attribute(...), ...))``; mark admin-only
   attributes with ``admin_only(...)`` or ``write=Access.ADMIN``; add it to
   ``kumonet.model.definitions.ALL_DEFINITIONS`` (the meta-test checks it).
2. ``kumonet/api/neutron/routers.py``: ``class Routers(ResourceBase)`` with
   ``__init__(self, context, ...)`` calling ``super().__init__(context, ROUTER)``
   and ``async def create(self, identity, attrs) -> dict`` (use
   ``self.new_resource(attrs)``, then ``commit_with_retry(self.store, decide)``
   where ``decide`` returns a ``Plan(compares, ops, result)``). ``update``,
   ``delete``, ``set_tags`` and ``visibility`` have owner-scoped defaults in
   :class:`~kumonet.api.neutron.base.ResourceBase`. Member actions
   (``PUT /routers/{id}/add_router_interface``) are extra routes: give the
   logic an ``add_routes(app)`` method and list it in ``ApiParts.routes``.
   Ports for other resources: ``Ports.create_from_body(identity, {...})`` and
   ``Ports.delete_internal(port_id)``; the default security groups of a port
   come from the ``PortSecurityGroups`` given to ``Ports``.
3. ``kumonet.api.main.build_api``: construct it, append it to
   ``resources``, its :class:`~kumonet.api.neutron.extensions.Extension` s
   to ``extensions`` and, if it has member actions, to ``routes``.
4. Tests in ``tests/api/neutron/test_routers.py`` with the ``api`` fixture of
   ``tests/api/conftest.py`` (a real server on loopback over SQLite).
"""
