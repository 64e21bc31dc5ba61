"""The keyring the cluster replicates itself: API keys as records in a reserved keyspace.

Keys sold with ``POST /admin/keys`` are not configuration but data: each is a record in
the reserved keyspace ``_rumor/`` (which ``/kv`` refuses to read, list or write for
clients), replicated by rumor mongering and anti-entropy like any value, persisted like
any value, so a key created on one node works on every node, and survives restarts.

Two kinds of record, neither ever overwritten nor deleted (so LWW never has to choose):

* a **grant** ``_rumor/keyring/key/<sha256 of the key>``: ``{name, role, created_ms,
  expires_ms}``. Its id is the hash of a fresh random secret, so two creates never share
  a record, even two concurrent creates of the same name on both sides of a partition;
* a **revocation** ``_rumor/keyring/revoked/<name>``: ``{name, revoked_ms}``.

The rule: *a grant is valid iff no revocation of its name exists and it has not expired.*
Revocation is by name and sticky: it refuses every grant of that name, past, concurrent
or later, and a name once revoked cannot be created again (409 ``name_revoked``; choose a
new name such as ``alice-2``). The keyring is thus a two-phase set keyed by name, whose
state is the union of what every node has seen: merging in any order gives the same
answer, and a revocation wins over a concurrent create when a partition heals (plain LWW
on one record per name would let the later create win and resurrect a revoked name).
Two concurrent creates of one name both hold (two secrets for one name, both listed);
one revocation of the name refuses both.

Expiry is an absolute wall-clock time in the grant (``created_ms + expires_in_s``), so
every node refuses an expired key from the same moment (up to clock skew between nodes).

Pure: the caller passes ``now_ms`` and a ``lookup`` of stored records (tombstones
included; a tombstoned grant counts as absent), and decoding never raises on a bad
record from a peer: a malformed keyring record grants nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable

import msgspec

from rumordb.core.record import Record

RESERVED_PREFIX = "_rumor/"  # the system's keyspace: /kv refuses it for clients
GRANT_PREFIX = RESERVED_PREFIX + "keyring/key/"
REVOKED_PREFIX = RESERVED_PREFIX + "keyring/revoked/"
CONTENT_TYPE = "application/x-rumor-keyring+json"
ROLES = ("reader", "admin")
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_EXPIRES_IN_S = 10 * 366 * 86_400  # ten years
MAX_KEYS = 10_000  # grants a node scans for a listing or a name check
MAX_REQUEST_BYTES = 4096
_HEX = re.compile(r"[0-9a-f]{64}")

Lookup = Callable[[str], Record | None]


class KeyringError(ValueError):
    """A keyring request that cannot be applied: ``status`` and ``code`` say how to answer."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class Grant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    role: str
    created_ms: int
    expires_ms: int | None = None


