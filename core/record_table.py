"""The store's records, each packed into one ``bytes`` object: a key costs its value, not its objects.

Why. A decoded ``Record`` is six objects (the struct, its value bytes, a clock dict with
its counter ints, the HLC int, strings): about 600 B per key for a 100-byte value, most
of it object headers. Every write stamps the writer's HLC into the clock, so clocks are
distinct per key and cannot be shared. Packed, a record is one bytes object of its
msgpack encoding (~30 B of metadata beside the value), its content type interned in a
small bounded table (``application/octet-stream`` is 25 bytes in every record otherwise).

Cost. A read decodes (msgspec, in C, ~1 µs) and builds a fresh ``Record``: callers get
an equal copy, never the stored object, so ``==`` (not ``is``) compares versions. That
is a dict lookup plus one decode on the read and merge paths, against ~2.5x the keys
per GiB.

The table is a read-only ``Mapping[str, Record]`` for the rest of the core; only the
store writes to it (``put``, ``pop``).

Version tokens. ``version_token(key)`` is the stored bytes object itself: every ``put``
stores a new one (msgspec encodes into a fresh object), so while a caller keeps a token
alive, ``version_token(key) is token`` holds exactly as long as the key's version has not
changed (a kept object's identity cannot be reused). It is a dict lookup, no decode: what
lets a driver reuse an answer it rendered from that version (``core.reads.Local.token``).

Growth. Past ``SPLIT_KEYS`` keys the one dict becomes the base of a
``core.packed_shards.PackedShards`` (why: a dict grows by rehashing everything in one
call). ``version_token`` is then that mapping's lookup: whoever bound it is told through
``on_split``. (One still bound to the old dict's ``get`` stays safe, only slower: a key
stored since the split has no token there, so an answer kept for it is never reused.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, KeysView, Mapping

import msgspec

from rumordb.core.packed_shards import SPLIT_KEYS, PackedShards
from rumordb.core.record import Record

MAX_INTERNED_TYPES = 256  # distinct content types stored as a table index; others inline


class _Packed(msgspec.Struct, frozen=True, array_like=True, gc=False, omit_defaults=True):
    """A ``Record`` as stored in memory: its content type may be a table index."""

    value: bytes
    content_type: int | str
    clock: dict[str, int]
    hlc: int
    origin: str
    tombstone: bool = False
    expires: int = 0


class _Version(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What a digest needs of a packed record: the rest is left undecoded (``Raw``)."""

    value: msgspec.Raw
    content_type: msgspec.Raw
    clock: msgspec.Raw
    hlc: int
    origin: str
    tombstone: bool = False


