"""The SimPy engine: real ``core.Node`` objects on a simulated network, under one clock.

Theory of operation. Each node is a ``SimNode``: the core node, its clock, whether it is
up, and its "disk" (the writes and purges it was told to persist). Each node has one
pending call (``sim.calendar``: a tuple in a heap beside SimPy's) for its next tick that
may have work; a tick re-arms it (a callback chain, not a process per node: less memory
and work per wake-up). Ticks that can have nothing to do (``Node.idle_until``: a rumor
round with an empty queue, a probe that detects nothing) are not woken for: they are
passed (``Node.pass_idle``, with the reading each would have had) when anything reaches
the node. A client operation calls ``put``/``delete`` then ``flush``; a delivered message
calls ``receive``. Whatever the core returns is carried out as the live runner does:
persist (the disk dict), then send. Sending asks the ``Network`` for the message's fate
and delay and schedules the delivery as such a call too (no process or event per
message: a 10 000-node run carries hundreds of thousands of them).

Determinism: every random draw comes from a stream seeded from the scenario seed and a
fixed name (nodes, network, workload, churn). Each node draws from its own stream
(``sim.streams``: a counter per node, not a generator), so what a node picks depends on
the seed and on its own history only, never on when other nodes woke; at one instant
SimPy's events run first, then ticks in node order, then deliveries in the order sent;
the messages of one output are sent in destination order; nothing iterates a set of
strings. Skipping idle ticks or waking every node at every deadline (``skip_idle=False``)
is then the same run. Every send, drop, delivery-time, client operation and fault is
folded into a BLAKE2b hash (the *trace hash*): same scenario and seed, same hash.

The ``Convergence`` checker is told of every stored version, so metrics are exact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

import simpy
from simpy.events import URGENT

from rumordb.core import (
    Counters,
    DecodeError,
    ForgetRefused,
    Local,
    Node,
    NodeConfig,
    Output,
    Record,
    Ring,
    StaticMembership,
    WriteCommand,
    WriteResult,
    WriteStatus,
    merge_pages,
    message_kind,
    restart_incarnation,
)
from rumordb.core.counters import add_deltas
from rumordb.sim.calendar import Calendar
from rumordb.sim.calibration import Calibration, describe, load_calibration
from rumordb.sim.checks import Convergence, divergent_keys
from rumordb.sim.clock import NodeClock
from rumordb.sim.metrics import Series, Traffic, collect
from rumordb.sim.network import Fate, Network
from rumordb.sim.posts import Posts, SideWork, Via, live_address
from rumordb.sim.scenario import FaultSpec, Scenario
from rumordb.sim.service import Servers, spread_sampler, wakeup_sampler
from rumordb.sim.streams import NodeStreams
from rumordb.sim.workload import Op, OpStream, context_of

MAX_EVENTS = 10_000  # fault and churn events kept for the report
# Young objects allocated between collections while a run goes on. SimPy events and
# messages die young; at CPython's default (700) the collector ran about every event and
# spent a quarter of a 10 000-node run (measured: 11.3 s CPU with it, 8.5 s without).
RUN_GC_THRESHOLD = 100_000
TRACE_BATCH = 1024  # trace pieces joined per hash update
# A fate's value for the trace, by a dict lookup: an Enum's ``.value`` is a Python-level
# property, read on every send.
_FATE_TEXT = {fate: fate.value for fate in Fate}

Event = Any  # what a SimPy process yields and callbacks receive
Process = Generator[simpy.Event, Any, None]


@contextlib.contextmanager
def _fewer_collections() -> Generator[None, None, None]:
    """Run the cyclic collector every ``RUN_GC_THRESHOLD`` young objects, not 700."""
    thresholds = gc.get_threshold()
    gc.set_threshold(RUN_GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


@contextlib.contextmanager
def _collector_off_the_cluster() -> Generator[None, None, None]:
    """Keep the cyclic collector off the nodes built so far, and run it less often.

    A built cluster lives as long as the run, so scanning it on every full collection is
    wasted work (``gc.freeze``); garbage cycles made during the run are still collected.
    No collection comes first: the build made next to no garbage (65 objects at 30 000
    nodes), and one pass over the cluster cost 0.5-0.7 s of CPU there (~2.5 s at 100 000).
    """
    gc.freeze()
    try:
        with _fewer_collections():
            yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def _collector_paused() -> Generator[None, None, None]:
    """No cyclic collection while a cluster is built: it is all survivors, so a pass only
    moves it to an older generation (measured, 30 000 nodes: 1.1 s of CPU, 0.5 s paused).
    What it built is then frozen (``gc.freeze``) until ``run`` ends: otherwise the first
    young collection after the build would scan all of it once more."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


class Urgent(simpy.Event):
    """An event processed before normal ones at this instant (as a SimPy interrupt is)."""

    def __init__(self, env: simpy.Environment, callback: Callable[[Event], None]) -> None:
        super().__init__(env)
        self.callbacks.append(callback)
        self._ok = True
        self._value = None
        env.schedule(self, URGENT)


