from __future__ import annotations

from typing import Any

import pytest

from kumonet.model.errors import BadRequest
from kumonet.model.router import (
    check_no_overlap,
    check_routes,
    external_gateway_info,
    routes_using,
)

ROUTER: dict[str, Any] = {"id": "r", "interfaces": [
    {"port_id": "p", "network_id": "n", "fixed_ips": [
        {"subnet_id": "s1", "ip_address": "10.0.0.1", "cidr": "10.0.0.0/24"}]}]}


def test_gateway_info_converter() -> None:
    assert external_gateway_info(None) is None
    assert external_gateway_info({}) is None
    info = {"network_id": "3f1c58a6-8a6b-4c0e-9a57-0e4f0e0e0e0e", "enable_snat": "false"}
    assert external_gateway_info(info) == {**info, "enable_snat": False}
    for bad in ({"enable_snat": True}, {"network_id": "x"}, "net", {"other": 1}):
        with pytest.raises(BadRequest):
            external_gateway_info(bad)


def test_overlap_and_same_subnet_refused() -> None:
    check_no_overlap(ROUTER, [{"id": "s2", "cidr": "10.0.1.0/24"},
                              {"id": "s3", "cidr": "fd00::/64"}])
    for subnet in ({"id": "s1", "cidr": "10.0.0.0/24"}, {"id": "s2", "cidr": "10.0.0.0/16"}):
        with pytest.raises(BadRequest):
            check_no_overlap(ROUTER, [subnet])


def test_routes_need_a_connected_nexthop() -> None:
    ok = [{"destination": "0.0.0.0/0", "nexthop": "10.0.0.254"},
          {"destination": "198.51.100.0/24", "nexthop": "203.0.113.9"}]
    check_routes(ok, ROUTER, ["203.0.113.0/24"], ["10.0.0.1"])
    for bad in ({"destination": "0.0.0.0/0", "nexthop": "10.0.1.1"},
                {"destination": "0.0.0.0/0", "nexthop": "10.0.0.1"},
                {"destination": "::/0", "nexthop": "10.0.0.9"}):
        with pytest.raises(BadRequest) as info:
            check_routes([bad], ROUTER, [], ["10.0.0.1"])
        assert info.value.type_name == "InvalidRoutes"
    with pytest.raises(BadRequest):
        check_routes([ok[0]] * 31, ROUTER, [], [])
    assert routes_using(ok, "10.0.0.0/24") == [ok[0]]
