"""An output is empty until it carries work or events; extend keeps every part in order."""

from rumordb.core.hlc import pack
from rumordb.core.member_state import State
from rumordb.core.membership import Transition
from rumordb.core.output import Output
from rumordb.core.record import Record, discarded_from

RECORD = Record(b"v", "t", {"a": 1}, pack(1), "a")


def test_an_output_is_truthy_with_any_work_or_event() -> None:
    assert not Output()
    assert Output(messages=[("x", b"m")]) and Output(purges=["k"])
    assert Output(transitions=[Transition("b", State.ALIVE, State.SUSPECT, 1.0)])
    assert Output(discards=[("k", discarded_from(RECORD))])


def test_extend_appends_every_part() -> None:
    out = Output(writes=[("a", RECORD)])
    out.extend(
        Output(writes=[("b", RECORD)], purges=["c"], discards=[("d", discarded_from(RECORD))])
    )
    assert [k for k, _ in out.writes] == ["a", "b"] and out.purges == ["c"]
    assert [k for k, _ in out.discards] == ["d"]


def test_counter_deltas_are_empty_and_shared_read_only_until_a_tick_sets_them() -> None:
    first, second = Output(), Output()
    assert first.counter_deltas == {} and first.counter_deltas is second.counter_deltas
    assert not first and Output(counter_deltas={"rumor_rounds": 1})
    first.extend(Output(counter_deltas={"rumor_rounds": 1, "keys_expired": 2}))
    first.extend(Output(counter_deltas={"rumor_rounds": 3}))
    assert first.counter_deltas == {"rumor_rounds": 4, "keys_expired": 2}
    assert second.counter_deltas == {}, "the shared default is never written to"
