"""Client writes: the command, its result, and the pure decisions behind it.

``context_refusal`` says whether the client's context is within bounds (``core.bounds``);
``refusal`` whether a write may happen given the stored version (If-Match on an absent
key or another version, create on a live key, delete of nothing); ``new_version`` builds
the record a write stores. ``Node.write`` adds routing (sharded: owners only), this
node's own clock check (``core.clock_watch``) and the side effects. An ``if_changed``
put of the value already stored is refused as ``UNCHANGED``.

A *restore* (``version`` set: a bulk import that keeps another cluster's LWW order)
writes no new version: it merges the given one by LWW exactly like a peer's update
(``Replica.restore``), so importing the same export twice changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

import msgspec

from rumordb.core import hlc
from rumordb.core.bounds import CLOCK_AHEAD, Bounds, clock_problem
from rumordb.core.context import Context
from rumordb.core.output import Output
from rumordb.core.record import MAX_TTL_S, Record, expires_at, same_expiry_ms
from rumordb.core.record import TOMBSTONE_CONTENT_TYPE as TOMBSTONE_CONTENT_TYPE
from rumordb.core.vclock import descends
from rumordb.core.vclock import merge as merge_clocks


class WriteStatus(enum.Enum):
    OK = "ok"
    CREATED = "created"
    EXISTS = "exists"  # create on a live key: 409
    PRECONDITION_FAILED = "precondition_failed"  # If-Match mismatch: 412
    NOT_FOUND = "not_found"  # delete of an absent key: 404
    CONTEXT_AHEAD = "context_ahead"  # If-Match HLC beyond the skew bound: 400
    CONTEXT_TOO_WIDE = "context_too_wide"  # If-Match names more nodes than allowed: 400
    CLOCK_AHEAD = "clock_ahead"  # this node's clock is ahead of its peers': 503
    NOT_OWNER = "not_owner"  # sharded and not an owner: forward to ``owners``
    UNCHANGED = "unchanged"  # if_changed put of the stored value, or a restore held already
    STALE = "stale"  # a restored version that loses LWW to the stored one


# Frozen msgspec Structs rather than dataclasses: built on every request, and a frozen
# dataclass's __init__ costs about ten times as much (measured on the write path).
class WriteCommand(msgspec.Struct, frozen=True, gc=False):
    """A client write. ``key`` must have passed ``core.keys.check_key`` (the driver's job).

    ``delete``: write a tombstone (``value`` and ``content_type`` are ignored); ``create``:
    refuse if a live value exists; ``context``: the version the client read (If-Match);
    ``coordinate``: write even if this node does not own the key (a write forwarded by a
    node whose ring view differs); the version is handed to the owners later. ``ttl_ms``:
    the value expires that long after its HLC (``core.record``; the driver bounds it).
    ``if_changed``: a put of the value and content type already live is not written
    (``UNCHANGED``: re-importing a file changes nothing). ``version``: restore this
    exact version by LWW instead of writing a new one (its fields validated by the
    driver like a peer's update; ``context``, ``create``, ``if_changed`` and ``ttl_ms``
    unused: the version carries its own expiry). ``expires``: instead of ``ttl_ms``, the
    absolute expiry instant (an HLC; an import restoring an exported ``expires_ms``); one
    at or before the write's HLC makes a value that is expired at once.
    """

    key: str
    value: bytes = b""
    content_type: str = "application/octet-stream"
    context: Context | None = None
    create: bool = False
    delete: bool = False
    coordinate: bool = False
    ttl_ms: int = 0  # a value that expires this long after its write (0: never)
    if_changed: bool = False
    version: Record | None = None
    expires: int = 0  # the value's expiry instant, an HLC (0: never, or by ttl_ms)


class WriteResult(msgspec.Struct, frozen=True):
    status: WriteStatus
    record: Record | None  # the new version, or the current one when refused
    output: Output
    owners: tuple[str, ...] = ()  # NOT_OWNER: forward to these, in order


class BatchWrite(msgspec.Struct, frozen=True):
    """What ``Node.write_batch`` did: one result per command, in order, and ONE Output.

    Every result's ``output`` is that same batch Output (nothing is built per item).
    """

    results: list[WriteResult]
    output: Output


def is_plain(command: WriteCommand) -> bool:
    """An unconditional upsert: never refused by the stored version (the bulk path's)."""
    return not (
        command.create
        or command.delete
        or command.if_changed
        or command.context is not None
        or command.version is not None
    )


def context_refusal(context: Context, bounds: Bounds) -> WriteStatus | None:
    """Why a client's ``If-Match`` context may not be used here, or None."""
    problem = clock_problem(context.clock, context.hlc, bounds)
    if problem is None:
        return None
    return WriteStatus.CONTEXT_AHEAD if problem == CLOCK_AHEAD else WriteStatus.CONTEXT_TOO_WIDE


def refusal(command: WriteCommand, local: Record | None) -> WriteStatus | None:
    """Why ``command`` may not be applied over ``local``, or None when it may."""
    context = command.context
    if context is not None and local is None:
        return WriteStatus.PRECONDITION_FAILED  # If-Match on an absent key (RFC 9110)
    live = local is not None and not local.tombstone
    if command.delete and not live:
        return WriteStatus.NOT_FOUND
    if command.create and not command.delete and live:
        return WriteStatus.EXISTS
    if command.if_changed and live and not command.delete:
        assert local is not None
        same = local.value == command.value and local.content_type == command.content_type
        # A TTL restarts at every write, so a put with one always changes something; a
        # put with an absolute expiry (or none) changes nothing over the same instant.
        if same and not command.ttl_ms and same_expiry_ms(command.expires, local.expires):
            return WriteStatus.UNCHANGED
    if context is not None and local is not None and not descends(context.clock, local.clock):
        return WriteStatus.PRECONDITION_FAILED
    return None


def new_version(
    node_id: str, command: WriteCommand, local: Record | None, last_hlc: int, now_ms: int
) -> Record:
    """The version ``command`` writes over ``local``; its HLC exceeds ``last_hlc``.

    Every client write passes here: ``hlc.send`` and ``vclock.advance`` are inlined (a
    call each saved, with the same results: ``tests/core/test_writes.py`` compares)."""
    if local is None:
        clock: Mapping[str, int] = _NO_CLOCK
        floor = 0
    else:
        clock, floor = local.clock, local.hlc
    context = command.context
    if context is not None:
        clock = merge_clocks(clock, context.clock)
        floor = max(floor, context.hlc)
    # The new HLC exceeds everything this version descends from (see core.merge):
    # ``hlc.send(max(last_hlc, floor), now_ms)``.
    top = last_hlc if last_hlc > floor else floor
    stamp = now_ms << hlc.LOGICAL_BITS
    if stamp <= top:
        stamp = top + 1
    # Our clock entry becomes the write's HLC rather than a +1 counter: HLCs never
    # repeat, so a key re-created after its tombstone was purged, or written by a node
    # that lost its memory, can never reuse an entry that an older version carries.
    # ``advance(clock, node_id, stamp)``:
    bumped = dict(clock)
    current = bumped.get(node_id, 0)
    bumped[node_id] = stamp if stamp > current else current + 1
    if command.delete:
        return Record(b"", TOMBSTONE_CONTENT_TYPE, bumped, stamp, node_id, True)
    expires = expiry(stamp, command) if command.ttl_ms or command.expires else 0
    return Record(command.value, command.content_type, bumped, stamp, node_id, False, expires)


_NO_CLOCK: Mapping[str, int] = MappingProxyType({})  # a new key's clock: copied, never changed


def expiry(stamp: int, command: WriteCommand) -> int:
    """The expiry instant of the value ``command`` writes at ``stamp`` (0: never), always
    one a peer accepts (``valid_expiry``): after the write, at most ``MAX_TTL_S`` later."""
    if command.ttl_ms > 0:
        return expires_at(stamp, command.ttl_ms)
    if command.expires == 0:
        return 0
    return min(max(command.expires, stamp + 1), expires_at(stamp, MAX_TTL_S * 1000))
