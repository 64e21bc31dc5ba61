"""Client commands on one node, and a two-node harness for replication details."""

import random
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumordb.core import (
    AskOwners,
    DecodeError,
    InvalidKey,
    ListPlan,
    Local,
    Node,
    NodeConfig,
    Order,
    Record,
    Skew,
    WriteCommand,
    WriteStatus,
    compare,
    decode_context,
    encode_context,
)
from rumordb.core.hlc import pack
from rumordb.core.membership import StaticMembership
from rumordb.core.messages import Heartbeat, Push, Update, decode, encode


def node(node_id: str = "n1", **config: object) -> Node:
    return Node(
        node_id, f"mem://{node_id}", rng=random.Random(1), now=100.0, config=NodeConfig(**config)
    )  # type: ignore[arg-type]


def test_put_then_get_round_trips_bytes_and_content_type() -> None:
    n = node()
    result = n.put("k", b'{"a": 1}', "application/json", 100.0)
    assert result.status is WriteStatus.CREATED
    assert result.output.writes == [("k", result.record)]
    got = n.view.get("k")
    assert got is not None and got.value == b'{"a": 1}' and got.content_type == "application/json"
    assert n.put("k", b"2", "text/plain", 100.1).status is WriteStatus.OK


def test_create_refuses_a_live_key_but_not_a_deleted_one() -> None:
    n = node()
    assert n.put("k", b"1", "text/plain", 100.0, create=True).status is WriteStatus.CREATED
    assert n.put("k", b"2", "text/plain", 100.0, create=True).status is WriteStatus.EXISTS
    n.delete("k", 100.1)
    assert n.put("k", b"3", "text/plain", 100.2, create=True).status is WriteStatus.CREATED


def test_delete_leaves_a_tombstone_and_404s_twice() -> None:
    n = node()
    assert n.delete("k", 100.0).status is WriteStatus.NOT_FOUND
    n.put("k", b"1", "text/plain", 100.0)
    deleted = n.delete("k", 100.1)
    assert deleted.status is WriteStatus.OK and deleted.record and deleted.record.tombstone
    assert n.view.get("k") is None and n.view.version("k") == deleted.record
    assert n.delete("k", 100.2).status is WriteStatus.NOT_FOUND
    assert n.view.key_count() == (0, 1)


def test_conditional_write_descends_from_what_the_client_read() -> None:
    n = node()
    first = n.put("k", b"1", "text/plain", 100.0).record
    assert first is not None
    seen = decode_context(encode_context(first.clock, first.hlc))
    n.put("k", b"2", "text/plain", 100.1)  # someone else wrote meanwhile
    refused = n.put("k", b"3", "text/plain", 100.2, context=seen)
    assert refused.status is WriteStatus.PRECONDITION_FAILED
    current = n.view.version("k")
    assert current is not None
    fresh = decode_context(encode_context(current.clock, current.hlc))
    ok = n.put("k", b"3", "text/plain", 100.3, context=fresh)
    assert ok.status is WriteStatus.OK and ok.record is not None
    assert compare(ok.record.clock, current.clock) is Order.AFTER


def test_context_from_another_node_lifts_the_clock_and_hlc() -> None:
    n = node()
    first = n.put("k", b"1", "text/plain", 100.0).record
    assert first is not None
    ahead = pack(101_000)  # a node one second ahead wrote since: within the skew bound
    context = decode_context(encode_context({**first.clock, "n9": 4}, ahead))
    result = n.put("k", b"v", "text/plain", 100.0, context=context)
    assert result.record is not None
    assert result.record.clock["n9"] == 4 and result.record.hlc > ahead
    assert result.record.clock["n1"] == result.record.hlc, "a writer's entry is its HLC"


def test_listing_is_ordered_paginated_and_skips_tombstones() -> None:
    n = node()
    for key in ["b/2", "a/1", "b/1", "b/3", "c"]:
        n.put(key, b"v", "text/plain", 100.0)
    n.delete("b/2", 100.1)
    assert n.view.list_keys(prefix="b/") == ["b/1", "b/3"]
    assert n.view.list_keys(limit=2) == ["a/1", "b/1"]
    assert n.view.list_keys(after="b/1", limit=10) == ["b/3", "c"]
    assert n.view.list_keys(prefix="zz") == []


