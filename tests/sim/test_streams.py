"""Per-node random streams: a pure function of (seed, node, draw number)."""

from __future__ import annotations

import random

from rumordb.sim.streams import NodeStreams, draw, mix64, seed_key


def test_a_nodes_draws_do_not_depend_on_other_nodes_draws() -> None:
    alone, busy = NodeStreams("s", 3), NodeStreams("s", 3)
    alone.select(1)
    first = [alone.random() for _ in range(5)]
    busy.select(0)
    busy.sample(range(100), 3)
    busy.select(1)
    mixed = [busy.random()]
    busy.select(2)
    busy.randrange(7)
    busy.select(1)
    mixed += [busy.random() for _ in range(4)]
    assert first == mixed
    assert busy.draws(1) == 5 and busy.draws(0) >= 3


def test_streams_differ_by_node_and_by_seed_and_repeat_for_the_same_pair() -> None:
    key = seed_key("run")
    assert draw(key, 0, 0) != draw(key, 1, 0) != draw(key, 0, 1)
    assert draw(key, 0, 0) != draw(seed_key("other"), 0, 0)
    assert draw(key, 5, 9) == draw(seed_key("run"), 5, 9)


def test_the_standard_methods_stay_in_range_and_look_uniform() -> None:
    streams = NodeStreams("u", 1)
    values = [streams.random() for _ in range(4000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert 0.47 < sum(values) / len(values) < 0.53
    counts = [0] * 6
    for _ in range(6000):
        counts[streams.randrange(6)] += 1
    assert min(counts) > 850 and max(counts) < 1150
    picked = streams.sample(range(1_000_000), 3)
    assert len(set(picked)) == 3 and all(0 <= p < 1_000_000 for p in picked)
    assert streams.getrandbits(130) < 1 << 130 and streams.getrandbits(0) == 0


def test_mix64_is_a_bijection_on_a_sample_and_stays_in_64_bits() -> None:
    rng = random.Random(3)
    inputs = {rng.getrandbits(64) for _ in range(2000)}
    outputs = {mix64(z) for z in inputs}
    assert len(outputs) == len(inputs) and max(outputs) < 1 << 64


def test_the_streams_draws_are_the_pure_function_and_bounded_ints_the_standard_ones() -> None:
    streams = NodeStreams("f", 4)
    streams.select(2)
    assert [streams.getrandbits(64) for _ in range(3)] == [
        draw(seed_key("f"), 2, count) for count in range(3)
    ]
    ours, theirs = NodeStreams("g", 1), NodeStreams("g", 1)
    standard = random.Random._randbelow_with_getrandbits  # type: ignore[attr-defined]
    bounds = [3, 5, 1000, 2**40 + 3, 1, 7, 6]
    assert [ours._randbelow(n) for n in bounds] == [standard(theirs, n) for n in bounds]
    assert ours.draws(0) == theirs.draws(0) > len(bounds)  # some were rejected, alike
