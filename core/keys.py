"""What a key may be: one pure check, called once where a key enters the node.

The HTTP parser calls ``check_key`` on a client's key; ``Node.receive`` calls it on every
key a peer sends. ``Node.write`` trusts its command's key (the driver checked it), so a
client key is checked exactly once and always with the same answer. ``first_bad_key``
checks many keys (a batch, a peer's push) with a few C-level passes over all of them and
names the first that ``check_key`` refuses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rumordb.core.errors import InvalidKey

DEFAULT_MAX_KEY_BYTES = 1024
# C0 controls, DEL, C1 controls and lone surrogates: none of them prints, and a lone
# surrogate is not UTF-8 at all.
_BAD_KEY_CHAR = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def check_key(key: str, max_key_bytes: int = DEFAULT_MAX_KEY_BYTES) -> None:
    """Raise ``InvalidKey`` (``too_long`` set for a key over ``max_key_bytes``)."""
    if not key:
        raise InvalidKey("a key must not be empty")
    # A UTF-8 character is at most 4 bytes: short keys need no encoding to measure.
    if len(key) * 4 > max_key_bytes and len(key.encode("utf-8", "surrogatepass")) > max_key_bytes:
        raise InvalidKey(f"a key is at most {max_key_bytes} bytes of UTF-8", too_long=True)
    if _BAD_KEY_CHAR.search(key):
        raise InvalidKey("a key must be valid UTF-8 text without control characters")


def plain_key(key: str, max_key_bytes: int = DEFAULT_MAX_KEY_BYTES) -> bool:
    """True for a key ``check_key`` passes for sure (not empty, short, no forbidden
    character), as a test: False may still be a valid key (a long one, to measure)."""
    return bool(key) and len(key) * 4 <= max_key_bytes and not _BAD_KEY_CHAR.search(key)


def first_bad_key(keys: Sequence[str], max_key_bytes: int = DEFAULT_MAX_KEY_BYTES) -> int | None:
    """The index of the first key ``check_key`` refuses, or None when every key passes."""
    # A forbidden character in the joined text is one in some key (none spans two: the
    # separator is allowed), so a clean batch costs one search, not one per key.
    short = max(map(len, keys), default=0) * 4 <= max_key_bytes
    if short and all(keys) and not _BAD_KEY_CHAR.search("/".join(keys)):
        return None
    for index, key in enumerate(keys):
        try:
            check_key(key, max_key_bytes)
        except InvalidKey:
            return index
    return None
