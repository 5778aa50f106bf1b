from __future__ import annotations

import pytest

from kumonet.model.errors import BadRequest
from kumonet.model.segment import (
    IdRange,
    Segment,
    TypeDriverConfig,
    lowest_free_id,
    validate_requested,
)


def test_mtu_as_neutron_computes_it() -> None:
    config = TypeDriverConfig()
    assert [config.mtu_for(t) for t in ("vxlan", "gre", "vlan", "flat")] == \
        [1450, 1458, 1500, 1500]
    assert TypeDriverConfig(global_physnet_mtu=9000, path_mtu=1600).mtu_for("vxlan") == 1550


def test_lowest_free() -> None:
    assert lowest_free_id([IdRange(1, 3), IdRange(7, 8)], {1, 2, 3}) == 7
    assert lowest_free_id([IdRange(1, 2)], {1, 2}) is None


@pytest.mark.parametrize("segment", [
    Segment("flat", None, None), Segment("flat", "other", None), Segment("vlan", "nope", 5),
    Segment("vlan", "physnet1", 4095), Segment("vxlan", "physnet1", 5),
    Segment("vxlan", None, 2**24), Segment("geneve", None, None)])
def test_refused_segments(segment: Segment) -> None:
    config = TypeDriverConfig(flat_networks=("extnet",),
                              vlan_ranges={"physnet1": (IdRange(1, 9),)})
    with pytest.raises(BadRequest):
        validate_requested(config, segment)
