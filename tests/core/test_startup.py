"""The start-up load: slices of stored versions, and reads of keys not loaded yet."""

import random

import pytest

from rumordb.core import Local, Node, NodeConfig, Record, WriteCommand, read_stored
from rumordb.core.hlc import pack

NOW_S = 100.0


def rec(ms: int, *, tombstone: bool = False, expires_ms: int = 0) -> Record:
    value = b"" if tombstone else b"v%d" % ms
    expires = pack(expires_ms) if expires_ms else 0
    return Record(value, "text/plain", {"old": ms}, pack(ms), "old", tombstone, expires)


def fresh_node() -> Node:
    return Node("n1", rng=random.Random(1), now=NOW_S, config=NodeConfig(jitter_timers=False))


def test_slices_load_into_the_store_and_each_answers_the_keys_held() -> None:
    node = fresh_node()
    assert node.startup.load([("a", rec(1_000)), ("b", rec(2_000))]) == 2
    assert node.startup.load([("c", rec(3_000, tombstone=True))]) == 3
    assert node.view.key_count() == (2, 1), "the tombstone is known as one"
    assert node.view.list_keys() == ["a", "b"]


def test_a_loaded_slice_is_tracked_like_the_constructors_records() -> None:
    """Expiry and the HLC follow what was loaded, slice or constructor alike."""
    node = fresh_node()
    far_ms = int(NOW_S * 1000) + 3_600_000  # loaded versions written an hour ahead
    node.startup.load([("ttl", rec(1_000, expires_ms=int(NOW_S * 1000) + 500))])
    node.startup.load([("late", rec(far_ms))])
    written = node.write(WriteCommand("new", b"x"), NOW_S).record
    assert written is not None and written.hlc > pack(far_ms), "HLC above every loaded one"
    out = node.tick(NOW_S + 1.0)
    assert [key for key, r in out.writes if r.tombstone] == ["ttl"], "its TTL ran out"


@pytest.mark.parametrize(
    ("stored", "now_s", "found"),
    [
        (None, NOW_S, False),
        (rec(1_000), NOW_S, True),
        (rec(1_000, tombstone=True), NOW_S, False),
        (rec(1_000, expires_ms=2_000), 1.5, True),
        (rec(1_000, expires_ms=2_000), 2.5, False),
    ],
)
def test_a_stored_version_reads_as_the_loaded_one_would(
    stored: Record | None, now_s: float, found: bool
) -> None:
    answer = read_stored(stored, now_s)
    assert answer == Local(stored if found else None)
    node = fresh_node()
    if stored is not None:
        node.startup.load([("k", stored)])
    loaded = node.read("k", now=now_s)  # its token (the stored blob) is the node's own
    assert (loaded.record, loaded.discarded) == (answer.record, answer.discarded)


def test_a_meta_read_of_a_stored_version_shows_it_as_stored() -> None:
    tombstone = rec(1_000, tombstone=True)
    assert read_stored(tombstone, NOW_S, meta=True) == Local(tombstone, None)
    assert read_stored(None, NOW_S, meta=True) == Local(None, None)
