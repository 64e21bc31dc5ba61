"""The send path in the simulator (``sim.posts``), and the live gossip client, driven by
one send-policy schedule: the same messages queued at the same instants leave in the
same posts at the same instants on both sides, so the two cannot drift apart."""

from __future__ import annotations

import asyncio
import heapq
import io
import random
import time
from collections import defaultdict
from pathlib import Path

import httpx
import simpy

from rumordb.core.send_policy import BUSY_POST_BYTES, LINGER_BUSY_MS, LINGER_MS, POST_SPACING_MS
from rumordb.live.faults import Faults
from rumordb.live.gossip_client import GossipClient, open_envelope
from rumordb.live.metrics import Metrics
from rumordb.live.wire import Signer
from rumordb.sim.calibration import Constants
from rumordb.sim.engine import Simulation
from rumordb.sim.metrics import Traffic
from rumordb.sim.network import Network
from rumordb.sim.posts import Posts, SideWork
from rumordb.sim.scenario import NetworkSpec
from rumordb.sim.service import Servers
from tests.sim.helpers import build, minimal_raw

SECRET = "posts-test-secret"
RTT_MS = 2.0  # one post's round trip on both sides (no receive cost)
FREE = Constants(
    post_cost_us=0.0,
    message_cost_us=0.0,
    envelope_post_bytes=3,
    envelope_message_bytes=2,
    seal_bytes=51,
    http_head_bytes=124,
)
# (instant in ms, message size): idle writes, a busy spell of large posts, idle again.
SCHEDULE = [
    (0.0, 100),  # to an idle peer: at once (its post is out until 2.0)
    (1.0, 100),
    (1.5, 100),  # both queued during the first post: one post, POST_SPACING_MS after it
    (4.9, 100),  # queued before that post left: in it too
    (20.0, BUSY_POST_BYTES),
    (21.0, BUSY_POST_BYTES),  # each queued during the previous large post
    (28.0, BUSY_POST_BYTES),
    (35.0, BUSY_POST_BYTES),
    (42.0, 10),  # during the fourth large post in a row (BUSY_POSTS): the long linger
    (200.0, 10),
]
BUSY_AT_MS = 42.0 + LINGER_BUSY_MS
Posted = list[tuple[float, list[int]]]  # (instant in ms, message sizes)


class Sim:
    """``sim.posts`` for one sender and its peers on links of half the round trip."""

    def __init__(
        self,
        constants: Constants = FREE,
        durable: bool = False,
        side: SideWork | None = None,
        servers: Servers | None = None,
        **link: float,
    ) -> None:
        self.env = simpy.Environment()
        spec = NetworkSpec(latency_ms=link.pop("latency_ms", RTT_MS / 2), **link)  # type: ignore[arg-type]
        self.link_s = spec.latency_ms / 1000  # no jitter here: every post's link delay
        self.network = Network(spec, ["a", "b", "c"], random.Random(1), Path())
        self.traffic = Traffic()
        self.delivered: dict[float, list[int]] = defaultdict(list)
        self.arrived: list[tuple[float, int]] = []
        self.up = {"a": True, "b": True, "c": True}
        self.posts = Posts(
            self.env,
            self.network,
            constants,
            self.traffic,
            self._deliver,
            self.up.__getitem__,
            lambda line: None,
            servers=servers,
            durable=durable,
            side=side,
        )

    def _deliver(self, dst: str, data: bytes, delay_s: float, _via: object = None) -> None:
        # Called as the post arrives: it left one link delay (and the sender's work) ago.
        self.delivered[round((self.env.now - self.link_s) * 1000, 6)].append(len(data))
        self.arrived.append((round((self.env.now + delay_s) * 1000, 6), len(data)))

    def run(self, schedule: list[tuple[float, int]], until_s: float | None = None) -> Posted:
        for at_ms, size in schedule:
            self.env.timeout(at_ms / 1000).callbacks.append(
                lambda _e, size=size: self.posts.enqueue("a", "b", b"x" * size)
            )
        self.env.run(until=until_s)
        return sorted(self.delivered.items())


class FakeTime:
    """Virtual time for the live client: ``sleep`` parks on a timer heap the test runs."""

    def __init__(self) -> None:
        self.now_s = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def mono(self) -> float:
        return self.now_s

    async def sleep(self, delay_s: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._timers, (self.now_s + delay_s, self._seq, future))
        await future

    async def run_until(self, until_s: float) -> None:
        while True:
            for _ in range(50):  # let every runnable task reach its next sleep
                await asyncio.sleep(0)
            if not self._timers or self._timers[0][0] > until_s:
                break
            self.now_s, _, future = heapq.heappop(self._timers)
            future.set_result(None)
        self.now_s = max(self.now_s, until_s)


