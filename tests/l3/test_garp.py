from __future__ import annotations

import pytest

from kumonet.l3.garp import gratuitous_arps


def test_gratuitous_arp_frames() -> None:
    request, reply = gratuitous_arps("fa:16:3e:10:00:02", "203.0.113.105")
    for frame in (request, reply):
        assert len(frame) == 42
        assert frame[:6] == b"\xff" * 6  # broadcast
        assert frame[6:12] == bytes.fromhex("fa163e100002")
        assert frame[12:14] == b"\x08\x06"
        # sender hardware/protocol address = the router's MAC and the announced IP
        assert frame[22:28] == bytes.fromhex("fa163e100002")
        assert frame[28:32] == bytes([203, 0, 113, 105])
        # target protocol address = the same IP: gratuitous
        assert frame[38:42] == bytes([203, 0, 113, 105])
    assert request[20:22] == b"\x00\x01" and reply[20:22] == b"\x00\x02"


def test_bad_mac_is_refused() -> None:
    with pytest.raises(ValueError):
        gratuitous_arps("fa:16:3e", "203.0.113.105")
