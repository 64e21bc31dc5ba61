"""HMAC framing for node-to-node bytes: gossip bodies and discovery datagrams.

Every node of a cluster shares one secret. A frame is::

    version (1 byte) | timestamp_ms (8, big endian) | nonce (8 random bytes) | payload | mac (32)

where ``mac = HMAC-SHA256(key, everything before it)`` and ``key`` is derived from the
cluster secret (so the secret itself never keys anything but this KDF). ``open`` rejects,
with an ``AuthError`` naming the reason:

* anything too short or of another version (``truncated``, ``version``);
* a timestamp more than ``max_skew_s`` away from the receiver's clock (``stale``);
* a MAC that does not match (``bad mac``): unsigned, tampered, or another cluster's secret;
* a nonce already accepted (``replay``).

Replay memory is bounded. Nonces are kept in a heap by frame timestamp and forgotten once
their frame could no longer pass the timestamp check. If more than ``max_nonces`` frames
arrive within that time, the oldest-stamped are forgotten early and a *floor* rises to
their timestamp: a frame not newer than the floor is refused as ``stale``, so a forgotten
nonce can never be replayed. Evicting by timestamp (not arrival) keeps the floor as low as
possible, so one sender with a clock running ahead cannot lift it over everyone else. The checks run cheapest first, and only authentic frames reach the nonce table,
so forged traffic cannot flush it. ``open`` is on the gossip hot path: one C HMAC over a
memoryview, one constant-time compare, one set insert and one heap push.

The replay memory belongs to one receiver: give every node (and every ``Discovery`` in a
test process) its own ``Signer``, or a frame heard by two of them looks replayed.
"""

from __future__ import annotations

import heapq
import hmac
import os
import struct

VERSION = 1
HEADER = struct.Struct(">BQ8s")  # version, timestamp_ms, nonce
HEADER_BYTES = HEADER.size
MAC_BYTES = 32
OVERHEAD_BYTES = HEADER_BYTES + MAC_BYTES
DEFAULT_MAX_SKEW_S = 30.0
DEFAULT_MAX_NONCES = 100_000
_KDF_LABEL = b"rumordb/wire/v1"


class AuthError(Exception):
    """A frame that is not authentic (or no longer acceptable); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def derive_key(secret: str) -> bytes:
    if not secret:
        raise ValueError("the cluster secret must not be empty")
    return hmac.digest(secret.encode(), _KDF_LABEL, "sha256")


class Signer:
    def __init__(
        self,
        secret: str,
        *,
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        max_nonces: int = DEFAULT_MAX_NONCES,
    ) -> None:
        if max_nonces < 1:
            raise ValueError("max_nonces must be >= 1")
        self._key = derive_key(secret)
        self._skew_ms = int(max_skew_s * 1000)
        self._max_nonces = max_nonces
        self._seen: set[bytes] = set()
        self._by_age: list[tuple[int, bytes]] = []  # heap of (timestamp_ms, nonce)
        self._floor_ms = -1  # frames at or below this are refused: their nonces are gone

    def seal(self, payload: bytes, now: float) -> bytes:
        header = HEADER.pack(VERSION, int(now * 1000), os.urandom(8))
        body = header + payload
        return body + hmac.digest(self._key, body, "sha256")

    def open(self, frame: bytes, now: float) -> bytes:
        """The payload of an authentic, fresh, first-seen frame, or ``AuthError``."""
        if len(frame) < OVERHEAD_BYTES:
            raise AuthError("truncated")
        version, timestamp_ms, nonce = HEADER.unpack_from(frame)
        if version != VERSION:
            raise AuthError("version")
        now_ms = int(now * 1000)
        if abs(timestamp_ms - now_ms) > self._skew_ms or timestamp_ms <= self._floor_ms:
            raise AuthError("stale")
        view = memoryview(frame)
        expected = hmac.digest(self._key, view[:-MAC_BYTES], "sha256")
        if not hmac.compare_digest(expected, view[-MAC_BYTES:]):
            raise AuthError("bad mac")
        if nonce in self._seen:
            raise AuthError("replay")
        self._remember(nonce, timestamp_ms, now_ms)
        return frame[HEADER_BYTES:-MAC_BYTES]

    @property
    def nonces_remembered(self) -> int:
        return len(self._seen)

    def _remember(self, nonce: bytes, timestamp_ms: int, now_ms: int) -> None:
        self._seen.add(nonce)
        by_age = self._by_age
        heapq.heappush(by_age, (timestamp_ms, nonce))
        expired_ms = now_ms - self._skew_ms
        while by_age and (by_age[0][0] < expired_ms or len(by_age) > self._max_nonces):
            oldest_ms, oldest = heapq.heappop(by_age)
            self._seen.discard(oldest)
            self._floor_ms = max(self._floor_ms, oldest_ms)
