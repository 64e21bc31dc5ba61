"""Leave, forget, reap, take-over of an id, purge resuming, and local health (Lifeguard)."""

from __future__ import annotations

import random

import pytest

from rumordb.core import NodeConfig, State
from rumordb.core.membership import ForgetRefused, MemberEntry, Membership
from rumordb.core.node import Node
from tests.core.harness import Cluster


def _dead_b() -> Membership:
    m = Membership("a", "addr-a", 0.0, suspicion_mult=3, probe_interval_ms=1000)
    m.join("b", "addr-b", 4, 0.0)
    m.expire(3.0)
    m.expire(6.0)
    assert m.get("b").state is State.DEAD  # type: ignore[union-attr]
    return m


def test_forget_removes_a_dead_member_and_its_old_life_stays_forgotten() -> None:
    m = _dead_b()
    assert m.forget("b", 7.0) is True
    assert m.get("b") is None and "b" not in m.ring_members()
    m.observe(MemberEntry("b", "addr-b", 4, 99), 8.0)  # gossiped by a node that did not forget
    m.join("b", "addr-b", 4, 8.0)
    assert m.get("b") is None, "an entry from the forgotten life must not revive it"
    assert m.forget("nobody", 8.0) is False


def test_a_forgotten_id_with_a_higher_incarnation_is_a_new_member() -> None:
    m = _dead_b()
    m.forget("b", 7.0)
    m.join("b", "addr-new", 5, 9.0)  # a new node takes over the id
    b = m.get("b")
    assert b is not None and b.state is State.ALIVE and b.address == "addr-new"


def test_forget_refuses_alive_suspect_and_self() -> None:
    m = Membership("a", "addr-a", 0.0, suspicion_mult=3, probe_interval_ms=1000)
    m.join("b", "addr-b", 0, 0.0)
    with pytest.raises(ForgetRefused, match="alive"):
        m.forget("b", 1.0)
    m.expire(3.0)
    with pytest.raises(ForgetRefused, match="suspect"):
        m.forget("b", 3.0)
    with pytest.raises(ForgetRefused):
        m.forget("a", 3.0)


def test_reap_forgets_only_members_dead_long_enough() -> None:
    m = _dead_b()  # dead since t=6
    m.join("c", "addr-c", 0, 5.0)
    assert m.reap(10.0, dead_after_s=5.0) == []
    assert m.reap(11.0, dead_after_s=5.0) == ["b"]
    assert m.get("b") is None and m.get("c") is not None


def test_node_reaps_dead_members_after_reap_dead_after_ms() -> None:
    config = NodeConfig(probe_interval_ms=100, suspicion_mult=1, reap_dead_after_ms=1000)
    n = Node("n1", "mem://n1", rng=random.Random(1), now=0.0, config=config)
    n.join("n2", "mem://n2", 0, 0.0)
    for i in range(1, 30):
        n.tick(i / 10)
    assert n.membership.member_info("n2") is None
    never = Node("n1", "mem://n1", rng=random.Random(1), now=0.0, config=NodeConfig(probe_interval_ms=100, suspicion_mult=1))  # fmt: skip
    never.join("n2", "mem://n2", 0, 0.0)
    for i in range(1, 30):
        never.tick(i / 10)
    info = never.membership.member_info("n2")
    assert info is not None and info.state is State.DEAD, "0 disables reaping"


def test_a_leaving_node_is_marked_left_by_everyone_and_rejoins_with_a_new_incarnation() -> None:
    c = Cluster(3, seed=1, config=NodeConfig(jitter_timers=False))
    c.run(1.0)
    c.send("n3", c.nodes["n3"].leave(c.now))
    c.run(0.2)
    for nid in ("n1", "n2"):
        info = c.nodes[nid].membership.member_info("n3")
        assert info is not None and info.state is State.LEFT
        assert "n3" not in c.nodes[nid].membership.ring_members()
    c.run(10.0)
    info = c.nodes["n1"].membership.member_info("n3")
    assert info is not None and info.state is State.LEFT, "left, never dead"
    # A restart on the same data: a higher incarnation is a rejoin.
    inc = c.nodes["n3"].view.incarnation + 1
    c.nodes["n3"] = Node("n3", "mem://n3", rng=random.Random(3), now=c.now, incarnation=inc)
    for peer in ("n1", "n2"):
        c.nodes["n3"].join(peer, f"mem://{peer}", 0, c.now)
    c.run(1.0)
    info = c.nodes["n1"].membership.member_info("n3")
    assert info is not None and info.state is State.ALIVE


