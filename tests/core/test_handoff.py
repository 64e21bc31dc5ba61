"""Handoff: keys not owned here go to their owners and are dropped once all hold them."""

from rumordb.core.handoff import Handoff

OWNERS = {"mine": ["me", "b"], "theirs": ["b", "c"]}


def test_keys_owned_here_are_left_alone() -> None:
    plan = Handoff("me").plan(["mine"], 10, OWNERS.__getitem__, lambda _: True)
    assert plan.drop == [] and plan.send == {}


def test_a_foreign_key_goes_to_every_live_owner_that_has_not_acknowledged_it() -> None:
    handoff = Handoff("me")
    plan = handoff.plan(["theirs"], 10, OWNERS.__getitem__, lambda m: m != "c")
    assert plan.send == {"b": ["theirs"]} and plan.drop == []
    handoff.acked("theirs", "b")
    handoff.acked("theirs", "c")
    plan = handoff.plan(["theirs"], 10, OWNERS.__getitem__, lambda _: True)
    assert plan.drop == ["theirs"], "dropped only once every owner holds it"


def test_a_new_version_voids_earlier_acknowledgements() -> None:
    handoff = Handoff("me")
    handoff.plan(["theirs"], 10, OWNERS.__getitem__, lambda _: True)
    handoff.acked("theirs", "b")
    handoff.acked("theirs", "c")
    handoff.reset("theirs")
    plan = handoff.plan(["theirs"], 10, OWNERS.__getitem__, lambda _: True)
    assert plan.drop == [] and plan.send == {"b": ["theirs"], "c": ["theirs"]}


def test_an_ack_for_a_key_not_being_handed_off_is_ignored() -> None:
    handoff = Handoff("me")
    handoff.acked("mine", "b")
    assert handoff.acks == {}
