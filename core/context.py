"""Version contexts: the opaque token a client reads (``ETag``) and hands back (``If-Match``).

A context names a version by its vector clock and HLC. A conditional write succeeds when
the local version is one the client has seen (the context descends from it), and the new
version then descends from the context, so the write causally follows what the client
read. Carrying the HLC lets a node that has not yet received that version still issue a
larger timestamp, keeping LWW consistent with causality.

Encoding: URL-safe base64 (unpadded) of MessagePack ``[[[node, counter], ...], hlc]``.
"""

from __future__ import annotations

import base64
import binascii

import msgspec

from rumordb.core.errors import InvalidContext
from rumordb.core.vclock import VClock, from_pairs, to_pairs

MAX_CONTEXT_CHARS = 8192


class Context(msgspec.Struct, frozen=True, array_like=True, gc=False):
    pairs: list[tuple[str, int]]
    hlc: int

    @property
    def clock(self) -> VClock:
        return dict(self.pairs)


_decoder = msgspec.msgpack.Decoder(Context)
_encoder = msgspec.msgpack.Encoder()
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def encode_context(clock: VClock, hlc: int) -> str:
    # Every write answers with its context: encoded straight from the clock's items
    # (the same bytes as a ``Context``), skipping the struct and base64's wrappers.
    pairs = sorted(clock.items()) if all(clock.values()) else to_pairs(clock)
    raw = _encoder.encode((pairs, hlc))
    return binascii.b2a_base64(raw, newline=False).translate(_URL_SAFE).rstrip(b"=").decode()


def decode_context(text: str) -> Context:
    text = text.strip().strip('"')
    if text.startswith("W/"):
        raise InvalidContext("weak ETags do not name a version")
    if not text or len(text) > MAX_CONTEXT_CHARS:
        raise InvalidContext("a version context is a non-empty token of at most 8192 characters")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        context = _decoder.decode(raw)
        from_pairs(context.pairs)  # validates counters
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidContext(f"malformed version context: {exc}") from exc
    if context.hlc < 0:
        raise InvalidContext("malformed version context: negative HLC")
    return context
