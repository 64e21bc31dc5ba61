"""``core.batches.write_batch``: which commands take the bulk loop, one Output for all."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rumordb.core.batches import _all_plain, write_batch
from rumordb.core.context import Context
from rumordb.core.output import Output
from rumordb.core.record import Record
from rumordb.core.writes import WriteCommand, WriteResult, WriteStatus, is_plain


def _record(key: str, hlc: int) -> Record:
    return Record(key.encode(), "text/plain", {"n1": hlc}, hlc, "n1")


class Calls:
    def __init__(self) -> None:
        self.single: list[str] = []
        self.bulk: list[list[str]] = []
        self.accepted: list[str] = []
        self.hlc = 0

    def write(self, command: WriteCommand, now: float) -> WriteResult:
        self.single.append(command.key)
        self.hlc += 1
        record = _record(command.key, self.hlc)
        return WriteResult(WriteStatus.OK, record, Output(writes=[(command.key, record)]))

    def upsert_many(
        self, commands: list[WriteCommand], now: float
    ) -> list[tuple[WriteStatus, Record, Record | None]]:
        self.bulk.append([c.key for c in commands])
        done = []
        for command in commands:
            self.hlc += 1
            done.append((WriteStatus.CREATED, _record(command.key, self.hlc), None))
        return done

    def accept(self, key: str, record: Record, prior: Record | None) -> None:
        self.accepted.append(key)


def _commands() -> list[WriteCommand]:
    return [
        WriteCommand("a", b"1"),
        WriteCommand("b", b"2"),
        WriteCommand("c", b"", delete=True),  # not plain: the node's own write
        WriteCommand("d", b"4"),
        WriteCommand("e", b"5", create=True),  # not plain
    ]


def test_plain_runs_take_the_bulk_loop_and_the_rest_the_single_write() -> None:
    calls = Calls()
    batch = write_batch(_commands(), 1.0, calls.write, calls.upsert_many, calls.accept)
    assert calls.bulk == [["a", "b"], ["d"]]
    assert calls.single == ["c", "e"]
    assert calls.accepted == ["a", "b", "d"]  # the single writes accept their own
    assert [key for key, _ in batch.output.writes] == ["a", "b", "c", "d", "e"]
    assert all(result.output is batch.output for result in batch.results)
    assert [r.status for r in batch.results] == [
        WriteStatus.CREATED, WriteStatus.CREATED, WriteStatus.OK, WriteStatus.CREATED,
        WriteStatus.OK,
    ]  # fmt: skip


def test_without_a_bulk_loop_every_command_is_a_single_write() -> None:
    calls = Calls()
    batch = write_batch(_commands(), 1.0, calls.write, None, calls.accept)
    assert calls.bulk == []
    assert calls.single == ["a", "b", "c", "d", "e"]
    assert len(batch.results) == 5


_flags = st.booleans()
_any_commands = st.builds(
    WriteCommand,
    st.just("k"),
    create=_flags,
    delete=_flags,
    if_changed=_flags,
    context=st.none() | st.just(Context([("a", 1)], 1)),
    version=st.none() | st.just(Record(b"v", "t", {"a": 1}, 1, "a")),
)


@given(st.lists(_any_commands, max_size=5))
def test_a_batch_is_all_plain_exactly_when_each_command_is(commands: list[WriteCommand]) -> None:
    assert _all_plain(commands) is all(is_plain(command) for command in commands)
