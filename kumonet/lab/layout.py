"""Where one lab's things live and what they are called, derived from its prefix.

Everything a lab creates carries its prefix: namespaces ``<prefix>-host1``,
``<prefix>-ul`` (underlay), ``<prefix>-vm-<name>``; the underlay bridge and
veths ``<prefix>-...``; the run directory ``<root>/<prefix>/``. A prefix is
short, lowercase and without ``-``, so that ``kl-`` never matches another lab's
names (``kl2-...`` does not start with ``kl-``, and no prefix ``kl-x`` exists).
Interface names stay within the kernel's 15 characters.

Inside a host namespace the bridges keep their ordinary names (``br-int``,
``br-phy``, ``br-ex``): each host has its own OVS and its own interfaces,
exactly as a real hypervisor, and the agent's configuration names them.

The external network (L3 hosts only): a Linux bridge ``<prefix>-exbr`` in the
namespace ``<prefix>-exsw`` (a pure L2 switch, no address) with one veth per L3
host (``<prefix>-ex-hN`` there, ``<prefix>-ex`` in the host, a port of br-ex)
and one to the upstream router namespace ``<prefix>-ext`` (``<prefix>-ex-up``
there, ``eth0`` in ``<prefix>-ext`` holding 203.0.113.1/24). A host's router
namespaces are named ``<prefix>-<host>-qrouter-<id>`` (the L3 agent's
namespace prefix), so they belong to the lab and to their host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kumonet.lab.errors import LabError

DEFAULT_ROOT = Path("/run/kumonet-lab")
DEFAULT_PREFIX = "kl"
IFNAMSIZ = 15
MAX_HOSTS = 99

_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,5}$")
_HOST = re.compile(r"^host([1-9][0-9]?)$")
_VM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]{0,31}$")


def check_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise LabError(
            f"bad lab prefix {prefix!r}: 1-6 characters, a lowercase letter then"
            " lowercase letters or digits (no '-', so prefixes never overlap)"
        )
    return prefix


def check_vm_name(name: str) -> str:
    if not _VM.match(name):
        raise LabError(f"bad VM name {name!r}: letters, digits, '_' and '.', at most 32")
    return name


def host_index(host: str) -> int:
    match = _HOST.match(host)
    if not match:
        raise LabError(f"bad host name {host!r}: hosts are host1 ... host{MAX_HOSTS}")
    return int(match.group(1))


def host_name(index: int) -> str:
    if not 1 <= index <= MAX_HOSTS:
        raise LabError(f"host index {index} out of range 1..{MAX_HOSTS}")
    return f"host{index}"


def tap_name(port_id: str) -> str:
    """The OVS-side name Nova gives a VM's interface: ``tap`` + 11 chars of the port id."""
    return f"tap{port_id[:11]}"


@dataclass(frozen=True)
class LabLayout:
    prefix: str = DEFAULT_PREFIX
    root: Path = DEFAULT_ROOT

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    # directories and files -------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.root / self.prefix

    @property
    def state_file(self) -> Path:
        return self.run_dir / "lab.json"

    def host_dir(self, host: str) -> Path:
        return self.run_dir / "hosts" / host

    @property
    def vms_dir(self) -> Path:
        return self.run_dir / "vms"

    def vm_dir(self, vm: str) -> Path:
        return self.vms_dir / check_vm_name(vm)

    @property
    def relay_dir(self) -> Path:
        return self.run_dir / "relay"

    # namespaces ------------------------------------------------------------
    @property
    def netns_prefix(self) -> str:
        return f"{self.prefix}-"

    @property
    def underlay_netns(self) -> str:
        return f"{self.prefix}-ul"

    def host_netns(self, host: str) -> str:
        host_index(host)
        return f"{self.prefix}-{host}"

    def router_netns_prefix(self, host: str) -> str:
        """What the host's L3 agent puts before ``qrouter-<id>``: the router
        namespaces of ``host`` are told apart from other hosts' by it."""
        return f"{self.host_netns(host)}-"

    @property
    def external_switch_netns(self) -> str:
        return f"{self.prefix}-exsw"

    @property
    def external_netns(self) -> str:
        """The upstream router: 203.0.113.1/24 on its eth0."""
        return f"{self.prefix}-ext"

    def vm_netns(self, vm: str) -> str:
        return f"{self.prefix}-vm-{check_vm_name(vm)}"

    # interfaces ------------------------------------------------------------
    @property
    def underlay_bridge(self) -> str:
        return f"{self.prefix}-ulbr"

    def underlay_port(self, host: str) -> str:
        """The underlay-namespace end of a host's underlay veth."""
        return f"{self.prefix}-ul-h{host_index(host)}"

    @property
    def host_uplink(self) -> str:
        """The host-namespace end of the underlay veth (a port of br-phy)."""
        return f"{self.prefix}-ul"

    @property
    def external_bridge(self) -> str:
        """The Linux bridge of the external segment (in the switch namespace)."""
        return f"{self.prefix}-exbr"

    def external_port(self, host: str) -> str:
        """The switch end of an L3 host's external veth."""
        return f"{self.prefix}-ex-h{host_index(host)}"

    @property
    def host_external_link(self) -> str:
        """The host end of the external veth (a port of br-ex)."""
        return f"{self.prefix}-ex"

    @property
    def external_uplink_port(self) -> str:
        """The switch end of the upstream namespace's veth."""
        return f"{self.prefix}-ex-up"

    external_device = "eth0"  # in the upstream namespace
    external_physnet = "external"
    external_ovs_bridge = "br-ex"

    # addresses -------------------------------------------------------------
    @staticmethod
    def underlay_ip(host: str) -> str:
        return f"192.0.2.{host_index(host)}"

    underlay_prefixlen = 24
    underlay_gateway = "192.0.2.254"

    external_ip = "203.0.113.1"
    external_prefixlen = 24
    external_cidr = "203.0.113.0/24"

    @staticmethod
    def br_phy_mac(host: str) -> str:
        return f"02:00:c0:00:02:{host_index(host):02x}"
