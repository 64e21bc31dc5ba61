"""Bulk data at the HTTP edge: ``POST /kv`` (a batch of writes) and ``GET /kv?export=true``.

A batch is ``{"items": [item, ...]}`` in JSON, or the same in MessagePack when the
Content-Type is ``application/msgpack`` (``application/x-msgpack`` too); the answer uses
the request's format. An item::

    {"op": "put" | "delete", "key": K,
     "value": BYTES | "value_text": TEXT,      # put only: base64 in JSON, bin in msgpack
     "content_type": T,                         # put only; default octet-stream / text
     "if_match": CONTEXT, "create": bool,       # conditional, as on PUT/POST/DELETE
     "if_changed": bool,                        # put: skip if the live value is the same
     "ttl": SECONDS,                            # put: expire, as PUT ?ttl= (1 to MAX_TTL_S)
     "expires_ms": MS,                          # put: or expire at this Unix time (ms)
     "version": {"clock": {...}, "hlc": H, "origin": ID, "expires": E}}  # restore: below

Validated whole before any item is applied: the body is at most ``MAX_BATCH_BYTES``
(413 ``batch_too_large``), at most ``MAX_BATCH_ITEMS`` items (413 ``too_many_items``),
and one invalid item refuses the whole batch with a 400 (413 for a value above
``--max-value-bytes``) whose detail names the item's index and key. Then every item
is applied in order in ONE group commit and replicated as one push per peer
(``Runner.write_batch``). The answer (200) lists one result per item, in order::

    {"results": [{"key", "status": 200|201|404|409|412|503, "result": "ok" | "created"
                  | "deleted" | "unchanged" | "stale" | error code, "context", "hlc",
                  "origin"} ...], "applied": N}

``version`` restores another cluster's version of a key (``rumor export --versions``):
no new version is written; the given one is merged by LWW exactly like a peer's update,
so its HLC, clock and origin are kept and an import keeps the source's LWW order
(``unchanged`` when this version is stored, ``stale`` when a newer one is). It is
validated like a peer's record: at most ``MAX_CLOCK_ENTRIES`` clock entries, valid node
ids, non-negative counters, an HLC at most ``MAX_VERSION_AHEAD_MS`` ahead of this node's
clock, an ``expires`` (the expiry HLC, 0 or absent: never) after the HLC and at most
``MAX_TTL_S`` later. Batches are admin-only, so only admins can send versions.

Expiry: ``ttl`` is checked as ``PUT ?ttl=`` is (the same 400 ``bad_request``, also for a
delete). ``expires_ms`` restores an export's expiry without a version: the value
expires at that instant on every node (one already past: the value is written expired
and reads 404); an ``if_changed`` put of the same value and content type over the same
expiry millisecond is ``unchanged``, so re-importing an export changes nothing. At most
``MAX_TTL_S`` ahead of this node's clock; ``ttl``, ``expires_ms`` and ``version``
exclude each other.

Sharded, items this node does not own are forwarded to their owners, one sub-batch per
owner list, in MessagePack; their results come back in place. An owner that does not
answer makes its items ``503 owners_unavailable``.

Export (``GET /kv?export=true&prefix=&after=&limit=``, ``versions=true`` for clock, HLC
and origin): a page of live keys with their values, ``{"items": [...], "next": K|null}``,
items shaped like batch items (so an export page is a batch to import): a value that
expires carries ``expires_ms`` (with ``versions``: the exact ``expires`` HLC in its
version instead); JSON, or
MessagePack with ``Accept: application/msgpack``. Sharded, it merges the pages of every
member, keeping the LWW winner of a key held by several.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Literal
from urllib.parse import urlencode

import msgspec

from rumordb.core import (
    InvalidContext,
    InvalidKey,
    Record,
    WriteCommand,
    WriteResult,
    WriteStatus,
    check_key,
    decode_context,
    encode_context,
    first_bad_key,
    merge_pages,
)
from rumordb.core.hlc import pack, physical_ms
from rumordb.core.record import MAX_TTL_S, is_live, valid_expiry
from rumordb.core.writes import TOMBSTONE_CONTENT_TYPE
from rumordb.live.asgi import Headers, Receive, Reply, error_reply, read_body
from rumordb.live.errors import HttpError
from rumordb.live.forward import Forwarded, Relay, Request
from rumordb.live.runner import BatchAnswer, ForwardedItem, NotStored, Runner
from rumordb.live.settings import check_node_id

MAX_BATCH_ITEMS = 1000
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_CLOCK_ENTRIES = 256
MAX_VERSION_AHEAD_MS = 60_000  # a restored HLC this far past our clock is refused
MAX_CONTENT_TYPE_CHARS = 256
MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
MSGPACK = (b"content-type", b"application/msgpack")
JSON = (b"content-type", b"application/json")
BYTES_TYPE = "application/octet-stream"
TEXT_TYPE = "text/plain; charset=utf-8"
_ITEM_INDEX = re.compile(r"\$\.items\[(\d+)\]")
Counter = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class VersionIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    clock: dict[str, Counter]
    hlc: Counter
    origin: str
    expires: Counter = 0  # the expiry HLC as stored (0: never)


class ItemIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    op: Literal["put", "delete"]
    key: str
    value: bytes | None = None
    value_text: str | None = None
    content_type: str | None = None
    if_match: str | None = None
    create: bool = False
    if_changed: bool = False
    version: VersionIn | None = None
    ttl: int | None = None  # seconds, as PUT ?ttl=
    expires_ms: int | None = None  # an absolute expiry, Unix time in milliseconds


class BatchIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    items: list[ItemIn]


_json_decoder = msgspec.json.Decoder(BatchIn)
_msgpack_decoder = msgspec.msgpack.Decoder(BatchIn)
_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()
_STATUS = {
    WriteStatus.OK: (200, "ok"),
    WriteStatus.CREATED: (201, "created"),
    WriteStatus.UNCHANGED: (200, "unchanged"),
    WriteStatus.STALE: (200, "stale"),
    WriteStatus.EXISTS: (409, "exists"),
    WriteStatus.PRECONDITION_FAILED: (412, "precondition_failed"),
    WriteStatus.NOT_FOUND: (404, "not_found"),
    WriteStatus.CONTEXT_AHEAD: (400, "context_ahead"),
    WriteStatus.CONTEXT_TOO_WIDE: (400, "context_too_wide"),
    WriteStatus.CLOCK_AHEAD: (503, "clock_ahead"),
}


def is_msgpack(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() in MSGPACK_TYPES


class Bulk:
    """Batches and export pages for ``live.kv`` (which checked the key and the role)."""

    def __init__(self, runner: Runner, max_value_bytes: int, max_key_bytes: int) -> None:
        self.runner = runner
        self.max_value_bytes = max_value_bytes
        self.max_key_bytes = max_key_bytes

    # --- batch -----------------------------------------------------------------------
    async def batch(self, receive: Receive, request: Relay, content_type: str,
                    content_length: bytes | None) -> Reply:  # fmt: skip
        binary = is_msgpack(content_type)
        body = await read_body(
            receive, MAX_BATCH_BYTES, content_length, too_large=("batch_too_large", "a batch")
        )
        items = decode_batch(body, binary)
        now_ms = int(self.runner.now() * 1000)
        commands = self.commands(items, now_ms, request.forwarded)

        def relay_of(indices: list[int]) -> Relay:
            sub = _msgpack.encode(BatchIn([items[i] for i in indices]))
            headers = [
                h for h in request.headers if h[0] not in (b"content-type", b"content-length")
            ]
            return Request("POST", b"/kv", b"", [*headers, MSGPACK], sub)

        answers = await self.runner.write_batch(commands, relay_of)
        if answers and all(isinstance(a, NotStored) for a in answers):
            first = answers[0]
            assert isinstance(first, NotStored)
            retry = ((b"retry-after", b"1"),) if first.error == "overloaded" else ()
            return error_reply(HttpError(503, first.error, first.detail, retry))
        results = self.results(commands, answers)
        applied = sum(1 for r in results if r.get("result") in ("ok", "created", "deleted"))
        return encoded(200, {"results": results, "applied": applied}, binary)

    def commands(self, items: list[ItemIn], now_ms: int, forwarded: bool) -> list[WriteCommand]:
        """Every item as a write, or ``HttpError`` naming the first bad one.

        The keys are checked all at once (``first_bad_key``); a plain put (value_text
        or value, nothing else but a content type) is built inline: most of an ingest.
        """
        keys_ok = first_bad_key([item.key for item in items], self.max_key_bytes) is None
        commands: list[WriteCommand] = []
        for i, item in enumerate(items):
            plain = _plain_put(item) if keys_ok else None
            if plain is not None and len(plain[0]) <= self.max_value_bytes:
                value, content_type = plain
                commands.append(WriteCommand(item.key, value, content_type, None, coordinate=forwarded))  # fmt: skip
            else:
                commands.append(self.command(i, item, now_ms, forwarded, keys_ok))
        return commands

    def command(
        self, index: int, item: ItemIn, now_ms: int, forwarded: bool, key_ok: bool = False
    ) -> WriteCommand:
        """One item as a write, or ``HttpError`` naming it (the batch is then refused)."""
        try:
            return self._command(item, now_ms, forwarded, key_ok)
        except HttpError as exc:
            key = item.key if len(item.key) <= 80 else item.key[:80] + "..."
            exc.detail = f"item {index} (key {key!r}): {exc.detail}"
            exc.args = (exc.detail,)
            raise

    def _command(self, item: ItemIn, now_ms: int, forwarded: bool, key_ok: bool) -> WriteCommand:
        try:
            if not key_ok:
                check_key(item.key, self.max_key_bytes)
        except InvalidKey as exc:
            raise HttpError(400, "invalid_key", str(exc)) from None
        delete = item.op == "delete"
        value, content_type = self._value(item, delete)
        context = None
        if item.if_match is not None:
            try:
                context = decode_context(item.if_match)
            except InvalidContext as exc:
                raise HttpError(400, "invalid_context", str(exc)) from None
        ttl_ms, expires = expiry_of(item, delete, now_ms)
        version = None
        if item.version is not None:
            if context is not None or item.create or item.if_changed or ttl_ms or expires:
                raise _bad(
                    "a version is restored as is: no if_match, create, if_changed, "
                    "ttl or expires_ms (its expiry is the version's 'expires')"
                )
            version = restored(item.version, value, content_type, delete, now_ms)
        return WriteCommand(item.key, value, content_type, context, create=item.create,
                            delete=delete, coordinate=forwarded, ttl_ms=ttl_ms,
                            if_changed=item.if_changed, version=version,
                            expires=expires)  # fmt: skip

    def _value(self, item: ItemIn, delete: bool) -> tuple[bytes, str]:
        given = (item.value is not None) + (item.value_text is not None)
        if delete:
            if given or item.content_type is not None or item.if_changed or item.create:
                raise _bad("a delete takes no value, content_type, create or if_changed")
            return b"", BYTES_TYPE
        if given != 1:
            raise _bad("a put takes exactly one of value (base64) and value_text")
        if item.value_text is not None:
            value, default = item.value_text.encode("utf-8"), TEXT_TYPE
        else:
            assert item.value is not None
            value, default = item.value, BYTES_TYPE
        if len(value) > self.max_value_bytes:
            raise HttpError(
                413, "value_too_large", f"a value is at most {self.max_value_bytes} bytes"
            )
        content_type = item.content_type or default
        if len(content_type) > MAX_CONTENT_TYPE_CHARS or not _printable_ascii(content_type):
            raise _bad(
                f"content_type is printable ASCII of at most {MAX_CONTENT_TYPE_CHARS} characters"
            )
        return value, content_type

    def results(
        self, commands: list[WriteCommand], answers: list[BatchAnswer]
    ) -> list[dict[str, object]]:
        """``result`` of each item, in order; a value written here (most of an ingest) is
        answered inline, without the call and the checks ``result`` makes (~1 us an item)."""
        found: list[dict[str, object]] = []
        append, created, ok = found.append, WriteStatus.CREATED, WriteStatus.OK
        for command, answer in zip(commands, answers, strict=True):
            if type(answer) is WriteResult and (record := answer.record) is not None:
                status = answer.status
                if status is created or (status is ok and not record.tombstone):
                    code, name = (201, "created") if status is created else (200, "ok")
                    append({"key": command.key, "status": code, "result": name,
                            "context": encode_context(record.clock, record.hlc),
                            "hlc": record.hlc, "origin": record.origin})  # fmt: skip
                    continue
            append(self.result(command, answer))
        return found

    def result(self, command: WriteCommand, answer: BatchAnswer) -> dict[str, object]:
        key = command.key
        if isinstance(answer, ForwardedItem):
            return forwarded_result(key, answer)
        if isinstance(answer, NotStored):
            return {"key": key, "status": 503, "result": answer.error, "detail": answer.detail}
        status, name = _STATUS.get(answer.status, (503, "not_owner"))
        record = answer.record
        if status >= 400 or record is None:
            return {"key": key, "status": status, "result": name}
        if name == "ok" and record.tombstone and command.version is None:
            name = "deleted"
        context = encode_context(record.clock, record.hlc)
        return {"key": key, "status": status, "result": name, "context": context,
                "hlc": record.hlc, "origin": record.origin}  # fmt: skip

    # --- export ----------------------------------------------------------------------
    async def export(
        self, query: dict[str, str], request: Relay, binary: bool, limit: int
    ) -> Reply:
        prefix, after = query.get("prefix", ""), query.get("after", "")
        versions = query.get("versions", "").lower() in ("true", "1", "yes")
        view = self.runner.view
        now_hlc = pack(int(self.runner.now() * 1000))  # an expired value is not exported
        keys = view.list_keys(prefix, limit, after, now_hlc=now_hlc)
        found: dict[str, Record] = {}
        for key in keys:
            record = view.get(key)
            if record is not None and is_live(record, now_hlc):
                found[key] = record
        if self.runner.settings.sharding and not request.forwarded:
            await self._gather(found, query, request)
            keys = merge_pages(sorted(found), [], limit)
        items = [exported(key, found[key], versions) for key in keys if key in found]
        page_full = len(keys) == limit
        return encoded(200, {"items": items, "next": keys[-1] if page_full else None}, binary)

    async def _gather(
        self, found: dict[str, Record], query: dict[str, str], request: Relay
    ) -> None:
        """Sharded: every member's page of the same export, the LWW winner kept per key."""
        path_qs = "/kv?" + urlencode({**query, "versions": "true"})
        forwarder = self.runner.forwarder
        headers = [h for h in request.headers if h[0] != b"accept"]  # peers answer JSON
        pages = await asyncio.gather(
            *(forwarder.get_json(m, path_qs, headers) for m in self.runner.view.peers())
        )
        for page in pages:
            for item in page.get("items", []) if isinstance(page, dict) else []:
                record = _record_of(item)
                if record is None:
                    continue
                key = item["key"]
                mine = found.get(key)
                if mine is None or (record.hlc, record.origin) > (mine.hlc, mine.origin):
                    found[key] = record


