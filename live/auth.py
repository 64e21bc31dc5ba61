"""API keys: random secrets, stored only as SHA-256 hashes, each bound to a role.

A key is ``secrets.token_urlsafe(24)`` (192 random bits). Its text means nothing: the role
comes only from the entry whose hash matches, so no key "shaped like" an admin key grants
anything (the old prototype parsed roles out of key strings). Keys come from

* a keys file (``--keys-file``): ``{"keys": [{"name", "role", "sha256", "created"}]}``,
  written with mode 600 by ``add_key`` (``rumor apikey create``), holding no plaintext;
* the environment (``RUMOR_ADMIN_KEY``, ``RUMOR_READER_KEY``): hashed at start.

Lookup hashes the presented key and compares it with *every* stored hash using
``hmac.compare_digest``, so the time taken does not depend on which hash, or which prefix,
matched. Keys are long random strings, so a plain SHA-256 (no slow KDF) is enough; a small
bounded cache of recently accepted keys skips even that on the hot path (a dict lookup on
``str`` is keyed by a per-process randomised hash, so it leaks nothing useful). Unknown keys
are never cached, so junk cannot grow or flush the cache.

The hot path (``Gate.check_asgi``, the ``/kv`` warm reads) also keeps the raw credential
header of an accepted bootstrap key -> its role (bounded, the same ``CACHE_MAX``): those
keys cannot change while the node runs, and an address that ever failed still takes the
whole check (its bucket may refuse it).

Keys sold at run time live in the replicated keyring (``live.keyring``, rules in
``core.keyring``): the gate asks it when the static keys above (the bootstrap keys) do
not know a key. Its answers are never cached here, so a revocation or an expiry takes
effect on the next request.

One door for every route: ``Gate.check`` takes a request's raw header list and client
address, and is what both the ``/kv`` handler and the FastAPI routes call. It answers
``AuthRefused`` (status, error, detail, headers) or the caller's role:

* 400 ``duplicate_credentials``: two ``Authorization`` or two ``X-API-Key`` headers, or
  both headers naming different keys (servers and proxies pick different ones of a
  duplicate, so any choice here could be the one a proxy did not check);
* 401 ``unauthorized``: no key, a malformed ``Authorization``, or an unknown key;
* 429 ``too_many_failures`` with ``Retry-After``: this client address failed too often.

Failed authentications are limited per client address by a token bucket
(``FailureLimiter``): ``auth_failure_burst`` failures (default 20) at once, refilled at
``auth_failure_refill_per_s`` (default 1 per second), so a guesser gets ~86 000 tries a
day instead of ~4 000 a second. An empty bucket refuses the address's requests *before*
their key is looked at, good keys included: otherwise throttling would slow nothing
down. Success does not refill the bucket. The table holds at most
``auth_failure_clients_max`` addresses (default 10 000), least recently failed forgotten
first, so a flood from many addresses costs bounded memory. Failures are counted
(``rumor_auth_failures_total{reason}``, ``rumor_auth_throttled_total``) and logged, at
most one line per address per ``LOG_INTERVAL_S`` with the count since the last line.
The address is the TCP peer's: ``X-Forwarded-For`` is not trusted (anyone can send it).
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import hmac
import json
import math
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from rumordb.live.errors import HttpError
from rumordb.live.settings import ConfigError

if TYPE_CHECKING:
    from rumordb.live.metrics import Metrics

log = structlog.get_logger("rumor.auth")

KEY_BYTES = 24  # token_urlsafe(24): 192 bits
MAX_PRESENTED_KEY_CHARS = 512  # longer header values are refused without hashing
CACHE_MAX = 256
ROLE_NAMES = ("reader", "admin")
LOG_INTERVAL_S = 10.0  # at most one failed-authentication log line per address per interval
RawHeaders = Iterable[tuple[bytes, bytes]]
_CREDENTIAL_HEADERS = frozenset((b"x-api-key", b"authorization"))  # ASGI names: lower-case


class Role(enum.Enum):
    READER = "reader"
    ADMIN = "admin"

    def allows_writes(self) -> bool:
        return self is Role.ADMIN


class KeysFileError(ConfigError):
    """The keys file is missing, unreadable or malformed; the message says how."""


class _Settings(Protocol):
    keys_file: Path | None
    admin_key: str | None
    reader_key: str | None


@dataclass(frozen=True, slots=True)
class KeyEntry:
    name: str
    role: Role
    sha256: str  # hex digest of the key's UTF-8 bytes
    created: str  # ISO 8601, UTC

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "role": self.role.value,
            "sha256": self.sha256,
            "created": self.created,
        }


def generate_key() -> str:
    return secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, entries: Iterable[tuple[str, Role]] = ()) -> None:
        """``entries``: (sha256 hex, role) pairs."""
        self._hashes: list[tuple[bytes, Role]] = [
            (bytes.fromhex(digest), role) for digest, role in entries
        ]
        self._cache: dict[str, Role] = {}

    @classmethod
    def from_settings(cls, settings: _Settings) -> KeyStore:
        entries: list[tuple[str, Role]] = []
        if settings.keys_file is not None:
            entries += [(e.sha256, e.role) for e in read_keys_file(settings.keys_file)]
        if settings.admin_key:
            entries.append((hash_key(settings.admin_key), Role.ADMIN))
        if settings.reader_key:
            entries.append((hash_key(settings.reader_key), Role.READER))
        return cls(entries)

    def __len__(self) -> int:
        return len(self._hashes)

    def role_for(self, presented_key: str) -> Role | None:
        cached = self._cache.get(presented_key)
        if cached is not None:
            return cached
        if not presented_key or len(presented_key) > MAX_PRESENTED_KEY_CHARS:
            return None
        digest = hashlib.sha256(presented_key.encode("utf-8", "replace")).digest()
        found: Role | None = None
        for stored, role in self._hashes:  # no early exit: same work whatever matches
            if hmac.compare_digest(stored, digest) and found is not Role.ADMIN:
                found = role
        if found is not None:
            if len(self._cache) >= CACHE_MAX:
                self._cache.pop(next(iter(self._cache)))
            self._cache[presented_key] = found
        return found


class AuthRefused(HttpError):
    """A request that authentication refuses (400, 401 or 429): an ``HttpError`` like any."""

    def __init__(
        self, status: int, error: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        raw = tuple((name.encode(), value.encode()) for name, value in (headers or {}).items())
        super().__init__(status, error, detail, raw)


UNAUTHORIZED_DETAIL = "missing or unknown API key (Authorization: Bearer <key> or X-API-Key)"


def presented_key(headers: RawHeaders) -> str | None:
    """The key from ``Authorization: Bearer <key>``, else from ``X-API-Key``; None if none.

    ``headers`` are raw ASGI header pairs, so duplicates are seen (a mapping would hide
    them): two of either header, or both naming different keys, raise ``AuthRefused``
    (400). A present but malformed ``Authorization`` header yields None: the client meant
    to authenticate and did it wrong, so nothing else is guessed.
    """
    return credential(*credential_headers(headers))


def credential_headers(headers: RawHeaders) -> tuple[bytes | None, bytes | None, bool]:
    """The ``Authorization`` and ``X-API-Key`` values, and whether either came twice."""
    authorization: bytes | None = None
    api_key: bytes | None = None
    duplicated = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"authorization":
            duplicated = duplicated or authorization is not None
            authorization = value
        elif lowered == b"x-api-key":
            duplicated = duplicated or api_key is not None
            api_key = value
    return authorization, api_key, duplicated


def credential(authorization: bytes | None, api_key: bytes | None, duplicated: bool) -> str | None:
    """``presented_key`` for a caller that read the two headers in its own header pass.

    ``duplicated``: either header was given more than once (400 ``duplicate_credentials``).
    """
    if duplicated:
        raise AuthRefused(
            400, "duplicate_credentials", "send one Authorization or one X-API-Key header"
        )
    from_api_key = (api_key.decode("latin-1").strip() or None) if api_key is not None else None
    if authorization is None:
        return from_api_key
    scheme, _, key = authorization.decode("latin-1").strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or " " in key:
        return None
    if from_api_key is not None and from_api_key != key:
        raise AuthRefused(
            400, "duplicate_credentials", "Authorization and X-API-Key name different keys"
        )
    return key


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_s: float
    logged_s: float = -math.inf
    unlogged: int = 0  # failures (and refusals) since the last log line


class FailureLimiter:
    """A token bucket of failed authentications per client address (see the module doc)."""

    def __init__(self, burst: int = 20, refill_per_s: float = 1.0, clients_max: int = 10_000):
        if burst < 1 or refill_per_s <= 0 or clients_max < 1:
            raise ValueError("burst and clients_max must be >= 1, refill_per_s > 0")
        self.burst = burst
        self.refill_per_s = refill_per_s
        self.clients_max = clients_max
        # Address -> its bucket; an address not in it has never failed (or was forgotten).
        self.buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self.buckets)

    def retry_after_s(self, client: str, now_s: float) -> float | None:
        """Seconds until ``client`` may try again, or None if it may try now."""
        bucket = self.buckets.get(client)  # the only cost for a client that never failed
        if bucket is None:
            return None
        self._refill(bucket, now_s)
        return None if bucket.tokens >= 1 else (1 - bucket.tokens) / self.refill_per_s

    def failed(self, client: str, now_s: float) -> _Bucket:
        bucket = self.buckets.get(client)
        if bucket is None:
            bucket = self.buckets[client] = _Bucket(float(self.burst), now_s)
            if len(self.buckets) > self.clients_max:
                self.buckets.popitem(last=False)  # the least recently failed address
        else:
            self.buckets.move_to_end(client)
            self._refill(bucket, now_s)
        bucket.tokens = max(0.0, bucket.tokens - 1)
        return bucket

    def bucket(self, client: str) -> _Bucket | None:
        return self.buckets.get(client)

    def _refill(self, bucket: _Bucket, now_s: float) -> None:
        elapsed_s = max(0.0, now_s - bucket.updated_s)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed_s * self.refill_per_s)
        bucket.updated_s = now_s


class KeyLookup(Protocol):
    """A second source of keys (the replicated keyring): the role a key grants now."""

    def role_for(self, presented_key: str) -> Role | None: ...


class _LimiterSettings(Protocol):
    auth_failure_burst: int
    auth_failure_refill_per_s: float
    auth_failure_clients_max: int


class Gate:
    """Authentication of client requests, the same on every route (see the module doc)."""

    def __init__(
        self,
        keystore: KeyStore,
        limiter: FailureLimiter,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        keyring: KeyLookup | None = None,
    ) -> None:
        self.keystore = keystore
        self.keyring = keyring
        self.limiter = limiter
        self._metrics = metrics
        self._clock = clock
        # (credential header, raw value) -> role, for bootstrap keys only (``check_asgi``).
        self._static_roles: dict[tuple[bytes, bytes], Role] = {}

    @classmethod
    def from_settings(
        cls,
        keystore: KeyStore,
        settings: _LimiterSettings,
        metrics: Metrics | None = None,
        keyring: KeyLookup | None = None,
    ) -> Gate:
        limiter = FailureLimiter(
            settings.auth_failure_burst,
            settings.auth_failure_refill_per_s,
            settings.auth_failure_clients_max,
        )
        return cls(keystore, limiter, metrics, keyring=keyring)

    def check(self, headers: RawHeaders, client: str | None) -> Role:
        """The role of the request's key, or ``AuthRefused`` (400, 401 or 429)."""
        return self.check_credentials(*credential_headers(headers), client)

    def check_asgi(self, headers: RawHeaders, client: tuple[str, int] | None) -> Role:
        """``check`` for an ASGI request's own headers (names are lower-case there) and
        its ``client`` pair, the hot path's door: a request with one credential header
        naming a bootstrap key from an address that never failed is answered from
        ``_static_roles`` (those keys never change while the node runs, and nothing else
        this check does could refuse it); anything else takes ``check`` whole."""
        found: tuple[bytes, bytes] | None = None
        given = 0
        for name, value in headers:
            if name in _CREDENTIAL_HEADERS:
                found, given = (name, value), given + 1
        address = (client and client[0]) or "?"
        if given == 1 and address not in self.limiter.buckets:
            role = self._static_roles.get(found)  # type: ignore[arg-type]  # given == 1
            if role is not None:
                return role
        role = self.check(headers, address)
        if found is not None and given == 1:
            self._remember(found, role)
        return role

    def _remember(self, header: tuple[bytes, bytes], role: Role) -> None:
        """Keep ``header -> role`` if the header names a bootstrap key (never a keyring
        key: revocations there must be seen at once); bounded like the key store's cache."""
        key = credential(*credential_headers([header]))
        if key is None or self.keystore.role_for(key) is not role:
            return
        self._keep(header, role)

    def _keep(self, header: tuple[bytes, bytes], role: Role) -> None:
        if len(self._static_roles) >= CACHE_MAX:
            self._static_roles.clear()
        self._static_roles[header] = role

    def check_credentials(
        self,
        authorization: bytes | None,
        api_key: bytes | None,
        duplicated: bool,
        client: str | None,
    ) -> Role:
        """``check`` for a caller that read the credential headers in its own header pass
        (the ``/kv`` handler, see ``credential_headers``). One credential header naming a
        bootstrap key, from an address that never failed, is answered from
        ``_static_roles`` as ``check_asgi`` answers it (every write passes here)."""
        address = client or "?"
        header: tuple[bytes, bytes] | None = None
        if not duplicated and (authorization is None) is not (api_key is None):
            if api_key is not None:
                header = (b"x-api-key", api_key)
            elif authorization is not None:
                header = (b"authorization", authorization)
            if header is not None and address not in self.limiter.buckets:
                known = self._static_roles.get(header)
                if known is not None:
                    return known
        now_s = self._clock()
        wait_s = self.limiter.retry_after_s(address, now_s)  # before any key is looked at
        if wait_s is not None:
            self._failed(address, now_s, "throttled")
            raise AuthRefused(
                429,
                "too_many_failures",
                "too many failed authentications from this address; retry later",
                {"retry-after": str(max(1, math.ceil(wait_s)))},
            )
        if authorization is None and api_key is not None and not duplicated:
            key = api_key.decode("latin-1").strip() or None  # ``credential``'s common case
        else:
            key = credential(authorization, api_key, duplicated)
        role = self.keystore.role_for(key) if key is not None else None
        if role is not None and header is not None:  # a bootstrap key: never changes
            self._keep(header, role)
        if role is None and key is not None and self.keyring is not None:
            role = self.keyring.role_for(key)  # (never kept: a revocation shows at once)
        if role is None:
            self._failed(address, now_s, "missing" if key is None else "unknown")
            raise AuthRefused(
                401, "unauthorized", UNAUTHORIZED_DETAIL, {"www-authenticate": "Bearer"}
            )
        return role

    def _failed(self, address: str, now_s: float, reason: str) -> None:
        if reason == "throttled":
            bucket = self.limiter.bucket(address)
            if self._metrics is not None:
                self._metrics.auth_throttled.inc()
        else:
            bucket = self.limiter.failed(address, now_s)
            if self._metrics is not None:
                self._metrics.auth_failures.labels(reason).inc()
        if bucket is None:
            return
        bucket.unlogged += 1
        if now_s - bucket.logged_s >= LOG_INTERVAL_S:
            log.warning("auth_failed", client=address, reason=reason, failures=bucket.unlogged)
            bucket.logged_s, bucket.unlogged = now_s, 0