async def live_posts(schedule: list[tuple[float, int]]) -> Posted:
    fake = FakeTime()
    posted: Posted = []
    signer = Signer(SECRET)

    async def peer(request: httpx.Request) -> httpx.Response:
        envelope = open_envelope(signer, await request.aread(), time.time(), "b")
        posted.append((round(fake.now_s * 1000, 6), [len(m) for m in envelope.messages]))
        await fake.sleep(RTT_MS / 1000)
        return httpx.Response(204)

    async def on_reply(sender: str, payloads: list[bytes]) -> None:
        raise AssertionError("no replies here")

    client = GossipClient(
        "a",
        signer,
        lambda member: "http://b:1",
        on_reply,
        Metrics(),
        Faults(),
        transport=httpx.MockTransport(peer),
        mono=fake.mono,
        sleep=fake.sleep,
    )
    try:
        for at_ms, size in schedule:
            await fake.run_until(at_ms / 1000)
            client.send("b", b"x" * size)
        await fake.run_until(10.0)
    finally:
        await client.close()
    return posted


def test_the_live_client_and_the_simulator_post_the_same_batches_at_the_same_instants() -> None:
    live = asyncio.run(live_posts(SCHEDULE))
    sim = Sim().run(SCHEDULE)
    assert live == sim
    # And the schedule exercises the rule: a coalesced post, and a busy (long) linger.
    assert any(len(sizes) > 1 for _, sizes in live)
    instants = [at for at, _ in live]
    assert BUSY_AT_MS in instants and live[0][0] == LINGER_MS == 0.0
    assert (RTT_MS + POST_SPACING_MS, [100, 100, 100]) in live  # what waited: one post


def test_a_partition_drops_whole_posts_and_the_peer_keeps_posting_after_heal() -> None:
    sim = Sim()
    sim.network.partition([["a"], ["b"]])
    sim.env.timeout(0.050).callbacks.append(lambda _e: sim.network.heal())
    posted = sim.run([(0.0, 10), (1.0, 10), (60.0, 10)])
    assert posted == [(60.0, [10])]  # the first two were dropped whole
    assert sim.traffic.partitioned == 2 and sim.posts.stats.posts == 1


def test_a_lossy_link_loses_single_messages_of_a_post() -> None:
    sim = Sim(loss=0.5)
    sim.run([(0.0, 10)] * 200)
    assert 60 < sim.traffic.lost < 140
    assert sim.posts.stats.messages == 200 - sim.traffic.lost


def test_a_receiver_works_through_posts_one_at_a_time() -> None:
    slow = Constants(
        post_cost_us=4000.0,
        message_cost_us=1000.0,
        envelope_post_bytes=3,
        envelope_message_bytes=2,
        seal_bytes=51,
        http_head_bytes=124,
    )
    sim = Sim(slow)
    sim.run([(0.0, 10), (0.0, 10)])
    # No linger (an idle peer), link 1 ms, then 4 ms + 2 x 1 ms of the receiver's CPU.
    assert sim.arrived == [(7.0, 10), (7.0, 10)]


def test_with_posts_members_announce_live_length_addresses() -> None:
    from rumordb.sim.engine import Simulation
    from rumordb.sim.posts import live_address
    from tests.sim.helpers import build, minimal_raw

    live = Simulation(build(minimal_raw(), network__posts=True))
    plain = Simulation(build(minimal_raw()))
    members = {m.id: m.address for m in live.nodes["n1"].node.view.members()}
    assert members["n2"] == live_address(1) and members["n1"] == live_address(0)
    assert {m.address for m in plain.nodes["n1"].node.view.members()} == set(plain.ids)


def test_replies_ride_back_in_the_response_without_linger_or_loss() -> None:
    sim = Sim(loss=1.0)  # every posted message is lost on these links
    sim.env.timeout(0).callbacks.append(
        lambda _e: sim.posts.reply("b", "a", [b"r" * 10, b"s" * 20], sim.link_s)
    )
    sim.env.run()
    at_ms = round(sim.link_s * 1000, 6)  # one link delay back, no linger
    assert sim.arrived == [(at_ms, 10), (at_ms, 20)] and sim.traffic.lost == 0
    assert sim.posts.stats.messages == 2 and sim.posts.stats.posts == 0


def test_a_node_answers_a_post_in_its_response_as_the_live_runner_does() -> None:
    trace = io.StringIO()
    Simulation(build(minimal_raw(), network__posts=True), trace_out=trace).run()
    lines = trace.getvalue().splitlines()
    # anti-entropy digests are answered in the digest post's response
    assert any(" reply " in line for line in lines)