class Revocation(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    revoked_ms: int


class CreateRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    role: str
    expires_in_s: int | None = None


class KeyInfo(msgspec.Struct, frozen=True):
    """What a listing shows of a grant: never its hash, never its secret."""

    name: str
    role: str
    created_ms: int
    expires_ms: int | None
    state: str  # "active", "expired" or "revoked"


def is_reserved(key: str) -> bool:
    return key.startswith(RESERVED_PREFIX)


def digest_of(presented_key: str) -> str:
    return hashlib.sha256(presented_key.encode("utf-8", "replace")).hexdigest()


def grant_key(digest_hex: str) -> str:
    return GRANT_PREFIX + digest_hex


def revocation_key(name: str) -> str:
    return REVOKED_PREFIX + name


def check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise KeyringError(400, "invalid_name", "a key name is 1 to 64 of [A-Za-z0-9._-]")


# --- requests ------------------------------------------------------------------------
def parse_create(body: bytes) -> CreateRequest:
    """The whole ``POST /admin/keys`` body, validated before anything is written."""
    if len(body) > MAX_REQUEST_BYTES:
        raise KeyringError(413, "too_large", f"a key request is at most {MAX_REQUEST_BYTES} bytes")
    try:
        request = msgspec.json.decode(body, type=CreateRequest)
    except msgspec.DecodeError as exc:
        detail = f'expected {{"name", "role", "expires_in_s"?}}: {exc}'
        raise KeyringError(400, "invalid_request", detail) from None
    check_name(request.name)
    if request.role not in ROLES:
        raise KeyringError(400, "invalid_role", f"role must be one of {ROLES}")
    expires = request.expires_in_s
    if expires is not None and not 1 <= expires <= MAX_EXPIRES_IN_S:
        raise KeyringError(
            400, "invalid_expiry", f"expires_in_s must be between 1 and {MAX_EXPIRES_IN_S}"
        )
    return request


def new_grant(request: CreateRequest, now_ms: int) -> Grant:
    expires = request.expires_in_s
    expires_ms = None if expires is None else now_ms + expires * 1000
    return Grant(request.name, request.role, now_ms, expires_ms)


def refuse_create(request: CreateRequest, lookup: Lookup, grants: Iterable[Grant]) -> None:
    """Raise 409 if the name is revoked (sticky), already names a grant known here, or the
    keyring holds ``MAX_KEYS`` grants (a bound on what every node stores and scans)."""
    if is_revoked(request.name, lookup):
        raise KeyringError(409, "name_revoked", f"key name {request.name!r} was revoked")
    known = list(grants)
    if any(grant.name == request.name for grant in known):
        raise KeyringError(409, "exists", f"a key named {request.name!r} exists")
    if len(known) >= MAX_KEYS:
        raise KeyringError(409, "keyring_full", f"the keyring holds {MAX_KEYS} keys already")


def refuse_revoke(name: str, lookup: Lookup, grants: Iterable[Grant]) -> None:
    """Raise 404 unless a grant of ``name`` is known here and not yet revoked."""
    check_name(name)
    if is_revoked(name, lookup) or not any(grant.name == name for grant in grants):
        raise KeyringError(404, "not_found", f"no key named {name!r}")


# --- records -------------------------------------------------------------------------
def encode_grant(grant: Grant) -> bytes:
    return msgspec.json.encode(grant)


def encode_revocation(revocation: Revocation) -> bytes:
    return msgspec.json.encode(revocation)


def decode_grant(record: Record | None) -> Grant | None:
    """The grant a record holds, or None (absent, tombstone or malformed: grants nothing)."""
    if record is None or record.tombstone or len(record.value) > MAX_REQUEST_BYTES:
        return None
    try:
        grant = msgspec.json.decode(record.value, type=Grant)
    except msgspec.DecodeError:
        return None
    if grant.role not in ROLES or not NAME_PATTERN.fullmatch(grant.name):
        return None
    return grant


def is_revoked(name: str, lookup: Lookup) -> bool:
    """Any record at the name's revocation key revokes it (even one that fails to decode:
    when in doubt, refuse)."""
    record = lookup(revocation_key(name))
    return record is not None and not record.tombstone


def is_expired(grant: Grant, now_ms: int) -> bool:
    return grant.expires_ms is not None and now_ms >= grant.expires_ms


def role_of(digest_hex: str, lookup: Lookup, now_ms: int) -> str | None:
    """The role the key with this SHA-256 grants now, or None (the rule above)."""
    grant = decode_grant(lookup(grant_key(digest_hex)))
    if grant is None or is_expired(grant, now_ms) or is_revoked(grant.name, lookup):
        return None
    return grant.role


def grants(records: Iterable[tuple[str, Record]]) -> list[Grant]:
    """The well-formed grants among ``records`` (keys under ``GRANT_PREFIX``)."""
    found: list[Grant] = []
    for key, record in records:
        if key.startswith(GRANT_PREFIX) and _HEX.fullmatch(key[len(GRANT_PREFIX) :]):
            grant = decode_grant(record)
            if grant is not None:
                found.append(grant)
    return found


def describe(found: Iterable[Grant], lookup: Lookup, now_ms: int) -> list[KeyInfo]:
    """A listing of grants, by name then creation, each with its state now."""
    infos = []
    for grant in found:
        if is_revoked(grant.name, lookup):
            state = "revoked"
        else:
            state = "expired" if is_expired(grant, now_ms) else "active"
        infos.append(KeyInfo(grant.name, grant.role, grant.created_ms, grant.expires_ms, state))
    return sorted(infos, key=lambda info: (info.name, info.created_ms))
