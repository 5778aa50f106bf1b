from __future__ import annotations

import pytest

from kumonet.model.errors import BadRequest, Conflict
from kumonet.model.subnet import cidr_overlaps, plan_subnet


def test_defaults_around_gateway() -> None:
    plan = plan_subnet({"cidr": "10.0.0.0/24", "ip_version": 4})
    assert plan == {"cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.1",
                    "allocation_pools": [{"start": "10.0.0.2", "end": "10.0.0.254"}]}
    plan = plan_subnet({"cidr": "10.0.0.0/24", "ip_version": 4, "gateway_ip": "10.0.0.254"})
    assert plan["allocation_pools"] == [{"start": "10.0.0.1", "end": "10.0.0.253"}]


@pytest.mark.parametrize(("attrs", "error"), [
    ({"gateway_ip": "10.0.0.0"}, BadRequest),
    ({"gateway_ip": "10.0.0.255"}, BadRequest),
    ({"allocation_pools": [{"start": "10.0.0.5", "end": "10.0.0.4"}]}, BadRequest),
    ({"allocation_pools": [{"start": "10.0.0.0", "end": "10.0.0.4"}]}, BadRequest),
    ({"allocation_pools": [{"start": "10.0.0.1", "end": "10.0.0.4"}]}, Conflict),
    ({"dns_nameservers": ["::1"]}, BadRequest),
    ({"host_routes": [{"destination": "::/0", "nexthop": "10.0.0.1"}]}, BadRequest),
])
def test_refusals(attrs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        plan_subnet({"cidr": "10.0.0.0/24", "ip_version": 4, **attrs})


def test_overlaps() -> None:
    assert cidr_overlaps("10.0.0.0/24", ["10.0.0.128/25"])
    assert not cidr_overlaps("10.0.0.0/24", ["10.0.1.0/24", "2001:db8::/64"])