@dataclass(slots=True)
class SimNode:
    id: str
    index: int  # its place in the node order: its random stream, its place at an instant
    node: Node
    clock: NodeClock
    up: bool = True
    incarnation: int = 0
    disk: dict[str, Record] = field(default_factory=dict)
    # Simulation._on_wake, one bound method shared by every node (a partial per node
    # was 256 bytes: 3% of a node)
    on_wake: Callable[[SimNode, Event], None] = print
    # what wakes the node: its armed call's id, or the restart event while it is down
    waiting: simpy.Event | int | None = None
    wake_at: float = 0.0  # the true time of its armed call
    next_at: float = 0.0  # the true time of its next tick (idle or not)
    # The true time of its last input or tick: no tick of its comes before (a deadline
    # already passed then is kept at once).
    armed_at: float = 0.0
    restarted: simpy.Event | None = None
    pending_state: str = "keep"  # how the current crash treats memory and disk
    wiped: bool = False  # crashed with its disk: holds nothing until rebuilt
    purged: dict[str, Record] = field(default_factory=dict)  # tombstones it dropped, by key

    def wake(self, event: Event) -> None:
        """The callback of the event the node waits for."""
        self.on_wake(self, event)


class Simulation:
    def __init__(
        self, scenario: Scenario, trace_out: IO[str] | None = None, *, skip_idle: bool = True
    ) -> None:
        """``skip_idle``: nodes sleep through their idle ticks (the same run, faster);
        False wakes every node at every deadline (what the tests compare it with)."""
        self.scenario = s = scenario
        self.skip_idle = skip_idle
        self.env = Calendar()
        self.ids = s.node_ids
        seed = s.seed
        self.network = Network(
            s.network, self.ids, random.Random(f"{seed}:network"), Path(s.base_dir)
        )
        self.config = NodeConfig(
            fanout=s.gossip.fanout,
            direct_mail_max=s.gossip.direct_mail_max,
            gossip_interval_ms=s.gossip.interval_ms,
            anti_entropy_interval_ms=s.gossip.anti_entropy_interval_ms,
            probe_interval_ms=s.gossip.probe_interval_ms,
            suspicion_mult=s.gossip.suspicion_mult,
            retransmit_mult=s.gossip.retransmit_mult,
            max_batch=s.gossip.max_batch,
            sharding=s.cluster.sharding,
            replicas=s.cluster.replicas,
            jitter_timers=s.gossip.jitter_timers,
            max_clock_skew_ms=s.clocks.max_clock_skew_ms,
            reap_dead_after_ms=round(s.cluster.reap_dead_after_s * 1000),
        )
        self._index = {node_id: i for i, node_id in enumerate(self.ids)}
        self._ids_tuple = tuple(self.ids)
        self.ring = Ring(self.ids, self.config.vnodes) if s.cluster.sharding else None
        self.traffic = Traffic()
        self.series = Series()
        self._trace = hashlib.blake2b(digest_size=16)
        self._trace_parts: list[bytes] = []  # hashed in batches: same digest, fewer calls
        self._trace_out = trace_out
        self._ops = OpStream(s.workload, self.ids, s.duration_s, seed)
        self._churn_rng = random.Random(f"{seed}:churn")
        self._streams = NodeStreams(f"{seed}:nodes", len(self.ids))  # one per node, selected
        # At an instant, ticks run in node order, then deliveries in the order sent.
        self._deliveries = 0
        self._delivery_order = len(self.ids)
        # every node's ticks' counter deltas, summed (one Counters per node was 2% of it)
        self.counts = Counters()
        self._latest: dict[str, Record] = {}  # the version of each key persisted last
        self.nodes: dict[str, SimNode] = {}
        on_wake = self._on_wake
        with _collector_paused():
            for i, (node_id, clock) in enumerate(
                zip(self.ids, self._initial_clocks(), strict=True)
            ):
                node = self._new_node(node_id, 0, clock, ())
                self.nodes[node_id] = SimNode(node_id, i, node, clock, on_wake=on_wake)
        self.checker = Convergence(self.ids, self._records_of, self._owners_fn())
        self.last_disturbance_s = 0.0
        self.events: list[dict[str, Any]] = []  # faults and churn, for the plots
        self.failed_ops = 0
        self.noop_deletes = 0
        self._sample_messages = 0
        self._sample_bytes = 0
        self._sampled_drops = (0, 0)  # traffic.lost and blocked totals at the last sample
        # what _sample_storage knows without looking at every node
        self._tombstones_stored = False  # once true: every sample looks
        self._rows_changed = False  # rows purged or nodes down/up since the last look
        self._rows_max = 0  # the most rows on an up node's disk
        self._in_flight = 0
        self._stop = self.env.event()
        self._workload_done = False
        self._faults_done = False
        self._progress: Callable[[float], None] | None = None
        self._armed = False  # node timers exist once run() starts
        self.calibration: Calibration | None = None
        self.posts: Posts | None = None  # [network] posts: the live send path (sim.posts)
        self.transitions: Counter[str] = Counter()  # membership transitions, by new state
        if s.network.posts:
            self.posts = self._posts()

    def _posts(self) -> Posts:
        name = self.scenario.network.calibration
        path = Path(self.scenario.base_dir) / name if name else None
        self.calibration = c = load_calibration(path)
        seed = self.scenario.seed
        wakeup = wakeup_sampler(c.constants.wakeup_us, random.Random(f"{seed}:loop"))
        spread = spread_sampler(c.constants.service_spread, random.Random(f"{seed}:service"))
        cores = c.constants.cores if self.scenario.network.one_machine else 0
        return Posts(
            self.env,
            self.network,
            c.constants,
            self.traffic,
            self.deliver_later,
            lambda node_id: self.nodes[node_id].up,
            self._record,
            Servers(wakeup, spread, cores, c.constants.receive_s(1, 1)),
            durable=self.scenario.network.durability == "sync",
            side=SideWork(
                self.ids,
                self.scenario.gossip.interval_ms / 1000,
                self.scenario.network.observer_sample_ms / 1000,
            ),
        )

    # --- building nodes ----------------------------------------------------------------
    def _initial_clocks(self) -> Iterator[NodeClock]:
        """Each node's clock, in node order (made as they are needed: no table of N)."""
        clocks = self.scenario.clocks
        n = len(self.ids)
        for i in range(n):
            spread = (2.0 * i / (n - 1) - 1.0) if n > 1 else 0.0  # -1 .. +1 across nodes
            clock = NodeClock()
            clock.set(0.0, spread * clocks.skew_ms / 1000, spread * clocks.drift_ppm / 1e6)
            yield clock

    def _new_node(
        self,
        node_id: str,
        incarnation: int,
        clock: NodeClock,
        records: Iterable[tuple[str, Record]],
    ) -> Node:
        now = clock.now(self.env.now)
        static = self.scenario.cluster.membership == "static"
        membership = StaticMembership(node_id, self._ids_tuple, self._index) if static else None
        self._streams.select(self._index[node_id])  # the timers' jitter: its own stream
        node = Node(
            node_id,
            self._address(node_id),
            rng=self._streams,
            now=now,
            config=self.config,
            incarnation=incarnation,
            membership=membership,
            records=records,
            ring=self.ring if static else None,  # one shared ring, not N identical ones
        )
        if not static:
            for other in self.ids:  # what discovery does on a LAN: everyone hears everyone
                if other != node_id:
                    node.join(other, self._address(other), 0, now)
        return node

    def _address(self, node_id: str) -> str:
        """A member's address: its id, or, modelling the live path, a URL as long as one."""
        return live_address(self._index[node_id]) if self.scenario.network.posts else node_id

    def _records_of(self, node_id: str) -> Mapping[str, Record]:
        sim_node = self.nodes[node_id]
        return {} if sim_node.wiped else sim_node.node.view.records()

    def _owners_fn(self) -> Callable[[str], list[str]] | None:
        ring = self.ring
        if ring is None:
            return None
        replicas = self.scenario.cluster.replicas
        return lambda key: ring.owners(key, replicas)

    # --- running -----------------------------------------------------------------------
    def run(self, progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        """Run to ``duration_s`` (or to convergence, if asked); returns the metrics."""
        started = time.perf_counter()
        self._progress = progress
        env = self.env
        env.process(self._arm_all())
        self._armed = True
        env.process(self._workload())
        env.process(self._faults())
        churn = self.scenario.churn
        if churn.interval_s > 0:
            env.process(self._churn())
            if churn.stop_s is not None:  # converged during churn: stop once it is over
                env.timeout(churn.stop_s).callbacks.append(lambda _e: self._check_done())
        env.process(self._sampler())
        env.timeout(self.scenario.duration_s).callbacks.append(self._finish)
        with _collector_off_the_cluster():
            env.run(until=self._stop)
        self._catch_up_all()
        self._take_sample()
        return self._metrics(time.perf_counter() - started)

    def _finish(self, _event: Event) -> None:
        if not self._stop.triggered:
            self._stop.succeed()

    def _arm_all(self) -> Process:
        """Arm every node's timer, in node order, when SimPy starts processes."""
        for sim_node in self.nodes.values():
            self._arm(sim_node)
        yield from ()

    # --- waking nodes ------------------------------------------------------------------
    # A node ticks at each of its deadlines: at the true time its clock reads the
    # deadline, or at once if that passed before its last input (``armed_at``). Skipping
    # idle ticks (``skip_idle``), it sleeps until ``Node.idle_until()`` instead: until
    # then its ticks only move idle timers on (``Node.pass_idle``), which is done, with
    # the very readings those ticks would have had, as soon as anything reaches the node
    # (``_enter``), when it wakes, and at the end. Its draws come from its own stream and
    # the calls at an instant run in a fixed order, so the run is the one every tick
    # gives (tests/sim/test_determinism.py compares them).

    def _arm(self, sim_node: SimNode) -> None:
        """Wait for the node's next tick that may work, or for its restart if it is down.

        A callback chain, not a SimPy process per node: no generator frame or process
        object per node, one call per wake-up."""
        env = self.env
        if not sim_node.up:
            sim_node.restarted = sim_node.waiting = env.event()
            sim_node.waiting.callbacks.append(sim_node.wake)
            return
        node, clock = sim_node.node, sim_node.clock
        at, reading = clock.tick_at(node.next_deadline(), sim_node.armed_at)
        sim_node.next_at = at
        armed = isinstance(sim_node.waiting, int)
        if armed and sim_node.wake_at == at:
            return  # armed for its very next tick already
        if self.skip_idle:
            until = node.idle_until()
            if reading < until:
                # Idle: every later tick reads its deadline (``tick_at``), so the first
                # that may work comes at or after the true time its clock reads ``until``.
                at = clock.true_time(until)
                if armed and sim_node.wake_at == at:
                    return
        sim_node.wake_at = at
        sim_node.waiting = env.call_at(at, self._woken, sim_node, None, sim_node.index)

    def _woken(self, sim_node: SimNode, _: None) -> None:
        """A node's armed call came: its tick, the path of most calls of a run."""
        env = self.env
        if env.current_call != sim_node.waiting:
            return  # re-armed since: this wake-up was withdrawn
        sim_node.waiting = None
        now = env.now
        node, clock = sim_node.node, sim_node.clock
        if self.skip_idle:
            busy = self._pass_idle(sim_node, now, True)
            if busy is None:
                self._arm(sim_node)  # its next tick that may work is still to come
                return
            assert busy[0] == now, f"{sim_node.id} slept through a tick that may work"
            reading = busy[1]  # (what tick_at gives once more: nothing moved since)
        else:
            reading = clock.tick_at(node.next_deadline(), sim_node.armed_at)[1]
        clock.last_s = reading
        self._streams.select(sim_node.index)
        out = node.tick(reading)
        if out.counter_deltas:
            add_deltas(self.counts, out.counter_deltas)
        if out.messages or out.writes or out.purges or out.transitions:
            self._emit(sim_node, out)
        sim_node.armed_at = now
        self._arm(sim_node)

    def _pass_idle(
        self, sim_node: SimNode, until_s: float, inclusive: bool
    ) -> tuple[float, float] | None:
        """Pass the node's idle ticks due before ``until_s`` (at it too, if ``inclusive``);
        returns the tick due by then that may work, if one is: its true time and reading."""
        node, clock, floor = sim_node.node, sim_node.clock, sim_node.armed_at
        idle_until = node.idle_until()
        while True:
            at, reading = clock.tick_at(node.next_deadline(), floor)
            sim_node.next_at = at
            if at > until_s or (at == until_s and not inclusive):
                return None
            if reading >= idle_until:
                return at, reading
            clock.last_s = reading  # what reading the clock at that tick did
            deltas = node.pass_idle(reading)
            if deltas:
                add_deltas(self.counts, deltas)

    def _enter(self, sim_node: SimNode, inclusive: bool = False) -> Node:
        """The core node, brought up to now, its stream the one drawn from: what every
        input to a node goes through. ``inclusive``: its ticks at this instant come first
        (a delivery: calls at an instant run ticks first; SimPy's events run before both)."""
        if self.skip_idle and sim_node.up:
            now = self.env.now
            next_at = sim_node.next_at
            if next_at < now or (next_at == now and inclusive):
                busy = self._pass_idle(sim_node, now, inclusive)
                assert busy is None, f"{sim_node.id} slept through a tick that may work"
        self._streams.select(sim_node.index)
        return sim_node.node

    def _entered(self, sim_node: SimNode) -> None:
        """After an input: the node's next tick counts from now (re-armed if it moved)."""
        sim_node.armed_at = self.env.now
        if sim_node.up and self._armed and not isinstance(sim_node.waiting, simpy.Event):
            self._arm(sim_node)

    def _catch_up_all(self) -> None:
        """At the end: every node's idle ticks before it, so the counts are complete."""
        if self.skip_idle:
            for sim_node in self.nodes.values():
                if sim_node.up:
                    self._pass_idle(sim_node, self.env.now, False)

    def _on_wake(self, sim_node: SimNode, event: Event) -> None:
        """The node's restart event: it is up again, its next tick counts from now."""
        if event != sim_node.waiting:
            return
        sim_node.armed_at = self.env.now
        self._arm(sim_node)

    def _interrupt(self, sim_node: SimNode) -> None:
        """Crashed, or its clock changed: look again, urgently, as a SimPy interrupt did."""
        if self._armed:
            Urgent(self.env, partial(self._interrupted, sim_node))

    def _interrupted(self, sim_node: SimNode, _event: Event) -> None:
        sim_node.waiting = None
        self._arm(sim_node)

    # --- carrying out outputs ----------------------------------------------------------
    def _emit(self, sim_node: SimNode, out: Output, via: Via | None = None) -> None:
        """Persist, then send: the order the core's contract asks for. ``via``: what
        ``out`` answers came in a post (sender, link delay): messages back to its sender
        ride in that post's HTTP response, as the live runner returns them."""
        if out.writes or out.purges:
            self._persist(sim_node, out)
        for change in out.transitions:
            self.transitions[change.new.value] += 1
        messages = out.messages
        if messages:
            if len(messages) > 1:
                messages = sorted(messages, key=itemgetter(0))
            src = sim_node.id
            replies = []
            for dst, data in messages:
                if via is not None and dst == via[0] and self.posts is not None:
                    self._count_sent(data)
                    replies.append(data)
                else:
                    self._transmit(src, dst, data)
            if replies and self.posts is not None and via is not None:
                self.posts.reply(src, via[0], replies, via[1])
        if self.checker.incomplete == 0 and self._workload_done and self._faults_done:
            self._maybe_stop()

    def _persist(self, sim_node: SimNode, out: Output) -> None:
        now, disk, checker = self.env.now, sim_node.disk, self.checker
        purged, latest = sim_node.purged, self._latest
        for key, record in out.writes:
            # Every node decodes its own copy of a version; the disks share one (a
            # million nodes' disks hold one key's version a million times otherwise).
            shared = latest.get(key)
            if shared is not None and shared == record:
                record = shared
            else:
                latest[key] = record
            disk[key] = record
            purged.pop(key, None)
            checker.stored(sim_node.id, key, record, now)
            if record.tombstone:
                self._tombstones_stored = True
        if self.posts is not None:
            self.posts.stored(sim_node.id, len(out.writes))
        self._rows_max = max(self._rows_max, len(disk))
        if out.purges:
            self._rows_changed = True
        for key in out.purges:
            dropped = disk.pop(key, None)
            if dropped is not None and dropped.tombstone:
                purged[key] = dropped
            checker.purged(sim_node.id, key, now)
        self.traffic.persisted_writes += len(out.writes)
        self.traffic.persisted_purges += len(out.purges)

    def _count_sent(self, data: bytes) -> None:
        traffic = self.traffic
        size = len(data)
        traffic.messages_sent += 1
        traffic.bytes_sent += size
        traffic.by_kind[message_kind(data)] += 1
        self._sample_messages += 1
        self._sample_bytes += size

    def _transmit(self, src: str, dst: str, data: bytes) -> None:
        traffic = self.traffic
        size = len(data)
        self._count_sent(data)
        if self.posts is not None:
            self.posts.enqueue(src, dst, data)
            return
        fate, delay_s = self.network.fate(src, dst)
        self._record(f"send {src} {dst} {size} {_FATE_TEXT[fate]} {delay_s!r}", data)
        if fate is Fate.DELIVERED:
            self._in_flight += 1
            self._deliveries += 1
            order = self._delivery_order + self._deliveries
            self.env.call_at(self.env.now + delay_s, self._deliver, dst, data, order)
        elif fate is Fate.LOST:
            traffic.lost += 1
        elif fate is Fate.PARTITIONED:
            traffic.partitioned += 1
        else:
            traffic.unreachable += 1

    def deliver_later(self, dst: str, data: bytes, delay_s: float, via: Via | None = None) -> None:
        self._in_flight += 1
        self._deliveries += 1
        order, at = self._delivery_order + self._deliveries, self.env.now + delay_s
        if via is None:
            self.env.call_at(at, self._deliver, dst, data, order)
        else:  # (posts only: a reply rides back in its post's response)
            self.env.call_at(at, partial(self._deliver, via=via), dst, data, order)

    def _deliver(self, dst: str, data: bytes, via: Via | None = None) -> None:
        self._in_flight -= 1
        sim_node = self.nodes[dst]
        if not sim_node.up:
            self.traffic.to_down_node += 1
            return
        self.traffic.delivered += 1
        node = self._enter(sim_node, inclusive=True)
        now = sim_node.clock.now(self.env.now)
        try:
            out = node.receive(data, now)
        except DecodeError:
            self.traffic.decode_errors += 1
            return
        finally:
            self._entered(sim_node)
        self._emit(sim_node, out, via)

    def _record(self, line: str, data: bytes = b"") -> None:
        text = f"{self.env.now!r} {line}\n"
        parts = self._trace_parts
        parts.append(text.encode())
        if data:
            parts.append(data)
        if len(parts) >= TRACE_BATCH:
            self._hash_parts()
        if self._trace_out is not None:
            self._trace_out.write(text)

    def _hash_parts(self) -> None:
        # BLAKE2b over the concatenation equals BLAKE2b fed piece by piece: the digest
        # is the one an update per piece gave, for one call per batch.
        self._trace.update(b"".join(self._trace_parts))
        self._trace_parts.clear()

    def _maybe_stop(self) -> None:
        if not self.scenario.stop_when_converged or self._stop.triggered:
            return
        churn = self.scenario.churn
        if churn.interval_s > 0 and self.env.now < (churn.stop_s or self.scenario.duration_s):
            return  # more crashes are coming
        self._stop.succeed()

    # --- the workload --------------------------------------------------------------------
    def _workload(self) -> Process:
        for op in self._ops:
            if op.at_s > self.env.now:
                yield self.env.timeout(op.at_s - self.env.now)
            self._client_op(op)
        self._workload_done = True
        self._check_done()

    def _client_op(self, op: Op) -> None:
        origin = self._pick_origin(op)
        if origin is None:
            self.failed_ops += 1
            self._record(f"op {op.label} {op.key} no-node")
            return
        self.serve(origin.id, op)

    def serve(self, node_id: str, op: Op) -> None:
        """One client operation sent to ``node_id``, carried out as the live edge does."""
        origin = self.nodes[node_id]
        if op.kind == "read":
            server = self.read_server(node_id, op.key)
            stale = self.checker.read(server, op.key)
            self._record(f"op read {op.key} {server} {stale}")
            return
        if op.kind == "list":
            keys = self.list_keys(node_id, op.list_limit)
            incomplete = self.checker.listed(keys, op.list_limit)
            self._record(f"op list {origin.id} {len(keys)} {incomplete}")
            return
        result, origin = self._write(origin, op)
        if result is None:
            self.failed_ops += 1
            self._record(f"op {op.label} {op.key} no-owner")
            return
        self._record(f"op {op.label} {op.key} {origin.id} {result.status.value}")
        if self.posts is not None:
            self.posts.client_write(origin.id)
        if result.status is WriteStatus.NOT_FOUND:
            self.noop_deletes += 1
        else:
            self.last_disturbance_s = self.env.now
        out = result.output
        out.extend(self._enter(origin).flush(origin.clock.now(self.env.now)))
        self._entered(origin)
        self._emit(origin, out)

    def read_server(self, node_id: str, key: str) -> str:
        """The node whose answer a client reading ``key`` at ``node_id`` gets (``Node.read``)."""
        plan = self._enter(self.nodes[node_id]).read(key)
        if isinstance(plan, Local):
            return node_id
        up = [owner for owner in plan.owners if self.nodes[owner].up]
        if not plan.fallback:
            return up[0] if up else node_id  # an owner answers
        # This owner never saw the key (ranges moving): a co-owner's value counts.
        for owner in up:
            answer = self._enter(self.nodes[owner]).read(key, forwarded=True)
            if isinstance(answer, Local) and answer.record is not None:
                return owner
        return node_id

    def list_keys(self, node_id: str, limit: int) -> list[str]:
        """A listing at ``node_id``: its page, merged with its peers' when sharded."""
        plan = self._enter(self.nodes[node_id]).plan_list("", limit)
        pages = [
            self._enter(self.nodes[peer]).plan_list("", limit, forwarded=True).keys
            for peer in plan.gather
            if self.nodes[peer].up
        ]
        return merge_pages(plan.keys, pages, limit)

    def _write(self, origin: SimNode, op: Op) -> tuple[WriteResult | None, SimNode]:
        result = self._apply(origin, op)
        if result is None or result.status is not WriteStatus.NOT_OWNER:
            return result, origin
        # Sharded and not an owner: the client sends it on to the first owner that is up.
        owner = next((self.nodes[o] for o in result.owners if self.nodes[o].up), None)
        if owner is None:
            return None, origin
        return self._apply(owner, op), owner

    def _apply(self, sim_node: SimNode, op: Op) -> WriteResult | None:
        node = self._enter(sim_node)
        now = sim_node.clock.now(self.env.now)
        # What the client saw there: the stored version, or the tombstone purged here.
        stored = node.view.version(op.key)
        had = stored or sim_node.purged.get(op.key)
        if op.kind == "put":
            assert op.value is not None
            context = context_of(stored) if op.conditional else None
            ttl_ms = round(op.ttl_s * 1000)
            command = WriteCommand(
                op.key, op.value, "application/octet-stream", context, ttl_ms=ttl_ms
            )
            result = node.write(command, now)
        else:
            result = node.delete(op.key, now)
        if result.status in (WriteStatus.OK, WriteStatus.CREATED):
            assert result.record is not None
            self.checker.issued(op.key, result.record, had, self.env.now)
        self._entered(sim_node)
        return result

    def _pick_origin(self, op: Op) -> SimNode | None:
        name = self._ops.pick(op, lambda name: self.nodes[name].up)
        return None if name is None else self.nodes[name]

    # --- faults ------------------------------------------------------------------------
    def _faults(self) -> Process:
        starting: list[Event] = []  # restarts whose new processes are starting up
        startup_s = self.calibration.constants.startup_ms / 1000 if self.calibration else 0.0
        for fault in sorted(self.scenario.faults, key=lambda f: f.at_s):
            if fault.at_s > self.env.now:
                yield self.env.timeout(fault.at_s - self.env.now)
            if fault.action == "restart" and startup_s > 0:  # live: up once it serves
                starting.append(self.env.timeout(startup_s, fault))
                starting[-1].callbacks.append(lambda event: self._apply_fault(event.value))
                continue
            self._apply_fault(fault)
            self._check_done()  # a crash or a leave may leave no node missing anything
        if starting:
            yield self.env.all_of(starting)
        self._faults_done = True
        self._check_done()

    def _apply_fault(self, fault: FaultSpec) -> None:
        self._record(f"fault {fault.action} {fault.nodes} {fault.groups} {fault.links}")
        self._disturbed(fault.action, fault.nodes or [])
        if fault.action == "partition":
            self.network.partition(fault.groups or [])
        elif fault.action == "heal":
            self.network.heal()
        elif fault.action == "crash":
            for name in fault.nodes or []:
                self.crash(name, fault.state)
        elif fault.action == "restart":
            for name in fault.nodes or []:
                self.restart(name)
        elif fault.action == "link":
            self.network.change_links(fault.links, fault.latency_ms, fault.jitter_ms, fault.loss)
        elif fault.action == "clock":
            for name in fault.nodes or []:
                self._set_clock(name, fault)
        elif fault.action == "leave":
            for name in fault.nodes or []:
                self.leave(name)
        elif fault.action == "forget":
            self.forget(fault.nodes or [])

    def leave(self, name: str) -> None:
        """The node announces ``left`` and keeps running (sharded: it hands its keys off);
        the checker no longer expects it to hold every key. Crash, then restart, rejoins."""
        sim_node = self.nodes[name]
        if not sim_node.up:
            return
        node = self._enter(sim_node)
        now = sim_node.clock.now(self.env.now)
        self.checker.set_up(name, False, self.env.now)
        out = node.leave(now)
        self._entered(sim_node)
        self._emit(sim_node, out)

    def forget(self, names: list[str]) -> None:
        """Every running node forgets ``names`` (an operator's ``rumor cluster forget``);
        a node that still sees one alive refuses, as the live node does (409)."""
        for sim_node in self.nodes.values():
            if not sim_node.up:
                continue
            node = self._enter(sim_node)
            now = sim_node.clock.now(self.env.now)
            for name in names:
                if name != sim_node.id:
                    with contextlib.suppress(ForgetRefused):
                        node.forget(name, now)
            self._entered(sim_node)

    def crash(self, name: str, state: str) -> None:
        sim_node = self.nodes[name]
        if not sim_node.up:
            return
        self._enter(sim_node)  # its idle ticks until now, as ticking would have passed them
        sim_node.up = False
        self._rows_changed = True
        sim_node.pending_state = state
        if self.posts is not None:
            self.posts.crashed(name)
        self.checker.set_up(name, False, self.env.now)
        if state == "wipe":
            sim_node.disk = {}
            sim_node.purged = {}
            sim_node.wiped = True  # memory and disk gone; the node is rebuilt empty
            self.checker.wiped(name, self.env.now)
        self._interrupt(sim_node)

    def restart(self, name: str) -> None:
        sim_node = self.nodes[name]
        if sim_node.up:
            return
        if sim_node.pending_state != "keep":
            # A new process: memory reloaded from the disk, with a higher incarnation.
            sim_node.incarnation = restart_incarnation(sim_node.incarnation)
            sim_node.node = self._new_node(
                name, sim_node.incarnation, sim_node.clock, list(sim_node.disk.items())
            )
            sim_node.wiped = False
            self._announce(name)
        sim_node.up = True
        sim_node.armed_at = self.env.now  # no tick while it was down
        self._rows_changed = True
        self.checker.set_up(name, True, self.env.now)
        if sim_node.restarted is not None and not sim_node.restarted.triggered:
            sim_node.restarted.succeed()

    def _announce(self, name: str) -> None:
        """A new process announces itself as it starts, as live discovery does on a LAN:
        every peer up hears its new incarnation at once (not a gossip round later)."""
        if self.scenario.cluster.membership == "static":
            return
        sim_node = self.nodes[name]
        address = self._address(name)
        for other in self.nodes.values():
            if other.up and other is not sim_node:
                node = self._enter(other)
                node.join(name, address, sim_node.incarnation, other.clock.now(self.env.now))
                self._entered(other)

    def _set_clock(self, name: str, fault: FaultSpec) -> None:
        sim_node = self.nodes[name]
        offset_s = fault.offset_ms / 1000 if fault.offset_ms is not None else None
        self._enter(sim_node)  # its idle ticks until now, on the clock they were read on
        sim_node.clock.set(self.env.now, offset_s, fault.drift)
        sim_node.armed_at = self.env.now
        if sim_node.up:
            self._interrupt(sim_node)  # its next deadline now falls at another true time

    def _churn(self) -> Process:
        churn = self.scenario.churn
        stop_s = churn.stop_s if churn.stop_s is not None else self.scenario.duration_s
        if churn.start_s > 0:
            yield self.env.timeout(churn.start_s)
        while self.env.now + churn.interval_s <= stop_s:
            yield self.env.timeout(churn.interval_s)
            up = [name for name in self.ids if self.nodes[name].up]
            if len(up) <= 1:
                continue
            name = self._churn_rng.choice(up)
            self._record(f"churn crash {name} {churn.state}")
            self._disturbed("crash", [name])
            self.crash(name, churn.state)
            self._check_done()
            self.env.timeout(churn.down_s).callbacks.append(partial(self._churn_restart, name))

    def _churn_restart(self, name: str, _event: Event) -> None:
        self._record(f"churn restart {name}")
        self._disturbed("restart", [name])
        self.restart(name)

    def _disturbed(self, action: str, nodes: list[str]) -> None:
        self.last_disturbance_s = self.env.now
        if len(self.events) < MAX_EVENTS:
            self.events.append({"at_s": self.env.now, "action": action, "nodes": nodes})

    def _check_done(self) -> None:
        if self._workload_done and self._faults_done and self.checker.incomplete == 0:
            self._maybe_stop()

    # --- sampling and metrics ----------------------------------------------------------
    def _sampler(self) -> Process:
        interval_s = self.scenario.sample_interval_ms / 1000
        while True:
            self._take_sample()
            if self._progress is not None:
                self._progress(self.env.now)
            if self.scenario.stop_when_quiet and self._quiet() and not self._stop.triggered:
                self._stop.succeed()
            yield self.env.timeout(interval_s)

    def _quiet(self) -> bool:
        """No work left for rumor mongering: nothing queued, nothing in flight."""
        if not (self._workload_done and self._faults_done) or self._in_flight:
            return False
        return all(not sn.node.view.queue_length() for sn in self.nodes.values() if sn.up)

    def _take_sample(self) -> None:
        series, checker = self.series, self.checker
        if series.t_s and series.t_s[-1] == self.env.now:
            return
        fractions = checker.fractions()
        series.t_s.append(self.env.now)
        series.min_fraction.append(min(fractions, default=1.0))
        series.mean_fraction.append(sum(fractions) / len(fractions) if fractions else 1.0)
        complete = sum(1 for state in checker.keys.values() if state.missing == 0)
        series.keys_complete.append(complete / len(checker.keys) if checker.keys else 1.0)
        series.nodes_current.append(checker.nodes_current())
        series.messages.append(self._sample_messages)
        series.bytes.append(self._sample_bytes)
        series.up_nodes.append(len(checker.up))
        self._sample_storage(series)
        t = self.traffic
        drops = (t.lost, t.partitioned + t.unreachable + t.to_down_node)
        series.lost.append(drops[0] - self._sampled_drops[0])
        series.blocked.append(drops[1] - self._sampled_drops[1])
        self._sample_messages = self._sample_bytes = 0
        self._sampled_drops = drops

    def _sample_storage(self, series: Series) -> None:
        """Tombstones in memory and rows on disk, the fewest and most over up nodes.

        Every node is looked at only once a tombstone was stored, or a row was purged,
        or a node went down or came back since the last look: until then no node holds
        a tombstone and the most rows is the most any write left (a million nodes'
        run takes 18 samples: tens of seconds otherwise)."""
        if not (self._tombstones_stored or self._rows_changed):
            series.tombstones_min.append(0)
            series.tombstones_max.append(0)
            series.disk_rows_max.append(self._rows_max)
            return
        self._rows_changed = False
        tombstones, rows = [], []
        for sim_node in self.nodes.values():
            if sim_node.up:
                tombstones.append(sim_node.node.view.key_count()[1])
                rows.append(len(sim_node.disk))
        series.tombstones_min.append(min(tombstones, default=0))
        series.tombstones_max.append(max(tombstones, default=0))
        self._rows_max = max(rows, default=0)
        series.disk_rows_max.append(self._rows_max)

    def _metrics(self, wall_s: float) -> dict[str, Any]:
        metrics = collect(self, wall_s)
        if self.posts is not None and self.calibration is not None:
            metrics["posts"] = dataclasses.asdict(self.posts.finish())
            metrics["calibration"] = describe(self.calibration)
            metrics["transitions"] = dict(sorted(self.transitions.items()))
        return metrics

    @property
    def end_s(self) -> float:
        return float(self.env.now)

    def node_counters(self) -> list[Counters]:
        """Every node's counts, up or down, over its incarnations up to each one's last
        tick (from ``Output.counter_deltas``: a crash loses nothing already reported),
        summed over the nodes as they come: one ``Counters``."""
        return [self.counts]

    def divergent(self) -> list[str]:
        """Keys on which the up nodes (owners, when sharded) hold different versions."""
        states = {name: sn.node.view.records() for name, sn in self.nodes.items() if sn.up}
        return divergent_keys(states, self._owners_fn())

    @property
    def trace_hash(self) -> str:
        self._hash_parts()
        return self._trace.hexdigest()