def test_sharded_leave_hands_every_key_to_its_new_owners_before_dropping_it() -> None:
    config = NodeConfig(sharding=True, replicas=2, jitter_timers=False)
    c = Cluster(4, seed=2, config=config)
    c.run(1.0)
    for i in range(60):
        c.put(c.nodes["n1"].owners(f"k{i}")[0], f"k{i}", b"v%d" % i)  # as forwarded
    c.run(3.0)
    leaver = c.nodes["n4"]
    assert leaver.view.handoff_remaining() == 0 and len(leaver.view.records()) > 0
    c.send("n4", leaver.leave(c.now))
    assert leaver.view.leaving and leaver.view.handoff_remaining() == len(leaver.view.records())
    c.run(5.0)
    assert leaver.view.handoff_remaining() == 0 and len(leaver.view.records()) == 0
    held = {k for nid in ("n1", "n2", "n3") for k in c.nodes[nid].view.records()}
    assert held == {f"k{i}" for i in range(60)}
    for i in range(60):
        owners = c.nodes["n1"].owners(f"k{i}")
        assert "n4" not in owners
        assert all(f"k{i}" in c.nodes[o].view.records() for o in owners)


def test_tombstone_purge_waits_for_a_dead_member_and_resumes_after_forget() -> None:
    c = Cluster(3, seed=3, config=NodeConfig(jitter_timers=False))
    c.run(1.0)
    c.put("n1", "k", b"v")
    c.run(1.0)
    c.down.add("n3")
    c.run(10.0)  # n3 is dead on the others now
    assert c.nodes["n1"].membership.member_info("n3").state is State.DEAD  # type: ignore[union-attr]
    c.delete("n1", "k")
    c.run(5.0)
    assert "k" in c.nodes["n1"].view.records(), "n3 may still hold the live value"
    for nid in ("n1", "n2"):
        assert c.nodes[nid].forget("n3", c.now)
    c.run(5.0)
    for nid in ("n1", "n2"):
        assert "k" not in c.nodes[nid].view.records()
        assert c.nodes[nid].view.counters().tombstones_purged == 1


def test_the_purged_version_memory_is_handed_out_once_and_restored() -> None:
    c = Cluster(2, seed=4, config=NodeConfig(jitter_timers=False))
    c.run(1.0)
    c.put("n1", "k", b"v")
    c.delete("n1", "k")
    c.run(5.0)
    saved = c.nodes["n1"].take_purged_versions()
    assert [key for key, _ in saved] == ["k"]
    assert c.nodes["n1"].take_purged_versions() == []
    restarted = Node("n1", "mem://n1", rng=random.Random(1), now=c.now, purged=saved)
    assert restarted.replica.tombstones.purged == dict(saved)
    assert restarted.take_purged_versions() == [], "restored versions are already stored"


def _pause(c: Cluster, nid: str, seconds: float) -> list[bytes]:
    """Run the others for ``seconds`` while ``nid`` neither ticks nor reads; its mail waits."""
    waiting: list[bytes] = []
    for _ in range(round(seconds / c.step_s)):
        c.now = round(c.now + c.step_s, 6)
        for _ in range(len(c.queue)):
            _source, target, data = c.queue.popleft()
            if target == nid:
                waiting.append(data)
            else:
                c.send(target, c.nodes[target].receive(data, c.now))
        for other in c.ids:
            if other != nid:
                c.send(other, c.nodes[other].tick(c.now))
    return waiting


