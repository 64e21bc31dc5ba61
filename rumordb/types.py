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
    ``position``: where to resume after it (``watch(..., position=...)``);
    ``applied_us``: the node's wall clock when it applied the change, Unix microseconds
    (None from a node too old to say).
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
    applied_us: int | None = None


class Op(NamedTuple):
    """One item of a batch (``Client.batch``): build it with ``Op.put`` or ``Op.delete``.

    ``version`` (``{"clock", "hlc", "origin"}`` and ``"expires"`` if it expires, as
    ``Client.export(versions=True)`` gives it) restores that exact version by LWW instead
    of writing a new one. A put expires ``ttl_s`` seconds after its write, or at
    ``expires_ms`` (Unix time in milliseconds, as ``Client.export()`` gives it).
    """

    op: str  # "put" or "delete"
    key: str
    value: bytes | str | None = None
    content_type: str | None = None
    if_match: str | None = None
    create: bool = False
    if_changed: bool = False
    version: dict[str, Any] | None = None
    ttl_s: int | None = None
    expires_ms: int | None = None

    @classmethod
    def put(
        cls,
        key: str,
        value: bytes | str,
        *,
        content_type: str | None = None,
        if_match: str | None = None,
        create: bool = False,
        if_changed: bool = False,
        version: dict[str, Any] | None = None,
        ttl_s: int | None = None,
        expires_ms: int | None = None,
    ) -> Op:
        """``if_changed``: leave the key alone if it already holds this value and type
        (and the same ``expires_ms``; a ``ttl_s`` restarts at every write)."""
        return cls(
            "put", key, value, content_type, if_match, create, if_changed, version, ttl_s,
            expires_ms,
        )  # fmt: skip

    @classmethod
    def delete(
        cls, key: str, *, if_match: str | None = None, version: dict[str, Any] | None = None
    ) -> Op:
        return cls("delete", key, None, None, if_match, False, False, version)


class ItemResult(NamedTuple):
    """A batch item's outcome: ``status`` as the single-key request would answer it.

    ``result``: ``ok``, ``created``, ``deleted``, ``unchanged`` (nothing to write),
    ``stale`` (a restored version older than the node's), or an error code
    (``precondition_failed``, ``exists``, ``not_found``, ``owners_unavailable``...).
    """

    key: str
    status: int
    result: str
    context: str | None = None
    hlc: int | None = None
    origin: str | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.status < 400


class Exported(NamedTuple):
    """A live key as ``Client.export`` streams it; ``version`` with ``versions=True``.

    ``expires_ms``: when the value expires (Unix time in milliseconds; None: never);
    with ``versions=True`` the version's ``expires`` (an HLC) says it instead.
    """

    key: str
    value: bytes
    content_type: str
    version: dict[str, Any] | None = None
    expires_ms: int | None = None
