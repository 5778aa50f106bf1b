"""``kumonet-server``: the Neutron v2.0 API over a store.

Everything is built here and passed in: configuration, store, the resource
logics (the one list to extend when adding a resource) and the app."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from kumonet.api.agent_sync import AgentSync
from kumonet.api.app import ApiParts, build_app
from kumonet.api.auth import Authenticator, KeystoneAuth, NoAuth
from kumonet.api.config import ServerConfig, load_config
from kumonet.api.context import ApiContext
from kumonet.api.hosts import HostRegistry
from kumonet.api.ipam import AddressHints
from kumonet.api.neutron.agents import AGENT_EXTENSIONS, Agents, L3Scheduling
from kumonet.api.neutron.extensions import CORE_EXTENSIONS
from kumonet.api.neutron.floatingips import FloatingIPs
from kumonet.api.neutron.l3_ha import RouterHA
from kumonet.api.neutron.l3_scheduler import (
    L3Rescheduler,
    ReschedulerService,
    ReschedulerSettings,
    RouterL3,
    RouterScheduler,
)
from kumonet.api.neutron.networks import Networks
from kumonet.api.neutron.ports import Ports
from kumonet.api.neutron.routers import ROUTER_EXTENSIONS, Routers
from kumonet.api.neutron.security_groups import (
    SECURITY_GROUP_EXTENSIONS,
    SecurityGroupRules,
    SecurityGroups,
)
from kumonet.api.neutron.subnets import Subnets
from kumonet.api.odl import OdlNorthbound
from kumonet.api.restconf import (
    BasicAuth,
    RestconfView,
    YangList,
    floatingip_item,
    network_item,
    port_item,
    router_item,
    security_group_item,
    security_rule_item,
    subnet_item,
)
from kumonet.cluster.availability import StaleReadStore
from kumonet.cluster.http import ClusterStatusRoutes
from kumonet.cluster.settlement import SettlingStore
from kumonet.cluster.shards import ShardedStore, ShardMap
from kumonet.store.contract import Store, StoreError

log = logging.getLogger("kumonet.server")


def build_api(context: ApiContext,
              rescheduler: ReschedulerSettings | None = None,
              northbound_auth: BasicAuth | None = None) -> ApiParts:
    """Every resource the server serves, the extensions they make real, and
    extra routes (member actions such as ``add_router_interface``).

    To add a resource: write its logic module, construct it here (passing
    the logics it builds on), append it and its extensions."""
    hints = AddressHints(context.store)
    networks = Networks(context, hints)
    subnets = Subnets(context, hints, networks)
    security_groups = SecurityGroups(context)
    ports = Ports(context, hints, networks, subnets, security_groups)
    hosts = HostRegistry(context)
    router_ha = RouterHA(context, networks, subnets, ports)
    scheduler = RouterScheduler(context, hosts, router_ha)
    routers = Routers(context, networks, subnets, ports, RouterL3(router_ha, scheduler))
    floatingips = FloatingIPs(context, networks, ports, routers)
    ports.delete_hooks += [routers, floatingips]
    agents = Agents(context.store, hosts)
    rescheduling = ReschedulerService(L3Rescheduler(scheduler,
                                                    rescheduler or ReschedulerSettings()))
    rules = SecurityGroupRules(context, security_groups)
    # OpenDaylight's faces: the RESTCONF view of the config tree and the
    # northbound networking-odl posts to (basic auth, as ODL).
    odl_auth = northbound_auth or BasicAuth()
    restconf = RestconfView([
        YangList("networks", "network", networks.repository, network_item),
        YangList("subnets", "subnet", subnets.repository, subnet_item),
        YangList("ports", "port", ports.repository, port_item),
        YangList("routers", "router", routers.repository, router_item),
        YangList("floatingips", "floatingip", floatingips.repository, floatingip_item),
        YangList("security-groups", "security-group", security_groups.repository,
                 security_group_item),
        YangList("security-rules", "security-rule", rules.repository, security_rule_item),
    ], odl_auth)
    northbound = OdlNorthbound([networks, subnets, ports, routers, floatingips,
                                security_groups, rules], hosts, odl_auth)
    return ApiParts(resources=[networks, subnets, ports, agents, security_groups,
                               rules, routers, floatingips],
                    extensions=[*CORE_EXTENSIONS, *AGENT_EXTENSIONS,
                                *SECURITY_GROUP_EXTENSIONS, *ROUTER_EXTENSIONS],
                    routes=[L3Scheduling(context.store, agents, scheduler),
                            AgentSync(context, hosts, ports), routers,
                            ClusterStatusRoutes(context.store), rescheduling, restconf,
                            northbound, hints])


def make_authenticator(mode: str, config: ServerConfig) -> Authenticator:
    if mode == "keystone":
        return KeystoneAuth(config.keystone_authtoken, config_file=config.keystone_config_file)
    return NoAuth()


def make_app(store: Store, config: ServerConfig, authenticator: Authenticator, *,
             rescheduler: ReschedulerSettings | None = None) -> web.Application:
    context = ApiContext(store=store, config=config)
    # Under keystone the ODL faces want ODL's credentials; under noauth
    # they take any caller, as the Neutron API does.
    northbound_auth = BasicAuth(config.restconf_username, config.restconf_password,
                                required=not isinstance(authenticator, NoAuth))
    return build_app(build_api(context, rescheduler, northbound_auth),
                     authenticator=authenticator,
                     max_body_size=config.max_request_body_size,
                     operator_auth=northbound_auth)


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"'{value}' is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kumonet-server",
                                     description="kumonet Neutron v2.0 API server")
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 9696),
                        metavar="HOST:PORT", help="address to serve on (127.0.0.1:9696)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--store", default="sqlite:///kumonet.db",
                        help="store URL: sqlite:///kumonet.db (the default, in the current "
                             "directory) or etcd://H1:P1,H2:P2,H3:P3 (cluster mode)")
    source.add_argument("--shards", default=None, metavar="FILE",
                        help="shards file (etc/shards.conf): each subtree on its own store")
    parser.add_argument("--auth", choices=("noauth", "keystone"), default="noauth")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="INI file with Neutron's section and option names")
    parser.add_argument("--log-level", default="INFO")
    return parser


async def open_cluster_store(url: str | None, shards: str | None) -> Store:
    """The server's store: one store URL or a shards file, wrapped so that
    GETs go on (flagged stale) without a majority and writes whose outcome
    a dying member left unknown are settled before they are answered."""
    from kumonet.store.url import open_store

    if shards is not None:
        store: Store = await ShardedStore.open(ShardMap.load(shards))
    else:
        store = await open_store(url or "sqlite:///kumonet.db")
    return SettlingStore(StaleReadStore(store))


async def serve(args: argparse.Namespace) -> None:
    config = load_config(args.config)
    authenticator = make_authenticator(args.auth, config)
    store = await open_cluster_store(args.store, args.shards)
    try:
        app = make_app(store, config, authenticator)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = args.listen
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        log.info("kumonet-server listening on %s:%d, store %s", host, port,
                 f"shards {args.shards}" if args.shards else args.store)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(serve(args))
    except (ValueError, OSError, StoreError) as error:
        # Configuration and start-up problems: one clear line, no traceback.
        parser.exit(2, f"kumonet-server: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
