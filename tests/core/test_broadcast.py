import pytest

from rumordb.core.broadcast import BroadcastQueue, retransmit_limit
from rumordb.core.record import Record


@pytest.mark.parametrize(
    ("mult", "n", "limit"),
    [(4, 1, 4), (4, 9, 4), (4, 10, 8), (4, 99, 8), (4, 100, 12), (3, 10_000, 15)],
)
def test_retransmit_limit_formula(mult: int, n: int, limit: int) -> None:
    assert retransmit_limit(mult, n) == limit


def rec(v: int) -> Record:
    return Record(str(v).encode(), "text/plain", {"a": v}, v, "a")


def test_least_sent_first_and_removed_at_the_limit() -> None:
    q = BroadcastQueue()
    q.push("old", rec(1))
    q.take(10, 3)
    q.push("new", rec(2))
    assert [i.key for i in q.take(1, 3)] == ["new"]
    assert [i.key for i in q.take(10, 3)] == ["old", "new"], "equally sent: oldest first"
    assert [(i.key, i.transmits) for i in q.take(10, 3)] == [("old", 3), ("new", 3)]
    assert len(q) == 0


def test_newer_news_replaces_older_and_starts_over() -> None:
    q = BroadcastQueue()
    q.push("k", rec(1))
    q.take(10, 5)
    q.push("k", rec(2))
    (item,) = q.take(10, 5)
    assert item.record == rec(2) and item.transmits == 1


def test_queue_is_bounded_and_drops_the_most_sent() -> None:
    q = BroadcastQueue(max_items=20)
    q.push("sent-often", rec(0), transmits=3)
    for i in range(25):
        q.push(f"k{i}", rec(i))
    assert len(q) <= 20
    kept = {i.key for i in q.take(100, 99)}
    assert "sent-often" not in kept and "k24" in kept, "the most sent and oldest go first"
