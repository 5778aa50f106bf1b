"""Names and paths derived from a lab prefix."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumonet.lab.errors import LabError
from kumonet.lab.layout import IFNAMSIZ, LabLayout, check_prefix, host_index, tap_name


@pytest.mark.parametrize("prefix", ["", "Kl", "k-l", "1kl", "abcdefg", "kl_1"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(LabError):
        check_prefix(prefix)


def test_interface_names_fit_the_kernel_limit() -> None:
    layout = LabLayout("abcdef", Path("/run/x"))
    names = [layout.underlay_bridge, layout.host_uplink, layout.underlay_port("host99"),
             tap_name("0123456789abcdef-0123")]
    assert all(len(name) <= IFNAMSIZ for name in names), names


def test_one_labs_names_never_match_another_prefix() -> None:
    kl, kl2 = LabLayout("kl"), LabLayout("kl2")
    assert not kl2.host_netns("host1").startswith(kl.netns_prefix)
    assert not kl2.vm_netns("a").startswith(kl.netns_prefix)
    assert kl.host_netns("host1").startswith(kl.netns_prefix)
    assert not str(kl2.run_dir).startswith(f"{kl.run_dir}/")


def test_hosts_and_their_underlay_addresses() -> None:
    assert host_index("host12") == 12
    assert LabLayout.underlay_ip("host3") == "192.0.2.3"
    assert LabLayout.br_phy_mac("host10") == "02:00:c0:00:02:0a"
    for bad in ("host0", "host100", "h1", "host01"):
        with pytest.raises(LabError):
            host_index(bad)


def test_tap_is_named_as_nova_names_it() -> None:
    assert tap_name("3f2a1c9e-7b4d-4e2a-9c1f-0a1b2c3d4e5f") == "tap3f2a1c9e-7b"


@pytest.mark.parametrize("name", ["", "a b", "-x", "x" * 33, "a/b"])
def test_bad_vm_names_are_refused(name: str) -> None:
    with pytest.raises(LabError):
        LabLayout().vm_netns(name)