@pytest.mark.parametrize("key", ["", "x" * 1025, "bad\x00key", "tab\tkey"])
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidKey):
        node().put(key, b"v", "text/plain", 100.0)


def test_client_writes_are_pushed_at_once_in_one_batch_per_peer() -> None:
    n = node(fanout=3)
    for peer in ("n2", "n3"):
        n.join(peer, f"mem://{peer}", 0, 100.0)
    for i in range(5):
        n.put(f"k{i}", b"v", "text/plain", 100.0)
    out = n.flush(100.0)
    assert sorted(target for target, _ in out.messages) == ["n2", "n3"]
    message = decode(out.messages[0][1])
    assert isinstance(message, Push) and len(message.updates) == 5
    assert not n.flush(100.0), "nothing left to push"


@pytest.mark.parametrize(("direct_mail_max", "mailed", "relay"), [(8, 6, False), (0, 3, True)])
def test_a_client_write_in_a_seven_node_cluster_is_direct_mail_unless_turned_off(
    direct_mail_max: int, mailed: int, relay: bool
) -> None:
    n = node(fanout=3, direct_mail_max=direct_mail_max)
    for i in range(2, 8):
        n.join(f"n{i}", f"mem://n{i}", 0, 100.0)
    n.put("k", b"v", "text/plain", 100.0)
    out = n.flush(100.0)
    assert len({target for target, _ in out.messages}) == mailed
    message = decode(out.messages[0][1])
    assert isinstance(message, Push) and message.relay is relay
    assert bool(len(n.queue)) is relay, "only a rumor is queued for relaying"


def test_lww_records_what_the_conflict_discarded() -> None:
    a, b = node("a"), node("b")
    a.put("k", b"from-a", "text/plain", 100.0)
    b.put("k", b"from-b", "text/plain", 101.0)  # concurrent, later HLC
    a.join("b", "mem://b", 0, 100.0)
    b.join("a", "mem://a", 0, 100.0)
    out = b.flush(101.0)
    for _, data in out.messages:
        a.receive(data, 101.0)
    assert a.view.get("k") is not None and a.view.get("k").value == b"from-b"  # type: ignore[union-attr]
    lost = a.view.discarded("k")
    assert lost is not None
    assert lost.origin == "a" and list(lost.clock) == ["a"]
    assert a.view.counters().lww_overwrites == 1


def test_sharded_node_sends_non_owned_keys_to_their_owners() -> None:
    n = node("n1", sharding=True, replicas=1)
    for peer in ("n2", "n3", "n4"):
        n.join(peer, f"mem://{peer}", 0, 100.0)
    foreign = next(f"k{i}" for i in range(100) if n.owners(f"k{i}") != ["n1"])
    result = n.put(foreign, b"v", "text/plain", 100.0)
    assert result.status is WriteStatus.NOT_OWNER and list(result.owners) == n.owners(foreign)
    assert n.route(foreign) == n.owners(foreign)


def test_a_key_recreated_after_its_tombstone_was_purged_wins_over_the_tombstone() -> None:
    """A re-created key must not reuse a clock entry the purged tombstone carried."""
    n = node("n6")
    n.put("k", b"old", "text/plain", 100.0)
    tombstone = n.delete("k", 100.1).record
    assert tombstone is not None
    n.replica.drop(n.flush(100.1), "k")  # purged here; another replica still holds the tombstone
    fresh = n.put("k", b"new", "text/plain", 100.2).record
    assert fresh is not None
    other = node("n7")
    other.put("k", b"x", "text/plain", 99.0)
    for record in (tombstone, fresh):
        from rumordb.core.messages import Update, encode

        other.receive(encode(Push("n6", [], [Update("k", record)])), 100.3)
    assert other.view.get("k") is not None and other.view.get("k").value == b"new"  # type: ignore[union-attr]