def test_a_node_whose_tick_comes_after_a_long_pause_marks_no_one_dead() -> None:
    """Lifeguard: the silence was ours; what waited for us is read before anyone is judged."""
    config = NodeConfig(probe_interval_ms=100, suspicion_mult=2, jitter_timers=False)
    c = Cluster(3, seed=5, config=config)
    c.run(1.0)
    paused = c.nodes["n1"]
    suspicion_s = paused.membership.suspect_timeout_s()  # type: ignore[attr-defined]
    waiting = _pause(c, "n1", 2 * suspicion_s + 0.5)
    assert waiting, "fresh heartbeats wait for the paused node"
    out = paused.tick(c.now)  # the late tick first: the harshest order for the node
    for data in waiting:
        out.extend(paused.receive(data, c.now))
    for _ in range(20):
        c.step()
        out.extend(paused.tick(c.now))
    states = {t.new for t in out.transitions}
    assert State.DEAD not in states and State.SUSPECT not in states
    assert all(paused.membership.is_alive(p) for p in ("n2", "n3"))


def test_a_node_probed_on_time_still_detects_a_dead_peer() -> None:
    config = NodeConfig(probe_interval_ms=100, suspicion_mult=2, jitter_timers=False)
    c = Cluster(3, seed=6, config=config)
    c.run(1.0)
    c.down.add("n3")
    c.run(3.0)
    info = c.nodes["n1"].membership.member_info("n3")
    assert info is not None and info.state is State.DEAD


def test_membership_runs_on_mono_time_when_the_wall_clock_steps_back() -> None:
    config = NodeConfig(probe_interval_ms=100, suspicion_mult=1, jitter_timers=False)
    n = Node("n1", "mem://n1", rng=random.Random(1), now=1000.0, config=config, mono=5.0)
    n.join("n2", "mem://n2", 0, 1000.0, mono=5.0)
    made = []
    for i in range(1, 11):  # the wall clock stepped an hour back; n2 stays silent
        made.extend(n.tick(1000.0 - 3600 + i / 10, mono=5.0 + i / 10).transitions)
    assert [t.new for t in made] == [State.SUSPECT, State.DEAD]
    assert n.next_deadline() < 7.0, "timers run on mono time too"


def test_a_member_back_after_a_purge_drops_its_stale_copy_of_the_deleted_key() -> None:
    """n3 left; k was deleted and purged without it; back with the old value, it learns."""
    c = Cluster(3, seed=7, config=NodeConfig(jitter_timers=False))
    c.run(1.0)
    c.put("n1", "k", b"old")
    c.run(1.0)
    away = c.nodes["n3"]
    c.send("n3", away.leave(c.now))
    c.run(0.5)
    c.down.add("n3")
    c.delete("n1", "k")
    c.run(5.0)
    assert all("k" not in c.nodes[n].view.records() for n in ("n1", "n2")), "purged"
    assert away.view.get("k") is not None
    inc = away.view.incarnation + 1
    records = list(away.view.items())
    c.nodes["n3"] = back = Node("n3", "mem://n3", rng=random.Random(3), now=c.now, incarnation=inc, records=records)  # fmt: skip
    for peer in ("n1", "n2"):
        back.join(peer, f"mem://{peer}", 0, c.now)
    c.down.discard("n3")
    c.run(5.0)
    assert back.view.get("k") is None, "the stale value must not outlive the purge"
    assert all("k" not in c.nodes[n].view.records() for n in c.ids)


def test_heartbeats_carry_wall_time_when_timers_run_on_mono_time() -> None:
    from rumordb.core.messages import Heartbeat, decode

    config = NodeConfig(probe_interval_ms=100, jitter_timers=False)
    n = Node("n1", "mem://n1", rng=random.Random(1), now=1000.0, config=config, mono=5.0)
    n.join("n2", "mem://n2", 0, 1000.0, mono=5.0)
    out = n.tick(1000.1, mono=5.1)
    beats = [m for _, data in out.messages if isinstance(m := decode(data, 1 << 20), Heartbeat)]
    assert beats and all(b.clock_ms == 1_000_100 for b in beats), (
        "the clock watch compares wall time"
    )
