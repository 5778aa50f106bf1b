"""A stand-in for kumonet-agent, proving what the lab gives an agent.

Started by the lab exactly as the agent will be (inside the host namespace,
``OVS_RUNDIR`` set, ``--config FILE``), it checks that it can reach the
server URL from its config (through the relay), its host's OVSDB and
br-int's OpenFlow socket, writes what it found to ``<state_path>/standin.json``
and then waits for SIGTERM like a daemon.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    config = configparser.ConfigParser(interpolation=None)
    config.read(args.config)
    server = config["kumonet"]["server_urls"].split(",")[0]
    with urllib.request.urlopen(f"{server}/v2.0/networks", timeout=5) as response:
        networks = json.load(response)["networks"]
    db = config["ovs"]["ovsdb_connection"]
    bridges = subprocess.run(["ovs-vsctl", f"--db={db}", "list-br"], capture_output=True,
                             text=True, check=True).stdout.split()
    mgmt = config["kumonet"]["integration_bridge_mgmt"]
    ports = subprocess.run(["ovs-ofctl", "-O", "OpenFlow15", "dump-ports-desc", mgmt],
                           capture_output=True, text=True, check=True).stdout
    found = {
        "host": config["DEFAULT"]["host"],
        "networks": [n["name"] for n in networks],
        "bridges": bridges,
        "br_int_reachable": "LOCAL(br-int)" in ports,
        "ovs_rundir": os.environ.get("OVS_RUNDIR"),
        "netns_inode": os.stat("/proc/self/ns/net").st_ino,
    }
    state = Path(config["DEFAULT"]["state_path"])
    (state / "standin.json").write_text(json.dumps(found))
    signal.sigwait({signal.SIGTERM})
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    raise SystemExit(main())