def test_vclock_advance_never_reuses_an_entry() -> None:
    from rumordb.core.vclock import advance

    assert advance({"a": 5}, "a", 100) == {"a": 100}
    assert advance({"a": 500}, "a", 100) == {"a": 501}


def test_a_forwarded_write_is_coordinated_even_by_a_non_owner() -> None:
    n = node("n1", sharding=True, replicas=1)
    for peer in ("n2", "n3", "n4"):
        n.join(peer, f"mem://{peer}", 0, 100.0)
    foreign = next(f"k{i}" for i in range(100) if n.owners(f"k{i}") != ["n1"])
    result = n.put(foreign, b"v", "text/plain", 100.0, coordinate=True)
    assert result.status is WriteStatus.CREATED and n.view.get(foreign) is not None
    out = n.tick(101.5)  # maintenance hands the hint to its (alive) owner
    owner = n.owners(foreign)[0]
    assert any(target == owner for target, _ in out.messages)


def _levels(digest: object) -> list[dict[int, int]]:
    from rumordb.core.digest import widths

    levels = []
    for width in widths(digest.leaf_bits):  # type: ignore[attr-defined]
        levels.append(digest.hashes(width, range(1 << width)))  # type: ignore[attr-defined]
    return levels


def _rebuilt(records: Mapping[str, object], keep: object = None) -> object:
    from rumordb.core.digest import Digest, fingerprint

    return Digest.of(
        (key, fingerprint(r.hlc, r.origin, r.tombstone))  # type: ignore[attr-defined]
        for key, r in records.items()
        if keep is None or keep(key)  # type: ignore[operator]
    )


