"""What the client returns: frozen records of a node's answers, with no behaviour but views.

A ``context`` is the opaque token of a version (the ``ETag``): hand it back as
``if_match`` to write only over what you read. ``Value.hlc`` and ``Value.clock`` decode it
when asked (the format belongs to ``rumordb.core.context``, imported only then).
NamedTuples rather than dataclasses: see ``rumordb.api``.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Written(NamedTuple):
    """A stored write (``PUT``/``POST``): its version's context, HLC and origin node."""

    key: str
    context: str
    hlc: int
    origin: str
    created: bool


class Deleted(NamedTuple):
    """A stored delete: the tombstone's context, HLC and origin node."""

    key: str
    context: str
    hlc: int
    origin: str


class Value(NamedTuple):
    """A key's live value as one node holds it (``GET /kv/{key}``)."""

    key: str
    value: bytes
    content_type: str
    context: str
    node: str = ""  # the URL that answered

    @property
    def text(self) -> str:
        """The value as UTF-8 text (raises ``UnicodeDecodeError`` if it is not)."""
        return self.value.decode("utf-8")

    def _decoded(self) -> Any:
        from rumordb.core.context import decode_context

        return decode_context(self.context)

    @property
    def hlc(self) -> int:
        """The version's hybrid logical clock timestamp (from its context)."""
        return int(self._decoded().hlc)

    @property
    def clock(self) -> dict[str, int]:
        """The version's vector clock, node id -> counter (from its context)."""
        return dict(self._decoded().clock)


class Version(NamedTuple):
    """A key's version on one node, tombstones included (``GET /kv/{key}?meta=true``).

    ``discarded`` is the last concurrent version LWW dropped on that node, if any.
    """

    key: str
    content_type: str
    size: int
    value_sha256: str
    clock: dict[str, int]
    hlc: int
    origin: str
    tombstone: bool
    context: str
    node: str
    discarded: dict[str, Any] | None = None


class KeyPage(NamedTuple):
    """One page of a listing: ``next`` is the cursor of the next page, None at the end."""

    keys: list[str]
    next: str | None


class Change(NamedTuple):
    """One change a node applied, from a watch stream (``Client.watch``).

    ``value`` is None for a tombstone (a delete, or a TTL that ran out); ``replicated``:
    it came from another node (gossip or anti-entropy) rather than a client of this one;
    ``position``: where to resume after it (``watch(..., position=...)``).
    """

    key: str
    value: bytes | None
    content_type: str
    tombstone: bool
    context: str
    hlc: int
    origin: str
    replicated: bool
    position: str
    expires_ms: int | None = None
    node: str = ""
