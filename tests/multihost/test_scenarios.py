"""The Jepsen-style ring: real ``rumor node`` processes on separate network stacks.

Each scenario is a workload + faults + an invariant, as FoundationDB's tests are: set
workloads from the control namespace against random nodes, faults from outside the nodes
(packet drops in the switch, signals), then heal, wait for identical data, and judge the
whole history with ``live.checker`` (lost = 0, unexpected = 0, identical data). Every
scenario records a row of the fault report (``docs/faults-report.md``).

Most workloads write only, so that each row measures its fault; the halves partition and
``rumor check`` mix in 10% deletes (a delete of an absent key answers 404 and counts as a
failed operation), and the delete scenario deletes across the partition.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rumordb.live.checker import Kind, Report, Status, load_history, load_snapshot
from tests.multihost.cluster import PROBE_INTERVAL_MS, RUMOR, SUSPICION_MULT, LabCluster
from tests.multihost.conftest import SCENARIOS
from tests.multihost.netns import Lab, wait_for

pytestmark = [pytest.mark.multihost, pytest.mark.slow, pytest.mark.timeout(240)]

FIVE = ["h1", "h2", "h3", "h4", "h5"]
SUSPECT_S = PROBE_INTERVAL_MS * SUSPICION_MULT / 1000

Recorder = Callable[..., None]


@pytest.fixture
def start_cluster(make_lab: Callable[[int], Lab], tmp_path: Path) -> Callable[..., LabCluster]:
    def start(hosts: int = 5, running: int = 5, sharding: bool = False) -> LabCluster:
        cluster = LabCluster(make_lab(hosts), tmp_path, sharding=sharding)
        cluster.start_all([f"h{i}" for i in range(1, running + 1)])
        return cluster

    return start


def assert_safe(report: Report) -> None:
    assert not report.lost, report.lost[:5]
    assert not report.unexpected, report.unexpected[:5]
    assert report.identical


def test_halves_partition_with_writes_on_both_sides(
    start_cluster: Callable[..., LabCluster], fault_report: Recorder
) -> None:
    cluster = start_cluster()
    watch = cluster.watch("halves", seconds=90)
    load = cluster.workload("halves", duration_s=14, rate=40, keys=100, delete_ratio=0.1)
    time.sleep(3)
    split_at = time.time()
    cluster.lab.partition(["h1", "h2"], ["h3", "h4", "h5"])
    time.sleep(max(0.0, load.ends_at - time.monotonic()))
    healed_at = time.time()
    cluster.lab.heal()
    history = load.wait()
    report, _ = cluster.converge([history], load.prefix, since=healed_at)
    watch.close()
    left, right = {"n1", "n2"}, {"n3", "n4", "n5"}
    dead_at = [watch.first(m, "dead", left, split_at) for m in right]
    dead_at += [watch.first(m, "dead", right, split_at) for m in left]
    seen = [t for t in dead_at if t is not None]
    detection = "sides never saw each other dead"
    if len(seen) == len(dead_at):
        detection = f"each side saw the other dead {max(seen) - split_at:.1f} s after the split"
    notes = "2/3 split for ~11 s, clients on both sides, 10% deletes (404s count as failed)"
    fault_report(SCENARIOS[0], report, detection, notes=notes)
    assert_safe(report)
    # Both sides keep accepting writes (AP): nothing fails but deletes of absent keys.
    failed = [op for op in load_history(history.read_bytes()) if op.status is not Status.OK]
    assert all(op.kind is Kind.DELETE and op.http_status == 404 for op in failed), failed[:5]


def test_isolated_node_is_suspected_then_dead_and_refutes_on_heal(
    start_cluster: Callable[..., LabCluster], fault_report: Recorder
) -> None:
    cluster = start_cluster()
    watch = cluster.watch("isolate", seconds=90)
    load = cluster.workload("isolate", duration_s=16, rate=40, keys=100)
    time.sleep(2)
    others = {"n1", "n2", "n4", "n5"}
    isolated_at = time.time()
    cluster.lab.isolate("h3")
    assert wait_for(lambda: watch.first("n3", "dead", others, isolated_at) is not None, 20)
    suspect_at = watch.first("n3", "suspect", others, isolated_at)
    dead_at = watch.first("n3", "dead", others, isolated_at)
    assert suspect_at is not None and dead_at is not None
    time.sleep(max(0.0, load.ends_at - time.monotonic()))
    healed_at = time.time()
    cluster.lab.heal()
    assert wait_for(lambda: watch.first("n3", "alive", others, healed_at) is not None, 20)
    alive_at = watch.first("n3", "alive", others, healed_at)
    assert alive_at is not None
    report, _ = cluster.converge([load.wait()], load.prefix, since=healed_at)
    watch.close()
    events = watch.events()
    false_dead = [
        e for e in events if e["observer"] != "n3" and e["member"] != "n3" and e["state"] == "dead"
    ]
    incarnations = [e["incarnation"] for e in events if e["member"] == "n3"]
    detection = (
        f"suspect {suspect_at - isolated_at:.1f} s, dead {dead_at - isolated_at:.1f} s, "
        f"alive again {alive_at - healed_at:.1f} s after heal"
    )
    fault_report(SCENARIOS[1], report, detection, notes=f"n3 cut off ~14 s; {len(false_dead)} "
                 "healthy nodes marked dead")  # fmt: skip
    assert not false_dead, false_dead
    assert max(incarnations) > min(incarnations), "n3 never refuted with a higher incarnation"
    assert_safe(report)


def test_kill_minus_nine_mid_load_and_restart_loses_nothing_acknowledged(
    start_cluster: Callable[..., LabCluster], fault_report: Recorder
) -> None:
    cluster = start_cluster()
    watch = cluster.watch("kill", seconds=90)
    load = cluster.workload("kill", duration_s=16, rate=40, keys=100)
    time.sleep(4)
    killed_at = time.time()
    cluster.kill("h2")
    others = {"n1", "n3", "n4", "n5"}
    assert wait_for(lambda: watch.first("n2", "dead", others, killed_at) is not None, 20)
    suspect_at = watch.first("n2", "suspect", others, killed_at)
    dead_at = watch.first("n2", "dead", others, killed_at)
    assert suspect_at is not None and dead_at is not None
    restarted_at = time.time()
    cluster.start("h2")
    cluster.wait_ready(FIVE, members=5)
    rejoined_s = time.time() - restarted_at
    time.sleep(max(0.0, load.ends_at - time.monotonic()))
    report, _ = cluster.converge([load.wait()], load.prefix)
    watch.close()
    detection = (
        f"suspect {suspect_at - killed_at:.1f} s, dead {dead_at - killed_at:.1f} s; "
        f"rejoined {rejoined_s:.1f} s after restart"
    )
    fault_report(SCENARIOS[2], report, detection, notes="SIGKILL n2, restart on its data dir "
                 "(sync durability); writes to n2 while down fail or time out")  # fmt: skip
    assert_safe(report)


def test_short_pauses_below_the_suspicion_timeout_mark_nobody_dead(
    start_cluster: Callable[..., LabCluster], fault_report: Recorder
) -> None:
    cluster = start_cluster()
    watch = cluster.watch("pause", seconds=90)
    load = cluster.workload("pause", duration_s=12, rate=40, keys=100)
    pause_s = SUSPECT_S * 0.4
    for host in ("h4", "h2", "h4"):
        time.sleep(2)
        cluster.lab.signal(cluster.nodes[host], signal.SIGSTOP)
        time.sleep(pause_s)
        cluster.lab.signal(cluster.nodes[host], signal.SIGCONT)
    time.sleep(max(0.0, load.ends_at - time.monotonic()))
    report, _ = cluster.converge([load.wait()], load.prefix)
    watch.close()
    dead = [e for e in watch.events() if e["state"] == "dead"]
    suspect = [e for e in watch.events() if e["state"] == "suspect"]
    fault_report(
        SCENARIOS[3],
        report,
        f"{len(dead)} dead, {len(suspect)} suspect marks",
        notes=f"3 SIGSTOP pauses of {pause_s:.1f} s (suspicion after {SUSPECT_S:.1f} s)",
    )
    assert not dead, dead
    assert_safe(report)


def test_quarter_packet_loss_converges_by_anti_entropy(
    start_cluster: Callable[..., LabCluster], fault_report: Recorder
) -> None:
    cluster = start_cluster()
    watch = cluster.watch("loss", seconds=90)
    for host in FIVE:
        cluster.lab.loss(host, 25, towards=[h for h in FIVE if h != host])
    load = cluster.workload("loss", duration_s=12, rate=40, keys=100)
    history = load.wait()
    # The loss stays on: anti-entropy must converge through it.
    report, _ = cluster.converge([history], load.prefix, timeout_s=60)
    cluster.lab.heal()
    watch.close()
    marks = [e["state"] for e in watch.events()]
    detection = f"{marks.count('suspect')} suspect, {marks.count('dead')} dead marks under loss"
    fault_report(SCENARIOS[4], report, detection, notes="25% of node-to-node frames dropped "
                 "each way, kept during convergence (time measured from the end of the load)")  # fmt: skip
    assert_safe(report)


def test_delete_across_a_partition_does_not_resurrect(
    start_cluster: Callable[..., LabCluster], fault_report: Recorder
) -> None:
    cluster = start_cluster()
    fill = cluster.workload("delete", duration_s=4, rate=50, keys=60)
    filled = fill.wait()
    before, _ = cluster.converge([filled], fill.prefix)
    assert_safe(before)
    cluster.lab.partition(["h1", "h2"], ["h3", "h4", "h5"])
    # Deletes on one side only; the other side still holds every old value.
    deletes = cluster.workload(
        "deletes", duration_s=5, rate=30, keys=60, delete_ratio=1.0, hosts=["h1", "h2"],
        seed=2, prefix=fill.prefix,
    )  # fmt: skip
    deleted = deletes.wait()
    time.sleep(2)
    healed_at = time.time()
    cluster.lab.heal()
    report, _ = cluster.converge([filled, deleted], fill.prefix, since=healed_at)
    # Let tombstones be purged, then look again: nothing may come back.
    time.sleep(3)
    later, _ = cluster.converge([filled, deleted], fill.prefix)
    notes = (
        "deletes on the 2-node side of a 2/3 split (deleting an already deleted key answers "
        f"404, counted as failed); {len(later.unexpected)} resurrected after tombstone purge"
    )
    fault_report(SCENARIOS[5], report, notes=notes)
    assert_safe(report)
    assert_safe(later)
    ops = load_history(deleted.read_bytes())
    assert any(op.kind is Kind.DELETE and op.status is Status.OK for op in ops)


def test_sixth_node_joins_during_load_sharded(
    start_cluster: Callable[..., LabCluster], fault_report: Recorder
) -> None:
    cluster = start_cluster(hosts=6, running=5, sharding=True)
    load = cluster.workload("join", duration_s=16, rate=40, keys=200, hosts=FIVE)
    time.sleep(5)
    joined_at = time.monotonic()
    cluster.start("h6")
    cluster.wait_ready([*FIVE, "h6"], members=6)
    join_s = time.monotonic() - joined_at
    time.sleep(max(0.0, load.ends_at - time.monotonic()))
    report, _ = cluster.converge([load.wait()], load.prefix)
    live_keys = _live_keys(cluster, "join")
    copies_ok = wait_for(lambda: _total_keys(cluster) == cluster.replicas * len(live_keys), 60)
    fault_report(
        SCENARIOS[6],
        report,
        f"n6 seen alive by all in {join_s:.1f} s",
        notes=f"--sharding --replicas 3; {len(live_keys)} keys, copies held "
        f"{_total_keys(cluster)} (want {cluster.replicas * len(live_keys)})",
    )
    assert_safe(report)
    assert copies_ok, "keys are not held by exactly N owners after the join"


def _live_keys(cluster: LabCluster, name: str) -> set[str]:
    """Keys with a live value in the snapshot that ``converge`` left for workload ``name``."""
    snapshot = load_snapshot((cluster.workdir / f"{name}.snapshot.json").read_bytes())
    return {
        key
        for view in snapshot.values()
        for key, version in view.items()
        if version is not None and not version.tombstone
    }


def _total_keys(cluster: LabCluster) -> int:
    """Live keys summed over every node: N x the key count once each key has N owners."""
    views = cluster.clusters()
    return sum(int(view["keys"]) for view in views.values() if view)


def test_rumor_check_with_chaos_passes_in_the_lab(
    start_cluster: Callable[..., LabCluster],
) -> None:
    """The user-facing checker, run from the control host, with chaos via ``/faults``."""
    cluster = start_cluster()
    argv = [
        RUMOR, "check", "--urls", ",".join(cluster.urls()), "--duration", "8", "--rate", "30",
        "--chaos", "--delete-ratio", "0.1", "--quiet-timeout", "60", "--json",
        f"--api-key={cluster.admin_key}",
    ]  # fmt: skip
    done = cluster.lab.exec("ctl", argv, timeout_s=150, check=False)
    print(done.stdout[-2000:], done.stderr[-2000:])
    result = json.loads(done.stdout)
    assert done.returncode == 0, result
    assert result["lost"] == 0 and result["unexpected"] == 0 and result["identical"]
    assert result["faults"] >= 2 and result["invoked"] == 240


def test_a_write_after_a_purged_delete_descends_the_delete(
    start_cluster: Callable[..., LabCluster],
) -> None:
    """Re-creating a key after its tombstone is purged everywhere must not reuse an older
    clock (the core once restarted the key's counters, so the new write lost to LWW)."""
    cluster = start_cluster(hosts=3, running=3)
    steps = [
        {"op": "put", "node": 0, "key": "purge/k"},
        {"op": "put", "node": 1, "key": "purge/k"},
        {"op": "delete", "node": 2, "key": "purge/k"},
        {"op": "wait_absent", "key": "purge/k", "timeout": 30},
        {"op": "put", "node": 0, "key": "purge/k"},
    ]
    out = cluster.workdir / "purge.history.json"
    cluster.client("sequence", "--urls", ",".join(cluster.urls()), "--steps",
                   json.dumps(steps), "--out", str(out))  # fmt: skip
    ops = load_history(out.read_bytes())
    assert [op.status for op in ops] == [Status.OK] * 4
    report, _ = cluster.converge([out], "purge/")
    assert not report.lost, [f.reason for f in report.lost]
