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
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rumordb.live.settings import ConfigError

KEY_BYTES = 24  # token_urlsafe(24): 192 bits
MAX_PRESENTED_KEY_CHARS = 512  # longer header values are refused without hashing
CACHE_MAX = 256
ROLE_NAMES = ("reader", "admin")


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

    def authenticate(
        self, headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]]
    ) -> Role | None:
        key = presented_key(headers)
        return None if key is None else self.role_for(key)


def presented_key(headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key from ``Authorization: Bearer <key>``, else from ``X-API-Key``.

    ``headers`` is a (case-insensitive) Starlette ``Headers``, a plain dict, or raw ASGI
    header pairs. A present but malformed ``Authorization`` header yields None: the
    client meant to authenticate and did it wrong, so nothing else is guessed.
    """
    authorization = _header(headers, "authorization")
    if authorization is not None:
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key or " " in key:
            return None
        return key
    api_key = _header(headers, "x-api-key")
    if api_key is None or not api_key.strip():
        return None
    return api_key.strip()


def _header(headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    if isinstance(headers, Mapping):
        value = headers.get(name)  # Starlette Headers: case-insensitive already
        if value is not None:
            return str(value)
        for header, found in headers.items():
            if header.lower() == name:
                return str(found)
        return None
    raw_name = name.encode()
    for header, found in headers:
        if header.lower() == raw_name:
            return found.decode("latin-1")
    return None


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