def decode_batch(body: bytes, binary: bool) -> list[ItemIn]:
    try:
        batch = (_msgpack_decoder if binary else _json_decoder).decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        found = _ITEM_INDEX.search(text)
        where = f"item {found.group(1)}: " if found else ""
        raise HttpError(400, "invalid_batch", where + text) from None
    except msgspec.DecodeError as exc:
        kind = "MessagePack" if binary else "JSON"
        raise HttpError(400, "invalid_batch", f"the body is not valid {kind}: {exc}") from None
    except UnicodeDecodeError:  # msgspec raises it for a string that is not UTF-8
        raise HttpError(400, "invalid_batch", "a string in the body is not valid UTF-8") from None
    if len(batch.items) > MAX_BATCH_ITEMS:
        detail = f"a batch holds at most {MAX_BATCH_ITEMS} items, not {len(batch.items)}"
        raise HttpError(413, "too_many_items", detail)
    return batch.items


def _plain_put(item: ItemIn) -> tuple[bytes, str] | None:
    """(value, content type) of a put with nothing but a value (and a printable ASCII
    content type), else None: such an item needs none of ``Bulk._command``'s checks."""
    if item.op != "put" or item.if_match is not None or item.create or item.if_changed:
        return None
    if item.version is not None or item.ttl is not None or item.expires_ms is not None:
        return None
    content_type = item.content_type
    if content_type is not None and (
        len(content_type) > MAX_CONTENT_TYPE_CHARS or not _printable_ascii(content_type)
    ):
        return None
    if item.value_text is not None:
        if item.value is not None:
            return None
        return item.value_text.encode("utf-8"), content_type or TEXT_TYPE
    if item.value is None:
        return None
    return item.value, content_type or BYTES_TYPE


