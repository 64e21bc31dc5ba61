"""HMAC framing for node-to-node bytes: gossip bodies and discovery datagrams.

Every node of a cluster shares one secret. A frame is::

    version (1) | timestamp_ms (8, big endian) | nonce (8 random bytes)
    | sender length (1) | recipient length (1) | sender | recipient | payload | mac (32)

where ``mac = HMAC-SHA256(key, everything before it)`` and ``key`` is derived from the
cluster secret (so the secret itself never keys anything but this KDF). The seal covers
the sender's and the recipient's node ids: a frame captured on its way to n2 is refused by
n3, and a node cannot pass its frames off as another's. Discovery datagrams, heard by
every node, name ``BROADCAST`` (not a valid node id) as their recipient, so they can never
be replayed as gossip, nor gossip as discovery. ``open`` rejects, with an ``AuthError``
naming the reason, in this order:

* anything too short or of another version (``truncated``, ``version``);
* a MAC that matches neither key (``bad mac``): unsigned, tampered, or another cluster's;
* a frame for another recipient (``recipient``);
* an authentic frame whose timestamp is more than ``max_skew_s`` away from the receiver's
  clock (``stale``, raised as ``StaleFrame``): kernel retransmissions of posts that timed
  out during a long partition, or a paused process's backlog. The MAC is checked first
  so that such frames, which are authentic, are told apart from forgeries: callers count
  and log them separately, at debug level, never as a security event;
* a nonce already accepted (``replay``).

Rotation of the cluster secret (``--cluster-secret-previous``). A ``Signer`` signs with
the current secret and accepts frames under the current or the previous one. A frame
must be accepted by every node it may reach, so a rolling change takes three rolling
restarts, each of which leaves every pair of nodes able to talk both ways:

1. ``secret=old, previous=new``: every node learns to accept ``new``, all still sign ``old``;
2. ``secret=new, previous=old``: nodes start signing ``new``; the nodes of step 1 accept it,
   and the changed nodes still accept ``old`` from the nodes not yet changed;
3. ``secret=new``: ``old`` is no longer accepted; nobody signs with it any more.

(With two steps only, a node holding ``old`` alone would refuse the changed nodes'
frames: a receiver must know a key before any sender uses it.)

Replay memory is bounded. Nonces are kept in a heap by frame timestamp and forgotten once
their frame could no longer pass the timestamp check. If more than ``max_nonces`` frames
arrive within that time, the oldest-stamped are forgotten early and a *floor* rises to
their timestamp: a frame not newer than the floor is refused as ``stale``, so a forgotten
nonce can never be replayed. Evicting by timestamp (not arrival) keeps the floor as low as
possible, so one sender with a clock running ahead cannot lift it over everyone else. Only
authentic frames reach the nonce table, so forged traffic cannot flush it. ``open`` is on
the gossip hot path: one C HMAC over a memoryview (two only for frames under the previous
key, or forged), one constant-time compare, one set insert and one heap push.

The replay memory belongs to one receiver: give every node (and every ``Discovery`` in a
test process) its own ``Signer``, or a frame heard by two of them looks replayed.
"""

from __future__ import annotations

import heapq
import hmac
import os
import struct
from typing import NamedTuple, Protocol

VERSION = 2  # 2: sender and recipient ids inside the seal
HEADER = struct.Struct(">BQ8sBB")  # version, timestamp_ms, nonce, sender and recipient lengths
HEADER_BYTES = HEADER.size
MAC_BYTES = 32
OVERHEAD_BYTES = HEADER_BYTES + MAC_BYTES
MAX_ID_BYTES = 255
BROADCAST = "*"  # the recipient of a datagram for every node (never a node id)
DEFAULT_MAX_SKEW_S = 30.0
DEFAULT_MAX_NONCES = 100_000
_KDF_LABEL = b"rumordb/wire/v1"


class AuthError(Exception):
    """A frame that is not authentic (or no longer acceptable); ``reason`` says why."""

    authentic = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StaleFrame(AuthError):
    """An authentic frame outside the freshness window: old news, not an attack."""

    authentic = True


class Opened(NamedTuple):
    sender: str
    payload: bytes


class _Secrets(Protocol):
    cluster_secret_previous: str | None

    def require_cluster_secret(self) -> str: ...


def derive_key(secret: str) -> bytes:
    if not secret:
        raise ValueError("the cluster secret must not be empty")
    return hmac.digest(secret.encode(), _KDF_LABEL, "sha256")


def signer_for(settings: _Secrets) -> Signer:
    """A node's ``Signer``: its cluster secret, and the previous one during a rotation."""
    return Signer(settings.require_cluster_secret(), previous=settings.cluster_secret_previous)


class Signer:
    def __init__(
        self,
        secret: str,
        *,
        previous: str | None = None,
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        max_nonces: int = DEFAULT_MAX_NONCES,
    ) -> None:
        if max_nonces < 1:
            raise ValueError("max_nonces must be >= 1")
        current = derive_key(secret)
        self._keys = (current,) if previous is None else (current, derive_key(previous))
        self._skew_ms = int(max_skew_s * 1000)
        self._max_nonces = max_nonces
        self._seen: set[bytes] = set()
        self._by_age: list[tuple[int, bytes]] = []  # heap of (timestamp_ms, nonce)
        self._floor_ms = -1  # frames at or below this are refused: their nonces are gone

    def seal(self, payload: bytes, now: float, sender: str, recipient: str) -> bytes:
        sender_id, recipient_id = sender.encode(), recipient.encode()
        if len(sender_id) > MAX_ID_BYTES or len(recipient_id) > MAX_ID_BYTES:
            raise ValueError("node ids are at most 255 bytes")
        header = HEADER.pack(
            VERSION, int(now * 1000), os.urandom(8), len(sender_id), len(recipient_id)
        )
        body = b"".join((header, sender_id, recipient_id, payload))
        return body + hmac.digest(self._keys[0], body, "sha256")

    def open(self, frame: bytes, now: float, recipient: str) -> Opened:
        """The sender and payload of an authentic frame for ``recipient``, fresh and first
        seen; else ``AuthError`` (``StaleFrame`` if authentic but outside the window)."""
        if len(frame) < OVERHEAD_BYTES:
            raise AuthError("truncated")
        version, timestamp_ms, nonce, sender_len, recipient_len = HEADER.unpack_from(frame)
        if version != VERSION:
            raise AuthError("version")
        start = HEADER_BYTES + sender_len + recipient_len
        if len(frame) < start + MAC_BYTES:
            raise AuthError("truncated")
        view = memoryview(frame)
        if not self._authentic(view):
            raise AuthError("bad mac")
        if frame[HEADER_BYTES + sender_len : start] != recipient.encode():
            raise AuthError("recipient")
        now_ms = int(now * 1000)
        if abs(timestamp_ms - now_ms) > self._skew_ms or timestamp_ms <= self._floor_ms:
            raise StaleFrame("stale")
        if nonce in self._seen:
            raise AuthError("replay")
        try:
            sender = frame[HEADER_BYTES : HEADER_BYTES + sender_len].decode()
        except UnicodeDecodeError:
            raise AuthError("sender") from None
        self._remember(nonce, timestamp_ms, now_ms)
        return Opened(sender, frame[start:-MAC_BYTES])

    def _authentic(self, view: memoryview) -> bool:
        signed, mac = view[:-MAC_BYTES], view[-MAC_BYTES:]
        for key in self._keys:  # current first: the previous one only during a rotation
            if hmac.compare_digest(hmac.digest(key, signed, "sha256"), mac):
                return True
        return False

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
