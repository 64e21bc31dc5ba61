"""A node's side of anti-entropy: starting, answering each step, counting what ended."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumordb.core import Node, NodeConfig, Output, anti_entropy, message_kind
from rumordb.core.messages import DigestStep, LeafEntries, SyncRecords, decode, encode


def _node(node_id: str, *peers: str, config: NodeConfig | None = None) -> Node:
    n = Node(node_id, rng=random.Random(1), now=0.0, config=config or NodeConfig())
    for peer in peers:
        n.join(peer, peer, 0, 0.0)
    return n


def _only(out: Output) -> tuple[str, object]:
    assert len(out.messages) == 1
    target, data = out.messages[0]
    return target, decode(data)


def test_no_peer_no_session_and_a_started_one_is_counted() -> None:
    alone = _node("a")
    out = Output()
    alone.anti_entropy.start(out)
    assert not out.messages and alone.counters.anti_entropy_sessions == 0
    a = _node("a", "b")
    a.anti_entropy.start(out)
    target, step = _only(out)
    assert target == "b" and isinstance(step, DigestStep) and step.session == 1
    assert a.counters.anti_entropy_sessions == 1


def test_a_session_walks_to_the_differing_key_and_both_sides_count_it() -> None:
    a, b = _node("a", "b"), _node("b", "a")
    a.put("only-a", b"1", "text/plain", 0.0)
    b.put("only-b", b"2", "text/plain", 0.0)
    out = Output()
    a.anti_entropy.start(out)
    sender, receiver = a, b
    seen = []
    for _ in range(40):  # DigestSteps down the tree, LeafEntries, then SyncRecords twice
        if not out.messages:
            break
        _, data = out.messages[0]
        message = decode(data)
        seen.append(type(message))
        out = receiver.receive(data, 0.0)
        sender, receiver = receiver, sender
    assert DigestStep in seen and LeafEntries in seen and seen.count(SyncRecords) == 2
    assert a.view.get("only-b") is not None and b.view.get("only-a") is not None
    assert a.counters.anti_entropy_completed + b.counters.anti_entropy_completed == 2
    assert a.counters.anti_entropy_keys_sent + b.counters.anti_entropy_keys_sent == 2


def test_agreeing_digests_end_the_session_at_the_root() -> None:
    a, b = _node("a", "b"), _node("b", "a")
    out = Output()
    a.anti_entropy.start(out)
    reply = b.receive(out.messages[0][1], 0.0)
    assert not reply.messages and b.counters.anti_entropy_completed == 1


# --- resumable, bounded sessions between replicas with arbitrary differences ---------
SMALL = NodeConfig(sync_max_keys=3, sync_max_entries=6)
AE_KINDS = {"digest", "leaves", "sync"}


def _session(a: Node, b: Node, now: float) -> list[object]:
    """One anti-entropy session from a, delivered until quiet; the messages it took."""
    out = Output()
    a.anti_entropy.start(out)
    nodes = {"a": a, "b": b}
    queue = [(target, data) for target, data in out.messages]
    seen: list[object] = []
    while queue:
        assert len(seen) < 2_000, "a session ends"
        target, data = queue.pop(0)
        if message_kind(data) not in AE_KINDS:
            continue  # rumors are out of this test: anti-entropy alone must repair
        seen.append(decode(data))
        queue.extend(nodes[target].receive(data, now).messages)
    return seen


_edits = st.lists(
    st.tuples(
        st.integers(0, 60).map(lambda i: f"k{i}"),
        st.sampled_from(["a", "b", "both"]),
        st.booleans(),  # a delete (a tombstone) instead of a value
    ),
    max_size=60,
)


@settings(max_examples=40, deadline=None)
@given(_edits)
def test_replicas_with_arbitrary_differences_converge_in_one_bounded_session(
    edits: list[tuple[str, str, bool]],
) -> None:
    """Whatever the differences, one session repairs them all: a leaf phase cut by the
    bounds (3 records, 6 entries a step) resumes instead of waiting for another session."""
    a, b = _node("a", "b", config=SMALL), _node("b", "a", config=SMALL)
    for i, (key, side, delete) in enumerate(edits):
        now = 1.0 + i / 1000
        for node in (a, b) if side == "both" else (a if side == "a" else b,):
            node.put(key, f"{node.node_id}{i}".encode(), "text/plain", now)
            if delete:
                node.delete(key, now)
    seen = _session(a, b, 2.0)
    assert a.view.records() == b.view.records()
    for message in seen:
        if isinstance(message, SyncRecords):
            assert len(message.updates) <= 3 and len(message.want) <= 3
        if isinstance(message, LeafEntries):
            assert len(message.leaves) <= 3
    assert not _session(a, b, 3.0)[1:], "in sync: the next session is one message"


def test_a_cut_leaf_phase_resumes_within_the_session() -> None:
    a, b = _node("a", "b", config=SMALL), _node("b", "a", config=SMALL)
    for i in range(20):
        a.put(f"only-a/{i}", b"v", "text/plain", 0.0)
    seen = _session(a, b, 0.0)
    assert all(b.view.get(f"only-a/{i}") is not None for i in range(20))
    assert a.counters.anti_entropy_sessions == 1
    chunks = [m for m in seen if isinstance(m, LeafEntries)]
    assert len(chunks) >= 7 and chunks[0].more and not chunks[-1].more


def test_resumable_leaf_phases_are_kept_for_at_most_max_listings_peers() -> None:
    from rumordb.core.anti_entropy_sessions import MAX_LISTINGS

    peers = {f"p{i}": _node(f"p{i}", "me") for i in range(MAX_LISTINGS + 3)}
    lister = _node("me", *peers)
    lister.put("only-here", b"v", "text/plain", 0.0)
    listed_to = set()
    for _ in range(200):  # 2**12 leaves: the starter's third step lists the leaves
        out = Output()
        lister.anti_entropy.start(out)
        for _ in range(6):
            if not out.messages:  # a listing to the sampled peer is still moving
                break
            target, data = out.messages[0]
            if isinstance(decode(data), LeafEntries):
                listed_to.add(target)
                break
            out = (lister if target == "me" else peers[target]).receive(data, 0.0)
    assert listed_to == set(peers)
    assert lister.anti_entropy.resumable() == MAX_LISTINGS


def _deliver_until(a: Node, b: Node, stop: type, now: float, out: Output) -> object:
    """Deliver anti-entropy messages between a and b from ``out`` until one of type
    ``stop`` is about to be delivered; returns it (undelivered)."""
    nodes = {"a": a, "b": b}
    queue = [m for m in out.messages if message_kind(m[1]) in AE_KINDS]
    while queue:
        target, data = queue.pop(0)
        message = decode(data)
        if isinstance(message, stop):
            return target, data
        queue.extend(m for m in nodes[target].receive(data, now).messages if message_kind(m[1]) in AE_KINDS)  # fmt: skip
    raise AssertionError(f"no {stop.__name__} came")


def test_a_leaf_phase_under_way_is_not_restarted_by_new_sessions_until_it_stops_moving() -> None:
    """A new session (from either side) would replace the listing and begin the repair
    again from the first leaf: while the listing moves, none starts and none is answered."""
    a, b = _node("a", "b", config=SMALL), _node("b", "a", config=SMALL)
    for i in range(40):
        a.put(f"only-a/{i}", b"v", "text/plain", 0.0)
    out = Output()
    a.anti_entropy.start(out)  # 2**12 leaves: the leaves are listed by a (3 steps)
    _deliver_until(a, b, SyncRecords, 0.0, out)  # a listed its first chunk: it is moving
    assert a.anti_entropy.resumable() == 1
    started = a.counters.anti_entropy_sessions
    out = Output()
    a.anti_entropy.start(out)  # the next interval: the leaf phase with b is under way
    assert not out.messages and a.counters.anti_entropy_sessions == started
    b.anti_entropy.start(out)  # b answers a's long leaf phase: it starts none itself
    assert not [data for _, data in out.messages if isinstance(decode(data), DigestStep)]
    digest = b.folding.digest_for("a")
    assert digest is not None
    root = encode(anti_entropy.start("b", 99, digest))  # a root from b all the same
    assert not a.receive(root, 0.0).messages, "unanswered while the leaf phase moves"
    out = Output()
    a.anti_entropy.start(out)  # a whole interval without moving: no longer protected
    assert out.messages and a.counters.anti_entropy_sessions == started + 1


# --- steps handled in slices on ticks ------------------------------------------------------
SLICED = NodeConfig(anti_entropy_slice_items=32)


def _sliced_session(a: Node, b: Node, now: float) -> tuple[int, int]:
    """One session from a, each node working off its sliced steps on ticks; returns the
    steps answered in the receive call and those answered later, by a tick."""
    out = Output()
    a.anti_entropy.start(out)
    nodes = {"a": a, "b": b}
    queue = list(out.messages)
    at_once = on_ticks = 0
    for _ in range(2_000):
        if not queue:
            break
        target, data = queue.pop(0)
        if message_kind(data) not in AE_KINDS:
            continue
        node = nodes[target]
        replies = [m for m in node.receive(data, now).messages if message_kind(m[1]) in AE_KINDS]  # fmt: skip
        at_once += bool(replies)
        while node.anti_entropy.in_progress():
            assert node.next_deadline() <= now + 0.001, "a slice is due at once"
            now += 0.001
            ticked = [m for m in node.tick(now).messages if message_kind(m[1]) in AE_KINDS]
            on_ticks += bool(ticked)
            replies += ticked
        queue.extend(replies)
    assert not queue, "a session ends"
    return at_once, on_ticks


def test_a_wide_step_is_answered_in_slices_on_ticks_and_the_replicas_converge() -> None:
    a, b = _node("a", "b", config=SLICED), _node("b", "a", config=SLICED)
    for i in range(300):
        a.put(f"only-a/{i}", b"v", "text/plain", 1.0)
    b.put("only-b", b"v", "text/plain", 1.0)
    at_once, on_ticks = _sliced_session(a, b, 2.0)
    assert a.view.records() == b.view.records()
    assert on_ticks > 0, "the wide steps went on on ticks"
    assert at_once > 0, "a step of one slice (the root) is answered at once"
    assert a.anti_entropy.in_progress() == b.anti_entropy.in_progress() == 0


def _sent_on_ticks(node: Node, now: float) -> bytes:
    """The step ``node`` answers on its ticks (a step it holds in slices)."""
    for _ in range(1_000):
        out = node.tick(now)
        for _, data in out.messages:  # not the root of a session its timer started
            message = decode(data)
            if isinstance(message, DigestStep) and message.above > 0:
                return data
    raise AssertionError("no step answered on ticks")


def test_steps_in_slices_are_bounded_the_newest_dropped() -> None:
    from rumordb.core.anti_entropy_sessions import MAX_JOBS

    peers = [_node(f"p{i}", "me", config=SLICED) for i in range(MAX_JOBS + 3)]
    me = _node("me", *(p.node_id for p in peers), config=SLICED)
    for i in range(200):
        me.put(f"k{i}", b"v", "text/plain", 1.0)
    for peer in peers:  # each session's third step (256 children) is wide for me
        out = Output()
        peer.anti_entropy.start(out)
        children = me.receive(out.messages[0][1], 2.0).messages[0][1]  # 1 + 16: one slice
        assert not peer.receive(children, 2.0).messages, "16 children to hash: sliced"
        me.receive(_sent_on_ticks(peer, 2.0), 2.0)
    assert me.anti_entropy.in_progress() == MAX_JOBS


# A fold slice smaller than a step's records, as live runs (500 against 2 000).
FOLD_SMALLER = NodeConfig(sync_max_keys=20, sync_max_entries=400, digest_fold_batch=5)


def _folded(*nodes: Node) -> None:
    for node in nodes:
        while node.folding.pending():
            node.folding.fold_slice()


def test_a_leaf_phase_goes_on_after_records_that_outnumber_a_fold_slice() -> None:
    """Each step brings up to 20 records, more than one fold slice (5): the step folds
    them itself before it answers, so one session repairs everything (it used to end
    after the first chunk, the digest not being ready)."""
    a, b = _node("a", "b", config=FOLD_SMALLER), _node("b", "a", config=FOLD_SMALLER)
    for i in range(120):
        a.put(f"only-a/{i}", b"v", "text/plain", 0.0)
    for i in range(60):
        b.put(f"only-b/{i}", b"v", "text/plain", 0.0)
    _folded(a, b)
    seen = _session(a, b, 0.0)
    assert a.view.records() == b.view.records()
    assert a.counters.anti_entropy_sessions == 1 and b.counters.anti_entropy_sessions == 0
    assert sum(isinstance(m, LeafEntries) for m in seen) >= 6


def test_a_sliced_step_folds_the_records_it_brought_a_slice_at_a_time() -> None:
    config = NodeConfig(
        sync_max_keys=20, sync_max_entries=400, digest_fold_batch=5, anti_entropy_slice_items=8
    )
    a, b = _node("a", "b", config=config), _node("b", "a", config=config)
    for i in range(120):
        a.put(f"only-a/{i}", b"v", "text/plain", 0.0)
    _folded(a, b)
    _sliced_session(a, b, 1.0)
    assert a.view.records() == b.view.records()
    assert a.counters.anti_entropy_sessions == 1


def test_a_backlog_larger_than_one_step_still_ends_the_session_for_ticks_to_fold() -> None:
    a, b = _node("a", "b", config=FOLD_SMALLER), _node("b", "a", config=FOLD_SMALLER)
    a.put("only-a", b"v", "text/plain", 0.0)
    _folded(a)
    for i in range(40):  # a restart's worth: more than max_keys (20) plus a slice (5)
        b.put(f"b/{i}", b"v", "text/plain", 0.0)
    out = Output()
    a.anti_entropy.start(out)
    reply = b.receive(out.messages[0][1], 0.0)
    assert not reply.messages and b.folding.pending() == 40, "nothing folded by the step"


def test_one_long_repair_at_a_time_no_session_with_a_third_node_meanwhile() -> None:
    """A node listing or answering a leaf phase of several chunks starts no session and
    answers no new root from another peer while it moves: two peers repairing the same
    missing keys at once would send each record twice."""
    a, b, c = (_node(i, *(p for p in "abc" if p != i), config=SMALL) for i in "abc")
    for i in range(40):
        for node in (a, c):
            node.put(f"only-ac/{i}", b"v", "text/plain", 0.0)
    out = Output()
    a.anti_entropy.start(out)
    while not any(isinstance(decode(d), DigestStep) and t == "b" for t, d in out.messages):
        out = Output()
        a.anti_entropy.start(out)  # until a samples b
    _deliver_until(
        a, b, SyncRecords, 0.0, Output(messages=[m for m in out.messages if m[0] == "b"])
    )
    for node in (a, b):  # each in a long leaf phase with the other: no session with c
        out = Output()
        node.anti_entropy.start(out)
        assert not out.messages
        digest = c.folding.digest_for(node.node_id)
        assert digest is not None
        assert not node.receive(encode(anti_entropy.start("c", 7, digest)), 0.0).messages


@pytest.mark.parametrize("ends_every", [0, 7])
def test_a_peer_that_never_ends_its_leaf_phase_keeps_other_sessions_out_only_for_a_while(
    ends_every: int,
) -> None:
    """A long phase protects itself for MAX_REPAIR_INTERVALS of every twice that many
    intervals, however its peer paces it (a hostile or stuck peer cannot shut out the
    others), and ending a phase and starting another wins no fresh share."""
    from rumordb.core.anti_entropy_sessions import MAX_REPAIR_INTERVALS as CAP

    a = _node("a", "b", "c")
    digest = a.folding.digest_for("b")
    assert digest is not None
    started: list[bool] = []
    for interval in range(4 * CAP):
        more = not ends_every or interval % ends_every != ends_every - 1
        a.receive(encode(LeafEntries("b", 1, digest.leaf_bits, [], [], more=more)), 0.0)
        before = a.counters.anti_entropy_sessions
        a.anti_entropy.start(Output())
        started.append(a.counters.anti_entropy_sessions > before)
    assert all(started[CAP + 1 : 2 * CAP]), "the share is spent: the others get their turn"
    assert not any(started[2 * CAP + 1 : 3 * CAP - 1] if not ends_every else [])
    assert started.count(False) <= 2 * (CAP + 1), "out for at most half the intervals"
    if not ends_every:
        assert not any(started[: CAP - 1]), "a long phase under way keeps the others out"
