"""The L3 role's pure decisions: which routers this host builds, which of its
masters a newer master elsewhere has replaced (split brain)."""

from pathlib import Path

from kumonet.agent.config import AgentConfig
from kumonet.agent.l3_role import L3Role
from kumonet.agent.mirror import HaReport, IntentMirror
from kumonet.agent.server_client import ServerClient

ROUTER = "/config/neutron/routers/r1"


def config(tmp_path: Path) -> AgentConfig:
    return AgentConfig(
        host="host1",
        server_urls=("http://127.0.0.1:1",),
        ovsdb_connection="unix:/nonexistent",
        ovs_rundir=tmp_path,
        local_ip="192.0.2.1",
        state_path=tmp_path,
        l3_agent=True,
    )


def seed(mirror: IntentMirror, *, ha_port_host: str = "host1") -> None:
    mirror.reset_config(
        [
            ("/config/neutron/networks/n1", {"id": "n1", "mtu": 1450}),
            (
                "/config/neutron/subnets/s1",
                {"id": "s1", "network_id": "n1", "cidr": "192.168.1.0/24"},
            ),
            (ROUTER, {"id": "r1", "ha": True, "ha_vr_id": 1, "project_id": "p"}),
            ("/config/neutron/l3_placements/r1/host1", {"router_id": "r1", "host": "host1"}),
            (
                "/config/neutron/ports/qr",
                {
                    "id": "qr",
                    "network_id": "n1",
                    "device_id": "r1",
                    "device_owner": "network:router_interface",
                    "mac_address": "fa:16:3e:00:00:01",
                    "fixed_ips": [{"subnet_id": "s1", "ip_address": "192.168.1.1"}],
                },
            ),
            (
                "/config/neutron/ports/ha",
                {
                    "id": "ha",
                    "network_id": "hanet",
                    "device_id": "r1",
                    "device_owner": "network:router_ha_interface",
                    "binding:host_id": ha_port_host,
                    "mac_address": "fa:16:3e:00:00:02",
                    "fixed_ips": [{"subnet_id": "hasub", "ip_address": "169.254.192.1"}],
                },
            ),
        ]
    )


async def test_builds_the_routers_placed_here(tmp_path: Path) -> None:
    mirror = IntentMirror()
    seed(mirror)
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        role = L3Role(config(tmp_path), client, mirror)
        (intent,) = role.wanted().values()
        assert intent.id == "r1"
        assert intent.internal[0].cidrs == ("192.168.1.1/24",)
        assert intent.ha is not None and intent.ha.vrrp_id == 1
        # Placed elsewhere only: nothing here.
        mirror.apply_config([("/config/neutron/l3_placements/r1/host1", None)])
        assert role.wanted() == {}


async def test_an_ha_router_without_its_port_here_waits(tmp_path: Path) -> None:
    mirror = IntentMirror()
    seed(mirror, ha_port_host="host2")
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        assert L3Role(config(tmp_path), client, mirror).wanted() == {}


async def test_a_master_replaced_while_cut_off_is_stale(tmp_path: Path) -> None:
    mirror = IntentMirror()
    seed(mirror)
    async with ServerClient(["http://127.0.0.1:1"]) as client:
        role = L3Role(config(tmp_path), client, mirror)
        role.local_active["r1"] = True
        mirror.ha_states["r1"] = {"host1": HaReport("active", 5)}
        assert role.stale_masters() == set()
        mirror.ha_states["r1"]["host2"] = HaReport("active", 4)  # older: we are the newer
        assert role.stale_masters() == set()
        mirror.ha_states["r1"]["host2"] = HaReport("active", 9)
        assert role.stale_masters() == {"r1"}
        role.local_active["r1"] = False  # back to standby here: nothing to demote
        assert role.stale_masters() == set()