def ttl_ms_of(ttl_s: int) -> int:
    """A TTL in whole seconds, bounded as on ``PUT ?ttl=`` (``live.kv``), in milliseconds."""
    if not 1 <= ttl_s <= MAX_TTL_S:
        detail = f"ttl must be a whole number of seconds from 1 to {MAX_TTL_S}"
        raise HttpError(400, "bad_request", detail)
    return ttl_s * 1000


def expiry_of(item: ItemIn, delete: bool, now_ms: int) -> tuple[int, int]:
    """An item's ``(ttl_ms, expires)``: its TTL, or its absolute expiry as an HLC."""
    if item.ttl is None and item.expires_ms is None:
        return 0, 0
    if delete:
        what = "ttl" if item.ttl is not None else "expires_ms"
        raise HttpError(400, "bad_request", f"{what} applies to puts, not to a delete")
    if item.ttl is not None:
        if item.expires_ms is not None:
            raise _bad("give ttl or expires_ms, not both")
        return ttl_ms_of(item.ttl), 0
    assert item.expires_ms is not None
    if not 0 < item.expires_ms <= now_ms + MAX_TTL_S * 1000:
        detail = f"expires_ms is a Unix time in ms at most {MAX_TTL_S} s from now"
        raise HttpError(400, "bad_request", detail)
    return 0, pack(item.expires_ms)


