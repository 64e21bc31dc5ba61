"""Warm reads: the rendered answer of a ``GET /kv/{key}``, kept while its version is stored.

Why. A plain read of a hot key used to decode the packed record (``core.record_table``),
build its context and headers, and count a reply, every time, for bytes that only change
when the key is written: about a third of the server's work per GET.

Validity. An entry is made only from a core answer that says it depends on nothing but the
stored version (``core.reads.Local.token``: a live value without a TTL, sharding off), and
it is used only while the node still stores that very object (``version_token(key) is
entry.token``). Any write, merge, delete, purge or restart stores another object (or none),
so the next read misses and goes the whole way. The entry holds its token, so the token's
identity cannot be reused by another object while the entry lives. Nothing else is
assumed: the caller still authenticates every request first.

Admission. A version's answer is kept at its second read, never its first (``admit``:
a dict remembers the ``id`` of the version read once, at most ``max_entries`` keys,
dropped whole when full; an id, so it keeps no value alive and costs no bytes bound). With millions of keys most reads are the first of their version since
the last write or clear; they cost a lookup and a dict store, not a rendering to keep, so
the miss path costs what it did without the cache.

Bounds. At most ``max_entries`` entries and ``max_bytes`` of memory, counted as twice the
value per entry (the kept body, and the packed version its token keeps alive even after
the key is written again) plus ``ENTRY_OVERHEAD_BYTES``; values larger than
``max_value_bytes`` are never kept. When one more would exceed either bound the whole
cache is dropped (one clear every so many inserts: O(1) per insert, and no dict left
scanning its deleted front slots as a first-in-first-out eviction would).
"""

from __future__ import annotations

import msgspec

from rumordb.live.asgi import Headers

DEFAULT_MAX_ENTRIES = 4096
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_VALUE_BYTES = 64 * 1024
ENTRY_OVERHEAD_BYTES = 512  # the entry, its header list and tuples, its dict slot, roughly


class WarmRead(msgspec.Struct, frozen=True, gc=False):
    """One rendered 200 answer: every header (Content-Length included) and the value (a
    read not kept is sent as one too, with no token). A frozen Struct: built in C, as
    every read that answers a value here builds one."""

    token: object | None
    headers: Headers  # never sent as is: senders copy it (middleware may mutate)
    body: bytes
    cost: int  # what it counts against ``max_bytes``


class ReadCache:
    """Key -> ``WarmRead``; bounded in entries and bytes (see the module doc)."""

    __slots__ = (
        "_bytes",
        "_entries",
        "_max_cost",
        "_seen",
        "get",
        "max_bytes",
        "max_entries",
    )

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._max_cost = 2 * max_value_bytes + ENTRY_OVERHEAD_BYTES
        self._entries: dict[str, WarmRead] = {}
        self._bytes = 0
        self._seen: dict[str, int] = {}  # key -> id of the version read once (not kept yet)
        self.get = self._entries.get  # the hot path's lookup: one C call

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """What the kept entries count against ``max_bytes`` (see the module doc)."""
        return self._bytes

    def admit(self, key: str, token: object) -> bool:
        """Whether to keep the answer to this read of the version ``token`` names: only
        when that version was read before (a doorkeeper, see the module doc). The first
        read of a version is only remembered, so a key read once per write, or a scan of
        keys read once, never pays for rendering an entry it will not use."""
        seen = self._seen
        version = id(token)  # not the token: that would keep every value read once alive
        if seen.pop(key, None) == version:  # (an id reused by a later version: one early fill)
            return True
        if len(seen) >= self.max_entries:
            seen.clear()
        seen[key] = version
        return False

    def put(self, key: str, token: object, headers: Headers, body: bytes) -> WarmRead | None:
        """Keep the answer rendered from the version ``token`` names, and return it (None:
        too large to keep)."""
        cost = 2 * len(body) + ENTRY_OVERHEAD_BYTES
        if cost > self._max_cost:
            return None
        entries = self._entries
        replaced = entries.get(key)
        if replaced is not None:
            self._bytes -= replaced.cost
        elif len(entries) >= self.max_entries:
            self.clear()
        if self._bytes + cost > self.max_bytes:
            self.clear()
        entries[key] = warm = WarmRead(token, headers, body, cost)
        self._bytes += cost
        return warm

    def forget(self, key: str) -> None:
        """Drop ``key``'s entry, if any (a write through this node: the entry can never be
        used again, and would keep the old version's bytes alive until a clear)."""
        warm = self._entries.pop(key, None)
        if warm is not None:
            self._bytes -= warm.cost

    def clear(self) -> None:
        """Drop every entry (what ``admit`` remembers stays: it is bounded on its own)."""
        self._entries.clear()
        self._bytes = 0
