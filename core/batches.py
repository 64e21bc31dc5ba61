"""A client batch: which of its commands take the bulk loop, and one Output for all.

Runs of plain upserts (``core.writes.is_plain``: no condition, no version restored) go
through the replica's bulk loop (``Replica.upsert_many``) when the node allows it
(unsharded, its clock within bounds: nothing can route or refuse them); any other command
goes through the node's own ``write``. Every result shares the batch's one ``Output``, so
the driver persists once and flushes once; each applied write is accepted as pending
(``core.pending_writes``) exactly as a single write is.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter

from rumordb.core.output import Output
from rumordb.core.record import Record
from rumordb.core.writes import BatchWrite, WriteCommand, WriteResult, WriteStatus, is_plain

Write = Callable[[WriteCommand, float], WriteResult]
UpsertMany = Callable[[list[WriteCommand], float], list[tuple[WriteStatus, Record, Record | None]]]
Accept = Callable[[str, Record, Record | None], None]


def write_batch(
    commands: list[WriteCommand],
    now: float,
    write: Write,
    upsert_many: UpsertMany | None,
    accept: Accept,
) -> BatchWrite:
    """``write`` of each command in order; ``upsert_many`` None: no bulk loop."""
    out, results = Output(), list[WriteResult]()
    start = 0
    while start < len(commands):
        end = _plain_run_end(commands, start) if upsert_many is not None else start
        if end == start:  # one command the bulk loop does not take
            result = write(commands[start], now)
            out.writes.extend(result.output.writes)
            results.append(WriteResult(result.status, result.record, out, result.owners))
            start += 1
            continue
        run = commands[start:end]
        assert upsert_many is not None
        done = upsert_many(run, now)
        keys = [command.key for command in run]
        for key, (_, record, prior) in zip(keys, done, strict=True):
            accept(key, record, prior)
        out.writes.extend(zip(keys, [record for _, record, _ in done], strict=True))
        results.extend([WriteResult(status, record, out) for status, record, _ in done])
        start = end
    return BatchWrite(results, out)


def _plain_run_end(commands: list[WriteCommand], start: int) -> int:
    if start == 0 and len(commands) > _FEW and _all_plain(commands):  # a batch of PUTs
        return len(commands)
    end = start
    while end < len(commands) and is_plain(commands[end]):
        end += 1
    return end


_FEW = 4  # up to this many commands, a call each costs less than the passes over all


def _all_plain(commands: list[WriteCommand]) -> bool:
    """``is_plain`` of every command, in C-level passes (no Python call per command)."""
    count = len(commands)
    return not (
        any(map(_CREATE, commands))
        or any(map(_DELETE, commands))
        or any(map(_IF_CHANGED, commands))
        or list(map(_CONTEXT, commands)).count(None) != count
        or list(map(_VERSION, commands)).count(None) != count
    )


_CREATE, _DELETE, _IF_CHANGED = attrgetter("create"), attrgetter("delete"), attrgetter("if_changed")
_CONTEXT, _VERSION = attrgetter("context"), attrgetter("version")