def restored(
    version: VersionIn, value: bytes, content_type: str, delete: bool, now_ms: int
) -> Record:
    """The record a ``version`` item restores, validated like a peer's (``HttpError``)."""
    if len(version.clock) > MAX_CLOCK_ENTRIES:
        raise _bad(f"a version's clock has at most {MAX_CLOCK_ENTRIES} entries")
    for node_id in (version.origin, *version.clock):
        try:
            check_node_id(node_id)
        except ValueError as exc:
            raise _bad(f"version: {node_id[:80]!r}: {exc}") from None
    if physical_ms(version.hlc) > now_ms + MAX_VERSION_AHEAD_MS or version.hlc > pack(2**47):
        raise _bad(f"version: its HLC is more than {MAX_VERSION_AHEAD_MS} ms ahead of this node")
    if delete:
        value, content_type = b"", TOMBSTONE_CONTENT_TYPE
    clock = dict(version.clock)
    record = Record(
        value, content_type, clock, version.hlc, version.origin, delete, version.expires
    )
    if not valid_expiry(record):
        raise _bad(f"version: its expires lies before its HLC or more than {MAX_TTL_S} s after")
    return record


def exported(key: str, record: Record, versions: bool) -> dict[str, object]:
    item: dict[str, object] = {
        "op": "put", "key": key, "value": record.value, "content_type": record.content_type,
    }  # fmt: skip
    if versions:
        version: dict[str, object] = {
            "clock": record.clock,
            "hlc": record.hlc,
            "origin": record.origin,
        }
        if record.expires:
            version["expires"] = record.expires
        item["version"] = version
    elif record.expires:
        item["expires_ms"] = physical_ms(record.expires)
    return item