class _Liveness(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What a listing needs of a packed record: whether it is a tombstone or expires."""

    value: msgspec.Raw
    content_type: msgspec.Raw
    clock: msgspec.Raw
    hlc: msgspec.Raw
    origin: msgspec.Raw
    tombstone: bool = False
    expires: int = 0


_encode = msgspec.msgpack.Encoder().encode
_decode_fields = msgspec.msgpack.Decoder().decode  # a packed record's seven fields, as a list
_decode_version = msgspec.msgpack.Decoder(_Version).decode
_decode_liveness = msgspec.msgpack.Decoder(_Liveness).decode


class RecordTable(Mapping[str, Record]):
    """Key -> packed record; reads decode a fresh ``Record``."""

    __slots__ = ("_packed", "_split_at", "_type_ids", "_types", "on_split", "version_token")

    def __init__(self, split_at: int = SPLIT_KEYS) -> None:
        self._packed: dict[str, bytes] | PackedShards = {}
        self._split_at = split_at
        self._types: list[str] = []  # interned content types, by index
        self._type_ids: dict[str, int] = {}
        # The stored object of a key (see the module doc), or None: the dict's own lookup,
        # bound once, so a warm read's validity check costs one C call.
        self.version_token: Callable[[str], object | None] = self._packed.get
        # Told when ``version_token`` changes (a driver that bound it); a tuple: nothing
        # allocated for the tables of a million simulated nodes, which never split.
        self.on_split: tuple[Callable[[], None], ...] = ()

    def _split(self) -> None:
        """The one dict holds ``split_at`` keys: it becomes the base of shards."""
        if self._packed.__class__ is dict:
            self._packed = PackedShards(self._packed)
            self.version_token = self._packed.get
            for told in self.on_split:
                told()

    def __getitem__(self, key: str) -> Record:
        return self._unpack(self._packed[key])

    def get(self, key: str, default: Record | None = None) -> Record | None:  # type: ignore[override]
        blob = self._packed.get(key)
        return default if blob is None else self._unpack(blob)

    def __contains__(self, key: object) -> bool:
        return key in self._packed

    def __iter__(self) -> Iterator[str]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)

    def __eq__(self, other: object) -> bool:
        """Whole-table checks (simulator, benches) compare packed bytes when both tables
        intern content types alike; otherwise record by record."""
        if isinstance(other, RecordTable) and self._types == other._types:
            return self._packed == other._packed
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]  # a mutable mapping

    def keys(self) -> KeysView[str]:
        return self._packed.keys()

    def put(self, key: str, record: Record) -> bool:
        """Store ``record`` as ``key``'s version; True when the key is new."""
        packed = self._packed
        new = key not in packed
        packed[key] = self._pack(record)
        if new and packed.__class__ is dict and len(packed) >= self._split_at:
            self._split()
        return new

    def put_new(self, fresh: dict[str, Record]) -> None:
        """``put`` of keys not held yet, in bulk: one comprehension, no call per key.

        A record whose content type is interned already (nearly all) is packed as a
        tuple of its fields: the very bytes ``_Packed`` encodes to, without the struct.
        """
        ids, pack, encode = self._type_ids, self._pack, _encode
        packed = {
            key: encode((r.value, ids[r.content_type], r.clock, r.hlc, r.origin, r.tombstone, r.expires))
            if r.content_type in ids
            else pack(r)
            for key, r in fresh.items()
        }  # fmt: skip
        table = self._packed
        if isinstance(table, PackedShards):
            table.add_new(packed)
        else:
            table.update(packed)
            if len(table) >= self._split_at:
                self._split()

    def replace(self, key: str, record: Record) -> Record | None:
        """``put``, returning the version it replaced (None: the key is new): one lookup."""
        packed = self._packed
        previous = packed.get(key)
        packed[key] = self._pack(record)
        if previous is None:
            if packed.__class__ is dict and len(packed) >= self._split_at:
                self._split()
            return None
        return self._unpack(previous)

    def pop(self, key: str) -> bool:
        """Drop ``key``; True when it was held."""
        return self._packed.pop(key, None) is not None

    def version(self, key: str) -> tuple[int, str, bool] | None:
        """``(hlc, origin, tombstone)`` of ``key``'s record, or None: half the cost of
        ``get`` (the value and clock are not copied), for the digest fold of every write."""
        blob = self._packed.get(key)
        if blob is None:
            return None
        v = _decode_version(blob)
        return v.hlc, v.origin, v.tombstone

    def live_of(self, keys: Iterable[str], now_hlc: int) -> Iterator[str]:
        """The keys of ``keys`` (each held) whose value is live at ``now_hlc`` (-1: none
        expired), in order: ``is_live(self[key], now_hlc)`` without building the records
        (a listing checks every key of its page: 0.54 -> 0.24 ms a page of 1 000)."""
        packed, decode = self._packed, _decode_liveness
        for key in keys:
            v = decode(packed[key])
            if not v.tombstone and not (v.expires and now_hlc >= v.expires):
                yield key

    def packed_bytes(self, key: str) -> int:
        """The bytes ``key``'s packed record takes (its value included)."""
        return len(self._packed[key])

    def _pack(self, record: Record) -> bytes:
        r = record
        type_id = self._type_ids.get(r.content_type)
        if type_id is not None:  # interned already (nearly every write): as ``put_new`` packs
            return _encode((r.value, type_id, r.clock, r.hlc, r.origin, r.tombstone, r.expires))
        content_type: int | str = record.content_type
        if type_id is None and len(self._types) < MAX_INTERNED_TYPES:
            type_id = self._type_ids[record.content_type] = len(self._types)
            self._types.append(record.content_type)
        if type_id is not None:
            content_type = type_id
        packed = _Packed(
            record.value,
            content_type,
            record.clock,
            record.hlc,
            record.origin,
            record.tombstone,
            record.expires,
        )
        return _encode(packed)

    def _unpack(self, blob: bytes) -> Record:
        # Untyped: our own bytes need no validation, and a plain array decodes ~20% faster
        # than the ``_Packed`` struct (every read and every write over a key passes here).
        value, content_type, clock, stamp, origin, tombstone, expires = _decode_fields(blob)
        if content_type.__class__ is int:
            content_type = self._types[content_type]
        return Record(value, content_type, clock, stamp, origin, tombstone, expires)