_ops = st.lists(
    st.tuples(st.sampled_from(["put", "delete", "remote", "read"]), st.integers(0, 30)),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(_ops)
def test_the_lazy_digest_always_reads_as_a_fresh_build(ops: list[tuple[str, int]]) -> None:
    """Writes only mark keys stale; whoever reads the digest sees every write folded in."""
    n, other = node("n1"), node("n2")
    now = 100.0
    for op, i in ops:
        now += 0.001
        key = f"k{i}"
        if op == "put":
            n.put(key, b"v%d" % i, "text/plain", now)
        elif op == "delete":
            n.delete(key, now)
        elif op == "remote":  # a version arriving from a peer
            other.put(key, b"r%d" % i, "text/plain", now)
            for _, data in other.flush(now).messages:
                n.receive(data, now)
        else:
            assert _levels(n.store.digest(n.owners, n.node_id)) == _levels(
                _rebuilt(n.view.records())
            )
    assert _levels(n.store.digest(n.owners, n.node_id)) == _levels(_rebuilt(n.view.records()))


def test_scoped_digests_follow_writes_and_drops_after_they_are_built() -> None:
    """Sharded: the per-peer digest over shared keys, cached, stays equal to a fresh one."""
    n = node("n1", sharding=True, replicas=2)
    for peer in ("n2", "n3", "n4"):
        n.join(peer, f"mem://{peer}", 1, 100.0)
    for i in range(200):
        n.put(f"k{i}", b"1", "text/plain", 100.0, coordinate=True)
    for peer in ("n2", "n3", "n4"):
        n.folding.digest_for(peer)  # build and cache the scoped digests
    for i in range(0, 200, 3):
        n.put(f"k{i}", b"2", "text/plain", 100.1, coordinate=True)
    for i in range(1, 200, 7):
        n.delete(f"k{i}", 100.2)
    ring = n.ring()
    for peer in ("n2", "n3", "n4"):

        def shared(key: str, peer: str = peer) -> bool:
            owners = ring.owners(key, 2)
            return "n1" in owners and peer in owners

        expected = _rebuilt(n.view.records(), shared)
        assert _levels(n.folding.digest_for(peer)) == _levels(expected), peer
    assert _levels(n.store.digest(n.owners, n.node_id)) == _levels(_rebuilt(n.view.records()))


def test_write_command_puts_creates_and_deletes_with_one_entry_point() -> None:
    n = node()
    created = n.write(WriteCommand("k", b"1", "text/plain"), 100.0)
    assert created.status is WriteStatus.CREATED and created.output.writes
    assert n.write(WriteCommand("k", b"2", create=True), 100.1).status is WriteStatus.EXISTS
    deleted = n.write(WriteCommand("k", delete=True), 100.2)
    assert deleted.status is WriteStatus.OK and deleted.record and deleted.record.tombstone
    assert n.write(WriteCommand("k", delete=True), 100.3).status is WriteStatus.NOT_FOUND


def test_write_refuses_a_stale_context_for_puts_and_deletes() -> None:
    n = node()
    first = n.write(WriteCommand("k", b"1"), 100.0).record
    assert first is not None
    n.write(WriteCommand("k", b"2"), 100.1)
    stale = decode_context(encode_context(first.clock, first.hlc))
    for command in (
        WriteCommand("k", b"3", context=stale),
        WriteCommand("k", context=stale, delete=True),
    ):
        assert n.write(command, 100.2).status is WriteStatus.PRECONDITION_FAILED


def test_read_answers_locally_and_maps_tombstones_to_not_found() -> None:
    n = node()
    assert n.read("k") == Local(None)
    record = n.write(WriteCommand("k", b"1"), 100.0).record
    assert n.read("k").record == record  # type: ignore[union-attr]  # (and a token: below)
    tombstone = n.write(WriteCommand("k", delete=True), 100.1).record
    assert n.read("k") == Local(None)
    assert n.read("k", meta=True) == Local(tombstone)


def test_a_plain_read_names_its_version_until_a_write_replaces_it() -> None:
    n = node()
    n.write(WriteCommand("k", b"1"), 100.0)
    first, again = n.read("k"), n.read("k")
    assert isinstance(first, Local) and isinstance(again, Local)
    assert first.token is not None and first.token is again.token
    assert first.token is n.view.version_token("k"), "valid while the node stores it"
    n.write(WriteCommand("k", b"1"), 100.1)  # the same bytes again: another version
    assert n.view.version_token("k") is not first.token
    n.write(WriteCommand("k", delete=True), 100.2)
    assert n.view.version_token("k") is not first.token and n.read("k") == Local(None)


def test_reads_that_depend_on_more_than_the_stored_version_carry_no_token() -> None:
    n = node()
    n.write(WriteCommand("ttl", b"1", ttl_ms=5_000), 100.0)
    plan = n.read("ttl", now=100.0)
    assert isinstance(plan, Local) and plan.record is not None, "live until it expires"
    assert plan.token is None, "the clock decides when it goes: no answer to keep"
    assert n.read("ttl", now=106.0) == Local(None)
    n.write(WriteCommand("k", b"1"), 100.0)
    meta = n.read("k", meta=True)
    assert isinstance(meta, Local) and meta.token is None
    sharded = _sharded()
    mine = next(f"k{i}" for i in range(100) if "n1" in sharded.owners(f"k{i}"))
    sharded.write(WriteCommand(mine, b"v"), 100.0)
    plan = sharded.read(mine)
    assert isinstance(plan, Local) and plan.record is not None
    assert plan.token is None, "the ring may move the key away without a write"


def test_meta_read_and_the_output_carry_the_version_lww_discarded() -> None:
    a, b = node("a"), node("b")
    a.put("k", b"from-a", "text/plain", 100.0)
    b.put("k", b"from-b", "text/plain", 101.0)  # concurrent, later HLC
    b.join("a", "mem://a", 0, 100.0)
    discards = []
    for _, data in b.flush(101.0).messages:
        discards.extend(a.receive(data, 101.0).discards)
    assert [key for key, _ in discards] == ["k"], "the discard is an output event"
    plan = a.read("k", meta=True)
    assert isinstance(plan, Local) and plan.discarded == a.view.discarded("k") == discards[0][1]
    assert plan.discarded is not None and plan.discarded.origin == "a"


def _sharded(node_id: str = "n1") -> Node:
    n = node(node_id, sharding=True, replicas=2)
    for peer in ("n2", "n3", "n4"):
        n.join(peer, f"mem://{peer}", 0, 100.0)
    return n


def test_sharded_read_of_a_foreign_key_asks_its_owners() -> None:
    n = _sharded()
    foreign = next(f"k{i}" for i in range(100) if "n1" not in n.owners(f"k{i}"))
    plan = n.read(foreign)
    assert plan == AskOwners(tuple(n.route(foreign) or ()))
    assert not plan.fallback


def test_sharded_owner_that_never_saw_a_key_asks_the_co_owners_as_a_fallback() -> None:
    n = _sharded()
    mine = next(f"k{i}" for i in range(100) if "n1" in n.owners(f"k{i}"))
    others = tuple(m for m in n.owners(mine) if m != "n1")
    assert n.read(mine) == AskOwners(others, fallback=True)
    assert n.read(mine, forwarded=True) == Local(None), "a forwarded read never fans out"
    n.write(WriteCommand(mine, delete=False, value=b"v"), 100.0)
    n.write(WriteCommand(mine, delete=True), 100.1)
    assert n.read(mine) == Local(None), "a tombstone here is an answer: deleted"


def test_sharded_listing_gathers_every_live_peer_unless_forwarded() -> None:
    n = _sharded()
    mine = [f"k{i}" for i in range(30) if "n1" in n.owners(f"k{i}")]
    for key in mine:
        n.write(WriteCommand(key, b"v"), 100.0)
    plan = n.plan_list("k", 100)
    assert plan == ListPlan(sorted(mine), ("n2", "n3", "n4"))
    assert n.plan_list("k", 100, forwarded=True).gather == ()
    assert node().plan_list().gather == (), "unsharded: every node holds every key"


def test_member_state_changes_come_out_in_the_output_and_only_once() -> None:
    n = node(probe_interval_ms=100, suspicion_mult=1, jitter_timers=False)
    n.join("n2", "mem://n2", 0, 100.0)
    # Probed on time (a late probe would credit n2 the gap: see the local-health tests).
    ticks = [n.tick(100.0 + i / 10) for i in range(1, 11)]
    seen = [(t.member, t.old.value, t.new.value) for out in ticks for t in out.transitions]
    assert seen == [("n2", "alive", "suspect"), ("n2", "suspect", "dead")]
    assert n.tick(101.1).transitions == []


def test_a_restored_version_keeps_its_hlc_and_origin_and_is_pushed_once() -> None:
    n = node(fanout=3)
    n.join("n2", "mem://n2", 0, 100.0)
    version = Record(b"old", "text/plain", {"far": 7}, 12_345, "far")
    result = n.write(WriteCommand("k", version=version), 100.0)
    assert result.status is WriteStatus.CREATED and result.record is version
    assert result.output.writes == [("k", version)]
    ((target, data),) = n.flush(100.0).messages
    message = decode(data)
    assert target == "n2" and isinstance(message, Push) and message.updates[0].record == version
    again = n.write(WriteCommand("k", version=version), 100.0)
    assert again.status is WriteStatus.UNCHANGED and not again.output.writes
    assert not n.flush(100.0), "an unchanged restore is not pushed"


def test_a_restarted_node_serves_reads_at_once_and_defers_anti_entropy_until_folded() -> None:
    from rumordb.core import anti_entropy
    from rumordb.core.messages import DigestStep, encode
    from rumordb.core.record import Record

    config = NodeConfig(digest_fold_batch=500, jitter_timers=False)
    records = [(f"k{i}", Record(b"v", "text/plain", {"old": 1}, i + 1, "old")) for i in range(5_000)]  # fmt: skip
    n = Node("n1", "mem://n1", rng=random.Random(1), now=100.0, config=config, records=records)
    peer = Node("n2", "mem://n2", rng=random.Random(2), now=100.0, config=config)
    n.join("n2", "mem://n2", 0, 100.0)
    assert n.view.get("k42") is not None, "reads answer before any digest work"
    step = encode(anti_entropy.start("n2", 1, peer.store.digest(peer.owners, "n2")))
    assert n.receive(step, 100.0).messages == [], "a half-built digest does not answer"
    now, sessions = 100.0, 0
    while n.store.pending_folds():
        assert n.next_deadline() <= now + 0.001, "the next slice is due at once"
        now += 0.001
        out = n.tick(now)
        sessions += sum(isinstance(decode(m), DigestStep) for _, m in out.messages)
        assert now < 101.0, "5 000 keys in slices of 500 take a few ticks"
    assert sessions == 0, "no anti-entropy from a half-built digest"
    assert n.receive(step, now).messages, "folded: the session goes on"
    assert n.store.digest(n.owners, "n1").root == _rebuilt(n.view.records()).root  # type: ignore[attr-defined]


# --- bounded input (core.bounds) and this node's own clock (core.clock_watch) ---------
def test_a_context_from_the_far_future_or_naming_hundreds_of_nodes_is_refused() -> None:
    n = node()
    first = n.put("k", b"1", "text/plain", 100.0).record
    assert first is not None
    hlc_before = n.replica.hlc
    forged = decode_context(encode_context(first.clock, 2**64 - 1))
    assert n.put("k", b"2", "text/plain", 100.1, context=forged).status is WriteStatus.CONTEXT_AHEAD
    counter = decode_context(encode_context({**first.clock, "n1": 2**64 - 1}, first.hlc))
    assert (
        n.put("k", b"2", "text/plain", 100.1, context=counter).status is WriteStatus.CONTEXT_AHEAD
    )
    wide = {**first.clock, **{f"ghost-{i}": 1 for i in range(300)}}
    too_wide = decode_context(encode_context(wide, first.hlc))
    result = n.put("k", b"2", "text/plain", 100.1, context=too_wide)
    assert result.status is WriteStatus.CONTEXT_TOO_WIDE and not result.output
    assert n.view.get("k") == first and n.replica.hlc == hlc_before, "nothing absorbed"


def test_if_match_on_an_absent_key_is_a_failed_precondition() -> None:
    n = node()
    context = decode_context(encode_context({"n1": pack(100_000)}, pack(100_000)))
    assert n.put("k", b"v", "text/plain", 100.0, context=context).status is (
        WriteStatus.PRECONDITION_FAILED
    )
    assert n.delete("k", 100.0, context=context).status is WriteStatus.PRECONDITION_FAILED
    assert n.view.version("k") is None


def test_a_peer_message_with_one_bad_update_is_refused_whole_and_counted() -> None:
    n = node()
    hlc_before = n.replica.hlc
    good = Record(b"g", "text/plain", {"n2": pack(100_000)}, pack(100_000), "n2")
    future = Record(b"f", "text/plain", {"n2": 2**64 - 1}, 2**64 - 1, "n2")
    with pytest.raises(DecodeError):
        n.receive(encode(Push("n2", [], [Update("a", good), Update("b", future)])), 100.0)
    long_type = Record(b"x", "t" * 300, {"n2": pack(100_000)}, pack(100_000), "n2")
    with pytest.raises(DecodeError):
        n.receive(encode(Push("n2", [], [Update("a", good), Update("c", long_type)])), 100.0)
    assert n.view.version("a") is None, "nothing of a refused message is applied"
    assert n.replica.hlc == hlc_before, "the HLC never jumps on refused input"
    counters = n.view.counters()
    assert (counters.messages_refused, counters.messages_clock_ahead) == (2, 1)
    n.receive(encode(Push("n2", [], [Update("a", good)])), 100.0)
    assert n.view.get("a") == good


def test_a_node_ahead_of_most_peers_refuses_client_writes() -> None:
    n = node()
    for peer in ("n2", "n3"):
        n.receive(encode(Heartbeat(peer, [], clock_ms=100_000 - 60_000)), 100.0)
    verdict = n.view.clock()
    assert verdict.skew is Skew.AHEAD and verdict.ahead_ms == 60_000 and verdict.peers == 2
    assert n.put("k", b"v", "text/plain", 100.0).status is WriteStatus.CLOCK_AHEAD
    assert n.view.version("k") is None
    for peer in ("n2", "n3"):  # their clocks (or ours) were fixed
        n.receive(encode(Heartbeat(peer, [], clock_ms=101_000)), 101.0)
    assert n.view.clock().skew is Skew.OK
    assert n.put("k", b"v", "text/plain", 101.0).status is WriteStatus.CREATED


def test_abort_undoes_the_writes_since_the_last_flush() -> None:
    n = node()
    n.join("n2", "mem://n2", 0, 100.0)
    kept = n.put("kept", b"1", "text/plain", 100.0).record
    n.flush(100.0)
    n.put("kept", b"2", "text/plain", 100.1)
    n.put("new", b"1", "text/plain", 100.1)
    n.delete("kept", 100.1)
    n.abort()
    assert n.view.version("kept") == kept and n.view.version("new") is None
    assert not n.flush(100.2).messages, "nothing aborted is pushed"
    assert n.view.queue_length() == 0
    assert n.put("new", b"again", "text/plain", 100.3).status is WriteStatus.CREATED


class _CountingRandom(random.Random):
    """A seeded source that counts its draws (every method draws through ``random``)."""

    def __init__(self, seed: int) -> None:
        self.draws = 0
        super().__init__(seed)

    def random(self) -> float:
        self.draws += 1
        return super().random()

    def getrandbits(self, k: int) -> int:
        self.draws += 1
        return super().getrandbits(k)


def _twin(static: bool) -> tuple[Node, _CountingRandom]:
    ids = ("n1", "n2", "n3", "n4", "n5", "n6", "n7")
    rng = _CountingRandom(7)
    membership = StaticMembership("n1", ids, {m: i for i, m in enumerate(ids)}) if static else None
    n = Node(
        "n1", "mem://n1", rng=rng, now=100.0, membership=membership,
        config=NodeConfig(direct_mail_max=0, probe_interval_ms=700),
    )  # fmt: skip
    if not static:
        for peer in ids[1:]:
            n.join(peer, f"mem://{peer}", 0, 100.0)
    return n, rng


@settings(max_examples=40, deadline=None)
@given(
    static=st.booleans(),
    steps=st.lists(
        st.tuples(st.floats(0.001, 0.4), st.sampled_from(["tick", "put", "ttl", "none"])),
        min_size=1,
        max_size=40,
    ),
)
def test_a_node_that_passes_its_idle_ticks_is_the_node_that_ticks(
    static: bool, steps: list[tuple[float, str]]
) -> None:
    """Ticks before ``idle_until()`` send, store and draw nothing, and ``pass_idle`` leaves
    the node as such a tick does (timers, counts): a driver may sleep until then."""
    ticking, ticking_rng = _twin(static)
    passing, passing_rng = _twin(static)
    now, written = 100.0, 0
    for gap, step in steps:
        now += gap
        if step in ("put", "ttl"):  # a rumor to relay (direct mail is off), or an expiry
            written += 1
            for n in (ticking, passing):
                n.write(WriteCommand(f"k{written}", b"v", ttl_ms=300 if step == "ttl" else 0), now)
                pushed = n.flush(now).messages
                # Dynamic peers that never beat back are dead a few seconds in: no target.
                assert pushed or not n.membership.peers()
        idle = now < passing.idle_until()
        draws = ticking_rng.draws
        out = ticking.tick(now)
        if idle:
            assert not (out.messages or out.writes or out.purges or out.transitions)
            assert ticking_rng.draws == draws, "an idle tick draws nothing"
            assert passing.pass_idle(now) == out.counter_deltas
        else:
            assert passing.tick(now) == out
        assert passing.timers == ticking.timers and passing_rng.draws == ticking_rng.draws
        assert passing.view.counters() == ticking.view.counters()
