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

Bounds. At most ``max_entries`` entries and ``max_bytes`` of memory, counted as twice the
value per entry (the kept body, and the packed version its token keeps alive even after
the key is written again) plus ``ENTRY_OVERHEAD_BYTES``; values larger than
``max_value_bytes`` are never kept. When one more would exceed either bound the whole
cache is dropped (one clear every so many inserts: O(1) per insert, and no dict left
scanning its deleted front slots as a first-in-first-out eviction would).
"""

from __future__ import annotations

from rumordb.live.asgi import Headers

DEFAULT_MAX_ENTRIES = 4096
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_VALUE_BYTES = 64 * 1024
ENTRY_OVERHEAD_BYTES = 512  # the entry, its header list and tuples, its dict slot, roughly


class WarmRead:
    """One rendered 200 answer: every header (Content-Length included) and the value."""

    __slots__ = ("body", "cost", "headers", "token")

    def __init__(self, token: object, headers: Headers, body: bytes, cost: int) -> None:
        self.token = token
        self.headers = headers  # never sent as is: senders copy it (middleware may mutate)
        self.body = body
        self.cost = cost  # what it counts against ``max_bytes``


class ReadCache:
    """Key -> ``WarmRead``; bounded in entries and bytes (see the module doc)."""

    __slots__ = ("_bytes", "_entries", "_max_cost", "get", "max_bytes", "max_entries")

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
        self.get = self._entries.get  # the hot path's lookup: one C call

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """What the kept entries count against ``max_bytes`` (see the module doc)."""
        return self._bytes

    def put(self, key: str, token: object, headers: Headers, body: bytes) -> None:
        """Keep the answer rendered from the version ``token`` names (if it fits)."""
        cost = 2 * len(body) + ENTRY_OVERHEAD_BYTES
        if cost > self._max_cost:
            return
        entries = self._entries
        replaced = entries.get(key)
        if replaced is not None:
            self._bytes -= replaced.cost
        elif len(entries) >= self.max_entries:
            self.clear()
        if self._bytes + cost > self.max_bytes:
            self.clear()
        entries[key] = WarmRead(token, headers, body, cost)
        self._bytes += cost

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