# --- the keys file -------------------------------------------------------------------
def read_keys_file(path: Path) -> list[KeyEntry]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeysFileError(
            f"keys file {path} does not exist; create it with "
            f"`rumor apikey create --role admin --keys-file {path}`"
        ) from None
    except OSError as error:
        raise KeysFileError(f"cannot read keys file {path}: {error}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise KeysFileError(f"keys file {path} is not JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeysFileError(f'keys file {path} must hold {{"keys": [...]}}')
    return [_entry(path, i, item) for i, item in enumerate(document["keys"])]


def _entry(path: Path, index: int, item: Any) -> KeyEntry:
    where = f"keys file {path}, entry {index}"
    if not isinstance(item, dict):
        raise KeysFileError(f"{where}: must be an object")
    role, digest = item.get("role"), item.get("sha256")
    if role not in ROLE_NAMES:
        raise KeysFileError(f"{where}: role must be one of {ROLE_NAMES}, not {role!r}")
    if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
        raise KeysFileError(f"{where}: sha256 must be 64 hex characters")
    return KeyEntry(
        str(item.get("name", "")), Role(role), digest.lower(), str(item.get("created", ""))
    )


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def add_key(keys_file: Path, role: Role | str, name: str | None = None) -> str:
    """Append a new key's hash to ``keys_file`` (created with mode 600); return the key.

    The plaintext exists only in the return value: print it once, never store it.
    """
    role = Role(role)
    path = Path(keys_file)
    entries = read_keys_file(path) if path.exists() else []
    name = name or f"{role.value}-{len(entries) + 1}"
    if any(entry.name == name for entry in entries):
        raise KeysFileError(f"keys file {path} already has a key named {name!r}")
    key = generate_key()
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    entries.append(KeyEntry(name, role, hash_key(key), created))
    _write_private(path, {"keys": [entry.to_json() for entry in entries]})
    return key


def _write_private(path: Path, document: dict[str, Any]) -> None:
    """Write atomically through a mode-600 temporary file, so no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)  # O_CREAT's mode does not apply to an old file
            json.dump(document, file, indent=2)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