def _record_of(item: object) -> Record | None:
    """A peer's export item (JSON) as a record, or None if it is malformed."""
    try:
        parsed = msgspec.convert(item, ItemIn, strict=False)
    except msgspec.ValidationError:
        return None
    if parsed.version is None or parsed.value is None:
        return None
    v = parsed.version
    kind = parsed.content_type or BYTES_TYPE
    return Record(parsed.value, kind, dict(v.clock), v.hlc, v.origin, False, v.expires)


def forwarded_result(key: str, item: ForwardedItem) -> dict[str, object]:
    answer = item.answer
    if isinstance(answer, Forwarded) and answer.status == 200:
        try:
            results = msgspec.msgpack.decode(answer.body)["results"]
            result = results[item.position]
            if isinstance(result, dict) and result.get("key") == key:
                return result
        except (msgspec.DecodeError, KeyError, IndexError, TypeError):
            pass
    if isinstance(answer, Forwarded):
        return {"key": key, "status": answer.status, "result": "owner_refused"}
    return {"key": key, "status": 503, "result": "owners_unavailable",
            "detail": f"no owner answered: {', '.join(answer.owners)}"}  # fmt: skip


def encoded(status: int, data: object, binary: bool, extra: Headers | None = None) -> Reply:
    if binary:
        return Reply(status, [MSGPACK, *(extra or [])], _msgpack.encode(data))
    return Reply(status, [JSON, *(extra or [])], _json.encode(data))


def _bad(detail: str) -> HttpError:
    return HttpError(400, "invalid_item", detail)


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()
