"""What a flush pushes and what an abort undoes."""

from __future__ import annotations

from rumordb.core.hlc import pack
from rumordb.core.pending_writes import PendingWrites
from rumordb.core.record import Record


def _v(value: bytes, t: int) -> Record:
    return Record(value, "text/plain", {"a": t}, pack(t), "a")


def test_take_hands_out_the_latest_versions_and_forgets_the_undo() -> None:
    pending = PendingWrites()
    pending.accept("k", _v(b"1", 1), None)
    pending.accept("k", _v(b"2", 2), _v(b"1", 1))
    assert pending.take() == {"k": _v(b"2", 2)}
    assert pending.take() == {}
    assert pending.take_undo({"k": _v(b"2", 2)}) == [], "flushed writes are not undone"


def test_abort_restores_the_version_before_the_batch_unless_a_peer_replaced_it() -> None:
    old = _v(b"old", 1)
    pending = PendingWrites()
    pending.accept("mine", _v(b"1", 2), old)
    pending.accept("mine", _v(b"2", 3), _v(b"1", 2))  # the first prior is the one kept
    pending.accept("new", _v(b"n", 2), None)
    pending.accept("theirs", _v(b"t", 2), old)
    stored = {"mine": _v(b"2", 3), "new": _v(b"n", 2), "theirs": _v(b"peer", 9)}
    assert pending.take_undo(stored) == [("mine", old), ("new", None)]
    assert pending.take() == {} and pending.take_undo(stored) == []
