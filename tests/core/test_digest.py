import random

import msgspec

from rumordb.core import anti_entropy
from rumordb.core.digest import Digest, fingerprint
from rumordb.core.messages import DigestStep, LeafEntries, encode


def full(n: int) -> dict[str, int]:
    return {f"key:{i}": fingerprint(1_000 + i, "n1", False) for i in range(n)}


def test_incremental_updates_equal_a_rebuild() -> None:
    entries = full(2_000)
    digest = Digest.of(entries.items())
    rng = random.Random(1)
    for key in rng.sample(sorted(entries), 300):
        entries[key] = fingerprint(9_999, "n2", False)
        digest.set(key, entries[key])
    for key in rng.sample(sorted(entries), 100):
        del entries[key]
        digest.remove(key)
    rebuilt = Digest.of(entries.items())
    assert digest.root == rebuilt.root != 0
    assert len(digest) == len(rebuilt) == 1_900
    for key in entries:
        digest.remove(key)
    assert digest.root == 0


def walk(a: Digest, b: Digest) -> tuple[set[str], int]:
    """Run the anti-entropy descent between a and b; return differing keys and digest bytes."""
    rng = random.Random(0)
    message: DigestStep | LeafEntries | None = anti_entropy.start("a", 1, a)
    sides = [b, a]
    turn = 0
    sent = 0
    while isinstance(message, DigestStep):
        sent += len(encode(message))
        message = anti_entropy.on_digest("x", message, sides[turn % 2], 100_000, rng)
        turn += 1
    assert isinstance(message, LeafEntries)
    sent += len(encode(message))
    receiver = sides[turn % 2]
    keys, want = anti_entropy.on_leaf_entries(message, receiver, 100_000)
    sender = sides[(turn + 1) % 2]
    found = set(keys) | {sender.key_of(kh) or "?" for kh in want}
    return found, sent


def test_100k_keys_50_differ_found_exactly_with_little_traffic() -> None:
    entries = full(100_000)
    a = Digest.of(entries.items())
    b = Digest.of(entries.items())
    rng = random.Random(7)
    changed = rng.sample(sorted(entries), 50)
    for i, key in enumerate(changed):
        if i % 3 == 0:
            b.remove(key)  # missing on b
        else:
            b.set(key, fingerprint(5, "n9", False))  # another version on b
    found, digest_bytes = walk(a, b)
    assert found == set(changed)
    value = b"x" * 100
    full_state = sum(
        len(msgspec.msgpack.encode([k, value, {"n1": 1}, 1_000, "n1"])) for k in entries
    )
    assert digest_bytes < 0.05 * full_state, (digest_bytes, full_state)


def test_replicas_in_sync_exchange_one_message() -> None:
    entries = full(1_000)
    a, b = Digest.of(entries.items()), Digest.of(entries.items())
    step = anti_entropy.start("a", 1, a)
    assert anti_entropy.on_digest("b", step, b, 1_000, random.Random(0)) is None
