"""Node-to-node messages and their one encoding (MessagePack via msgspec).

The simulator and the live node both send ``encode(message)`` bytes, so the simulator
counts exactly the bytes a live cluster would. ``decode`` is the only door in: it checks
the size before parsing, validates every field's type in C, and turns anything malformed,
oversized or from another protocol version into ``DecodeError`` — never a crash.

Authentication (HMAC framing, replay protection) is not here: it belongs to ``live``.
"""

from __future__ import annotations

import msgspec

from rumordb.core.errors import DecodeError
from rumordb.core.membership import MemberEntry
from rumordb.core.record import Record

# 2: anti-entropy buckets are named by width (bits of key hash) and the digest's shape
# adapts to the key count: DigestStep.level became ``width`` and gained ``leaf_bits``,
# LeafEntries gained ``width``, and leaf entries carry entry hashes (see core.digest).
# 3: a DigestStep's children are aligned to their parents and packed (no index per
# child), LeafEntries are packed and aligned to their leaves, and a bounded leaf phase
# resumes (LeafEntries.more, SyncRecords.next_leaf) instead of restarting the session.
PROTOCOL_VERSION = 3
DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024


class Update(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One key's version; ``holders`` travels with tombstones (who is known to hold it)."""

    key: str
    record: Record
    holders: list[str] | None = None


class Held(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An acknowledgement: the receiver now holds ``key`` at (hlc, origin) or later.

    ``purged``: that version is a tombstone the receiver purged; anything older is stale
    everywhere, so a sender still holding an older version drops it.
    """

    key: str
    hlc: int
    origin: str
    holders: list[str] | None = None
    purged: bool = False


class Push(msgspec.Struct, frozen=True, array_like=True, tag="push", gc=False):
    """Rumor mongering: fresh versions, with membership piggybacked."""

    sender: str
    members: list[MemberEntry]
    updates: list[Update]
    ack: bool = False  # reply with what is now held (handoff, tombstone purge)
    relay: bool = True  # a rumor to spread further; False: direct mail to every target


class PushAck(msgspec.Struct, frozen=True, array_like=True, tag="ack", gc=False):
    sender: str
    members: list[MemberEntry]
    held: list[Held]


class Heartbeat(msgspec.Struct, frozen=True, array_like=True, tag="hb", gc=False):
    """Membership gossip with no data: heartbeats travel even when nothing is written.

    ``clock_ms``: the sender's wall clock when it sent this (``core.clock_watch``); 0 from
    a sender that does not say.
    """

    sender: str
    members: list[MemberEntry]
    clock_ms: int = 0


class DigestStep(msgspec.Struct, frozen=True, array_like=True, tag="digest", gc=False):
    """Anti-entropy: the sender's hashes of every child of ``parents``, aligned to them.

    ``parents`` are buckets of width ``above`` (strictly ascending), the ones that
    differed in the previous step; each has ``2 ** (width - above)`` children of
    ``width``, and ``hashes`` holds all their hashes packed as little-endian uint64s,
    parent by parent, children in order (0: empty). A child costs 8 bytes and no index.
    The root step is ``above = width = 0`` with ``parents = [0]``. ``leaf_bits`` is the
    leaf width of the session, the finer of the two digests' shapes.
    """

    sender: str
    session: int
    above: int
    width: int
    parents: list[int]
    hashes: bytes
    leaf_bits: int


class LeafEntries(msgspec.Struct, frozen=True, array_like=True, tag="leaves", gc=False):
    """Anti-entropy: the entries of differing leaves of ``width``, aligned to ``leaves``.

    ``leaves`` strictly ascending; ``pairs[i]`` packs leaf ``leaves[i]``'s (key hash,
    entry hash) pairs as little-endian uint64s. ``more``: the sender holds further
    differing leaves after these, so the receiver answers even when it has nothing to
    send (its ``SyncRecords.next_leaf`` resumes the listing).
    """

    sender: str
    session: int
    width: int
    leaves: list[int]
    pairs: list[bytes]
    more: bool = False


class SyncRecords(msgspec.Struct, frozen=True, array_like=True, tag="sync", gc=False):
    """Anti-entropy: records for the differing keys, and the key hashes wanted back.

    ``next_leaf``: in answer to ``LeafEntries``, the first of its leaves not handled
    (a bound cut the answer), or one past the last; -1 otherwise. The lister resumes
    there instead of starting a new session.
    """

    sender: str
    session: int
    updates: list[Update]
    want: list[int]
    next_leaf: int = -1


Message = Push | PushAck | Heartbeat | DigestStep | LeafEntries | SyncRecords


class Frame(msgspec.Struct, frozen=True, array_like=True, gc=False):
    version: int
    message: Message


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Frame)


def encode(message: Message) -> bytes:
    return _encoder.encode(Frame(PROTOCOL_VERSION, message))


def decode(data: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Message:
    if len(data) > max_bytes:
        raise DecodeError(f"message of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    try:
        frame = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        # msgspec raises UnicodeDecodeError for a str that is not UTF-8: malformed too.
        raise DecodeError(f"malformed message: {exc}") from exc
    if frame.version != PROTOCOL_VERSION:
        raise DecodeError(f"unsupported protocol version {frame.version}")
    return frame.message


def message_kind(data: bytes) -> str:
    """The tag of an encoded message (``push``, ``ack``, ...) without decoding it.

    It reads the MessagePack header ``[version, [tag, ...]]``: a fixarray frame, a
    fixarray message, a fixstr tag (every tag is short). Anything else is ``other``.
    """
    if len(data) > 4 and 0x90 <= data[2] <= 0x9F and 0xA0 <= data[3] <= 0xBF:
        return data[4 : 4 + (data[3] & 0x1F)].decode("ascii", "replace")
    return "other"
