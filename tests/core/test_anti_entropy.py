"""Anti-entropy steps: two digests walk down to the differing keys and nothing else."""

import random

from rumordb.core import anti_entropy
from rumordb.core.digest import Digest
from rumordb.core.hashing import key_hash
from rumordb.core.messages import DigestStep, LeafEntries


def digest(entries: dict[str, int]) -> Digest:
    return Digest.of(entries.items())


def walk(a: Digest, b: Digest) -> LeafEntries | None:
    """Run the alternating descent from a's root to the leaf entries (or to agreement)."""
    rng = random.Random(1)
    message: DigestStep | LeafEntries | None = anti_entropy.start("a", 1, a)
    sides = [b, a]
    turn = 0
    while isinstance(message, DigestStep):
        message = anti_entropy.on_digest("x", message, sides[turn % 2], 1000, rng)
        turn += 1
    return message


def test_in_sync_replicas_stop_at_the_root() -> None:
    same = {f"k{i}": i for i in range(100)}
    assert walk(digest(same), digest(same)) is None


def test_the_walk_finds_exactly_the_differing_keys_on_both_sides() -> None:
    ours = {f"k{i}": i for i in range(100)}
    theirs = dict(ours, k3=999, only_theirs=1)
    del theirs["k7"]
    leaves = walk(digest(ours), digest(theirs))
    assert isinstance(leaves, LeafEntries)
    # Whoever listed the leaves, the other side now says what to send and what it wants.
    listed_by_a = any(key_hash("k7") in dict(pairs) for pairs in leaves.entries.values())
    receiver = digest(theirs) if listed_by_a else digest(ours)
    send, want = anti_entropy.on_leaf_entries(leaves, receiver, 100)
    mine = {"k3", "only_theirs"} if listed_by_a else {"k3", "k7"}
    assert set(send) == mine
    assert set(
        anti_entropy.wanted_keys(want, digest(ours) if listed_by_a else digest(theirs), 100)
    ) >= {"k3"}


def test_wanted_keys_skips_unknown_hashes_and_is_bounded() -> None:
    d = digest({"a": 1, "b": 2, "c": 3})
    assert anti_entropy.wanted_keys([key_hash("a"), 12345, key_hash("b")], d, 10) == ["a", "b"]
    assert anti_entropy.wanted_keys([key_hash("a"), key_hash("b")], d, 1) == ["a"]


def test_pacing_waits_while_busy_but_never_more_than_max_waits_in_a_row() -> None:
    pacing = anti_entropy.Pacing(busy_versions=100, max_waits=2)
    applied, verdicts = 0, []
    for new_versions in (0, 150, 150, 150, 150, 10, 150):
        applied += new_versions
        verdicts.append(pacing.due(applied))
    assert verdicts == [True, False, False, True, False, True, False]


def test_pacing_off_never_waits() -> None:
    pacing = anti_entropy.Pacing(busy_versions=0, max_waits=4)
    assert all(pacing.due(n * 10_000) for n in range(5))


def test_an_ingesting_node_holds_anti_entropy_back_for_at_most_max_waits_intervals() -> None:
    from rumordb.core import Node, NodeConfig, WriteCommand, message_kind

    config = NodeConfig(jitter_timers=False, anti_entropy_busy_versions=500)
    n = Node("me", "mem://me", rng=random.Random(3), now=100.0, config=config)
    peer = Node("peer", "mem://peer", rng=random.Random(4), now=100.0, config=config)
    n.join("peer", "mem://peer", 0, 100.0)
    peer.join("me", "mem://me", 0, 100.0)
    sessions = []
    for second in range(1, 8):
        now = 100.0 + second
        if second <= 6:  # an ingest of 1 000 keys per second for six seconds
            batch = [WriteCommand(f"k{second}/{i:04d}", b"v", "t") for i in range(1000)]
            n.write_batch(batch, now)
            n.flush(now)
        for _, data in peer.tick(now, mono=now).messages:  # its heartbeats keep it alive
            if message_kind(data) == "hb":
                n.receive(data, now, mono=now)
        out = n.tick(now + 0.05, mono=now + 0.05)
        sessions.append(any(message_kind(data) == "digest" for _, data in out.messages))
    # Waits while busy, but a session at least every max_waits + 1 intervals; once the
    # ingest stops, the next interval syncs.
    assert sessions == [False, False, False, False, True, False, True]
