"""Anti-entropy steps: two digests walk down to the differing keys and nothing else."""

import random
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from rumordb.core import anti_entropy, anti_entropy_wire
from rumordb.core.digest import Digest
from rumordb.core.hashing import key_hash
from rumordb.core.messages import DigestStep, SyncRecords

_T = TypeVar("_T")


def digest(entries: dict[str, int]) -> Digest:
    return Digest.of(entries.items())


def descend(a: Digest, b: Digest) -> tuple[anti_entropy.Listing, Digest, Digest] | None:
    """The alternating descent from a's root: (differing leaves, their lister, the other)."""
    rng = random.Random(1)
    step = anti_entropy.start("a", 1, a)
    sides = [b, a]
    for turn in range(40):
        assert anti_entropy_wire.step_problem(step) is None, "every step is well formed"
        reply = anti_entropy.on_digest("x", step, sides[turn % 2], rng)
        if reply is None:
            return None
        if isinstance(reply, anti_entropy.Listing):
            return reply, sides[turn % 2], sides[(turn + 1) % 2]
        step = reply
    raise AssertionError("the descent does not end")


def test_in_sync_replicas_stop_at_the_root() -> None:
    same = {f"k{i}": i for i in range(100)}
    assert descend(digest(same), digest(same)) is None


def test_the_walk_finds_exactly_the_differing_keys_on_both_sides() -> None:
    ours = {f"k{i}": i for i in range(100)}
    theirs = dict(ours, k3=999, only_theirs=1)
    del theirs["k7"]
    found = descend(digest(ours), digest(theirs))
    assert found is not None
    listing, lister, receiver = found
    leaves = anti_entropy.leaf_chunk("x", listing, lister, 1000, 1000)
    assert not leaves.more and anti_entropy_wire.leaves_problem(leaves) is None
    send, want, next_leaf = anti_entropy.on_leaf_entries(leaves, receiver, 100)
    assert next_leaf == leaves.leaves[-1] + 1, "every leaf handled"
    sent = set(send) | set(anti_entropy.wanted_keys(want, lister, 100))
    assert sent == {"k3", "k7", "only_theirs"}


def test_a_cut_leaf_phase_resumes_where_the_peer_stopped_and_never_goes_back() -> None:
    ours = {f"k{i}": i for i in range(400)}
    theirs = {k: v for k, v in ours.items() if int(k[1:]) % 10}  # 40 keys missing there
    found = descend(digest(ours), digest(theirs))
    assert found is not None
    listing, lister, receiver = found
    handled: list[str] = []
    chunks = 0
    while True:
        chunk = anti_entropy.leaf_chunk("x", listing, lister, max_entries=50, max_keys=7)
        assert len(chunk.leaves) <= 7 and chunks < 40
        send, want, next_leaf = anti_entropy.on_leaf_entries(chunk, receiver, 5)
        assert len(send) <= 5 and len(want) <= 5
        handled += send + anti_entropy.wanted_keys(want, lister, 5)
        chunks += 1
        answer = SyncRecords("y", listing.session, [], want, next_leaf)
        if not anti_entropy.resume(listing, answer):
            break
        assert not anti_entropy.resume(listing, answer), "a repeated answer resumes nothing"
    assert sorted(handled) == sorted(set(ours) - set(theirs)) and chunks > 5


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


# --- steps in slices: the same answers, in bounded pieces --------------------------------
_entries = st.dictionaries(st.integers(0, 300).map(lambda i: f"k{i}"), st.integers(1, 3), max_size=120)  # fmt: skip


def _slices(work: anti_entropy.Work[_T]) -> tuple[_T, int]:
    """``work``'s answer, and how many times it yielded to its driver."""
    yields = 0
    while True:
        try:
            next(work)
        except StopIteration as done:
            return done.value, yields
        yields += 1


@settings(max_examples=60, deadline=None)
@given(_entries, _entries, st.integers(1, 40))
def test_a_step_in_slices_of_any_size_answers_what_the_whole_step_answers(
    ours: dict[str, int], theirs: dict[str, int], slice_items: int
) -> None:
    """Every step of a descent and of the leaf phase: the same message, the same random
    window, whatever the slice; and a step of more items than a slice is cut."""
    a, b = Digest.of(ours.items(), min_leaf_bits=8), Digest.of(theirs.items(), min_leaf_bits=8)
    step: DigestStep | anti_entropy.Listing | None = anti_entropy.start("a", 1, a)
    sides = [b, a]
    turn = 0
    while isinstance(step, DigestStep):
        side = sides[turn % 2]
        whole = anti_entropy.on_digest("x", step, side, random.Random(turn))
        work = anti_entropy.on_digest_work("x", step, side, random.Random(turn), slice_items)
        sliced, yields = _slices(work)
        assert sliced == whole
        fan = 1 << (step.width - step.above)  # a parent's children are compared together
        children = len(step.parents) * fan
        assert yields >= (children - 1) // max(slice_items, fan), "a slice's children at most"
        step, turn = whole, turn + 1
    if step is None:
        return
    lister, receiver = sides[(turn - 1) % 2], sides[turn % 2]
    copy = anti_entropy.Listing(step.session, step.width, step.leaves[:])
    chunk = anti_entropy.leaf_chunk("x", step, lister, 50, 7)
    chunk_work = anti_entropy.leaf_chunk_work("x", copy, lister, 50, 7, slice_items)
    assert _slices(chunk_work)[0] == chunk and copy.end == step.end
    answer = anti_entropy.on_leaf_entries(chunk, receiver, 5)
    assert _slices(anti_entropy.on_leaf_entries_work(chunk, receiver, 5, slice_items))[0] == answer  # fmt: skip
    want = answer[1]
    wanted = anti_entropy.wanted_keys(want, lister, 5)
    assert _slices(anti_entropy.wanted_keys_work(want, lister, 5, slice_items))[0] == wanted
