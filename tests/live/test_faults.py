"""Fault requests are validated whole, merged into the faults in force, and healed at once."""

from __future__ import annotations

import random

import pytest

from rumordb.live.faults import FaultError, Faults, parse_request


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"delay_ms": -1}', b'{"delay_ms": 60001}', b'{"loss": 1.5}', b'{"unknown": 1}'],
)
def test_a_bad_request_is_refused_whole(body: bytes) -> None:
    with pytest.raises(FaultError):
        parse_request(body)


def test_requests_merge_and_heal_clears_everything() -> None:
    faults = Faults(random.Random(1))
    assert not faults.active
    faults.apply(parse_request(b'{"block": ["n2"], "delay_ms": 5}'))
    faults.apply(parse_request(b'{"block_from": ["n3"]}'))
    assert faults.describe() == {
        "block_to": ["n2"],
        "block_from": ["n2", "n3"],
        "delay_ms": 5,
        "loss": 0.0,
        "pause_gossip": False,
    }
    assert not faults.allow_send("n2") and faults.allow_send("n3")
    assert not faults.allow_receive("n3") and faults.allow_receive("n4")
    assert faults.delay_s() == 0.005
    faults.heal()
    assert not faults.active and faults.allow_send("n2") and faults.allow_receive("n3")


def test_pause_and_loss_drop_outgoing_messages() -> None:
    faults = Faults(random.Random(7))
    faults.apply(parse_request(b'{"pause_gossip": true}'))
    assert not faults.allow_send("n2")
    faults.apply(parse_request(b'{"pause_gossip": false, "loss": 1.0}'))
    assert not any(faults.allow_send("n2") for _ in range(20))
    faults.apply(parse_request(b'{"loss": 0.0}'))
    assert all(faults.allow_send("n2") for _ in range(20))
