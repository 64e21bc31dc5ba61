"""Whole clusters of real nodes in memory: random writes, loss, partitions, then agreement."""

import random

import pytest

from rumordb.core import NodeConfig
from tests.core.harness import Cluster


def workload(cluster: Cluster, seconds: float, keys: int, rng: random.Random) -> None:
    for _ in range(round(seconds / cluster.step_s)):
        for _ in range(rng.randrange(3)):
            writer = rng.choice(cluster.ids)
            if writer in cluster.down:
                continue
            key = f"k{rng.randrange(keys)}"
            if rng.random() < 0.2:
                cluster.delete(writer, key)
            else:
                cluster.put(writer, key, f"{writer}@{cluster.now}".encode())
        cluster.step()


@pytest.mark.parametrize(("n", "seed"), [(3, 1), (3, 2), (10, 3), (10, 4), (100, 5), (100, 6)])
def test_random_writes_with_loss_and_a_partition_converge(n: int, seed: int) -> None:
    cluster = Cluster(n, seed, loss=0.1)
    rng = random.Random(seed)
    workload(cluster, 2.0, keys=40, rng=rng)
    half = cluster.ids[: n // 2]
    cluster.partition(half, cluster.ids[n // 2 :])
    workload(cluster, 3.0, keys=40, rng=rng)
    cluster.heal()
    workload(cluster, 1.0, keys=40, rng=rng)
    cluster.loss = 0.0
    cluster.run_until_converged(max_seconds=60 if n < 100 else 120)
    data = cluster.live_data("n1")
    assert data, "the workload wrote something"
    assert all(cluster.state(nid) == cluster.state("n1") for nid in cluster.ids) or all(
        cluster.live_data(nid) == data for nid in cluster.ids
    )


def test_the_same_seed_gives_the_identical_message_trace() -> None:
    digests = []
    for _ in range(2):
        cluster = Cluster(10, seed=42, loss=0.2)
        workload(cluster, 3.0, keys=20, rng=random.Random(42))
        digests.append(cluster.trace.hexdigest())
    other = Cluster(10, seed=43, loss=0.2)
    workload(other, 3.0, keys=20, rng=random.Random(43))
    assert digests[0] == digests[1] != other.trace.hexdigest()


def test_deletes_win_and_tombstones_are_purged_once_everyone_holds_them() -> None:
    cluster = Cluster(5, seed=9)
    cluster.put("n1", "k", b"v")
    cluster.run(1.0)
    cluster.delete("n2", "k")
    cluster.run(5.0)
    assert all(cluster.nodes[nid].view.get("k") is None for nid in cluster.ids)
    assert all(cluster.nodes[nid].view.version("k") is None for nid in cluster.ids), (
        "purged everywhere"
    )
    assert sum(cluster.nodes[nid].view.counters().tombstones_purged for nid in cluster.ids) == 5


def test_a_tombstone_is_kept_while_a_member_is_down_so_the_delete_cannot_come_back() -> None:
    cluster = Cluster(3, seed=11)
    cluster.put("n1", "k", b"v")
    cluster.run(1.0)
    cluster.down.add("n3")
    cluster.delete("n1", "k")
    cluster.run(20.0)
    assert cluster.nodes["n1"].view.version("k") is not None, "n3 might still hold the value"
    cluster.down.discard("n3")
    cluster.run(10.0)
    assert all(cluster.nodes[nid].view.get("k") is None for nid in cluster.ids)
    assert all(cluster.nodes[nid].view.version("k") is None for nid in cluster.ids)


def test_a_dead_member_is_detected_and_revived_when_it_returns() -> None:
    cluster = Cluster(4, seed=5)
    cluster.run(2.0)
    cluster.down.add("n4")
    cluster.run(10.0)
    assert cluster.nodes["n1"].membership.get("n4").state.value == "dead"  # type: ignore[union-attr]
    cluster.put("n1", "while-down", b"x")
    cluster.down.discard("n4")
    cluster.run(5.0)
    assert all(
        cluster.nodes[nid].membership.get("n4").state.value == "alive"  # type: ignore[union-attr]
        for nid in ("n1", "n2", "n3")
    )
    assert cluster.nodes["n4"].view.get("while-down") is not None, "anti-entropy caught it up"


def test_sharded_keys_live_on_their_owners_only() -> None:
    cluster = Cluster(6, seed=3, config=NodeConfig(sharding=True, replicas=2))
    cluster.run(1.0)
    written = {}
    for i in range(60):
        key = f"k{i}"
        owner = cluster.nodes["n1"].owners(key)[0]
        cluster.put(owner, key, b"v%d" % i)
        written[key] = owner
    cluster.run(5.0)
    for key in written:
        owners = cluster.nodes["n1"].owners(key)
        holders = [nid for nid in cluster.ids if cluster.nodes[nid].view.get(key) is not None]
        assert sorted(holders) == sorted(owners)


def test_sharded_hint_is_handed_back_and_dropped_when_the_owner_returns() -> None:
    cluster = Cluster(5, seed=8, config=NodeConfig(sharding=True, replicas=2))
    cluster.run(1.0)
    key = next(f"k{i}" for i in range(200) if "n5" in cluster.nodes["n1"].owners(f"k{i}"))
    writer = next(o for o in cluster.nodes["n1"].owners(key) if o != "n5")
    cluster.down.add("n5")
    cluster.run(10.0)  # n5 is dead for everyone now
    cluster.put(writer, key, b"hinted")
    cluster.run(1.0)
    holders = [nid for nid in cluster.ids if cluster.nodes[nid].view.get(key) is not None]
    assert len(holders) == 2 and "n5" not in holders, "a stand-in holds the second copy"
    cluster.down.discard("n5")
    cluster.run(15.0)
    holders = [nid for nid in cluster.ids if cluster.nodes[nid].view.get(key) is not None]
    assert sorted(holders) == sorted(cluster.nodes["n1"].owners(key)), "handed back, then dropped"
