from hypothesis import given
from hypothesis import strategies as st

from rumordb.core import hlc


def test_physical_time_is_kept_when_the_wall_clock_moves_forward() -> None:
    t = hlc.send(0, 1_000)
    assert hlc.physical_ms(t) == 1_000 and hlc.logical(t) == 0


def test_monotonic_when_the_wall_clock_jumps_backwards() -> None:
    t1 = hlc.send(0, 5_000)
    t2 = hlc.send(t1, 1_000)  # wall clock stepped back four seconds
    t3 = hlc.send(t2, 1_001)
    assert t1 < t2 < t3
    assert hlc.physical_ms(t3) == 5_000, "stays with the highest time seen"


def test_receive_exceeds_both_local_and_remote() -> None:
    remote = hlc.pack(9_000, 7)
    t = hlc.receive(hlc.pack(2_000), remote, 3_000)
    assert t > remote and t > hlc.pack(2_000)


@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 10_000), st.integers(0, 10_000)), max_size=60)
)
def test_every_event_is_strictly_later(events: list[tuple[bool, int, int]]) -> None:
    last = 0
    for is_receive, wall_ms, remote_ms in events:
        nxt = (
            hlc.receive(last, hlc.pack(remote_ms), wall_ms)
            if is_receive
            else hlc.send(last, wall_ms)
        )
        assert nxt > last
        if is_receive:
            assert nxt > hlc.pack(remote_ms)
        last = nxt
