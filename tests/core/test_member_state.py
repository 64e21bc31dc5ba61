"""The member state table: every allowed pair, every refused pair, and each row driven
through a real ``Membership`` by the inputs that cause it."""

import itertools

import pytest

from rumordb.core.member_state import TRANSITIONS, Event, InvalidTransition, State, fire
from rumordb.core.membership import MemberEntry, Membership

REFUSED = [pair for pair in itertools.product(State, Event) if pair not in TRANSITIONS]


@pytest.mark.parametrize(("pair", "after"), TRANSITIONS.items(), ids=str)
def test_fire_follows_the_table(pair: tuple[State, Event], after: State) -> None:
    assert fire(*pair) is after


@pytest.mark.parametrize("pair", REFUSED, ids=str)
def test_fire_refuses_every_pair_off_the_table(pair: tuple[State, Event]) -> None:
    with pytest.raises(InvalidTransition):
        fire(*pair)


def test_the_table_leaves_no_state_unreachable_or_inescapable() -> None:
    assert {after for after in TRANSITIONS.values()} == set(State)
    assert {state for state, _ in TRANSITIONS} == set(State)


# A member "b" whose silence timeouts are 3 s (suspect) and 3 s more (dead).
def _table_with_b_in(state: State) -> Membership:
    m = Membership("a", "addr-a", 0.0, suspicion_mult=3, probe_interval_ms=1000)
    m.join("b", "addr-b", 0, 0.0)
    if state is State.SUSPECT:
        m.expire(3.0)
    elif state is State.DEAD:
        m.expire(6.0)
    elif state is State.LEFT:
        m.observe(MemberEntry("b", "addr-b", 0, 0, "left"), 0.0)
    m.take_transitions()
    return m


def _cause(m: Membership, event: Event) -> None:
    b = m.get("b")
    assert b is not None
    if event is Event.PROGRESS:
        m.observe(MemberEntry("b", "addr-b", b.incarnation, b.heartbeat + 1), 7.0)
    elif event is Event.SUSPECT_TIMEOUT:
        m.expire(3.0)
    elif event is Event.DEAD_TIMEOUT:
        m.expire(6.0)
    elif event is Event.LEAVE:
        m.observe(MemberEntry("b", "addr-b", b.incarnation, b.heartbeat, "left"), 7.0)
    elif event is Event.REJOIN:
        m.observe(MemberEntry("b", "addr-b", b.incarnation + 1, 0), 7.0)


@pytest.mark.parametrize(("pair", "after"), TRANSITIONS.items(), ids=str)
def test_membership_moves_a_member_along_each_row(pair: tuple[State, Event], after: State) -> None:
    before, event = pair
    m = _table_with_b_in(before)
    assert m.get("b").state is before  # type: ignore[union-attr]
    _cause(m, event)
    assert m.get("b").state is after  # type: ignore[union-attr]
    made = m.take_transitions()
    expected = [] if before is after else [("b", before, after)]
    assert [(t.member, t.old, t.new) for t in made] == expected


def test_progress_from_the_life_a_member_left_is_ignored() -> None:
    m = _table_with_b_in(State.LEFT)
    m.observe(MemberEntry("b", "addr-b", 0, 5), 7.0)
    assert m.get("b").state is State.LEFT and m.take_transitions() == []  # type: ignore[union-attr]
