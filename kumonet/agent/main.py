"""``kumonet-agent --config FILE``: one per host."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from kumonet.agent.config import AgentConfig, ConfigError

LOG = logging.getLogger("kumonet.agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kumonet-agent",
        description="kumonet host agent: programs this host's Open vSwitch from the "
        "servers' intent and answers DHCP for local ports.",
    )
    parser.add_argument("--config", type=Path, required=True, help="agent INI file")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    return parser


async def run(config: AgentConfig) -> None:
    from kumonet.agent.daemon import Agent
    from kumonet.agent.ovsdb import Ovsdb, OvsdbConfig
    from kumonet.agent.server_client import ServerClient

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with ServerClient(config.server_urls) as client:
        ovsdb = await Ovsdb.connect(OvsdbConfig(remote=config.ovsdb_connection))
        try:
            agent = Agent(config, client, ovsdb)
            task = asyncio.create_task(agent.run(), name="agent")
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            # Flows stay installed on exit: traffic keeps flowing while the agent is away.
            task.cancel()
            stopper.cancel()
            if task in done:
                task.result()  # re-raise the failure
        finally:
            await ovsdb.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # python-ovs's poller imports eventlet when it is installed (os-ken brings it);
    # nothing is monkey-patched, the import only warns.
    warnings.filterwarnings("ignore", message="Eventlet is deprecated")
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = AgentConfig.from_file(args.config)
    except ConfigError as error:
        print(f"kumonet-agent: {error}", file=sys.stderr)
        return 2
    LOG.info("starting for host %s, servers %s", config.host, ", ".join(config.server_urls))
    from kumonet.agent.ovsdb import OvsdbError

    try:
        asyncio.run(run(config))
    except OvsdbError as error:
        print(f"kumonet-agent: OVSDB: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
