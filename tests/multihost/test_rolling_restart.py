"""Issue 15 in network namespaces: a rolling restart (SIGTERM -> leave, restart on its
data dir, wait for ``/ready``) of every node of a 5-node cluster under a set workload,
and a node paused (SIGSTOP) for twice its timeouts that marks no healthy peer dead.

The workload here picks a random node per operation and does not retry elsewhere: an
operation sent to a node that is down is counted unknown (availability below 1), never
lost. The failover client is tested on loopback (tests/live/test_leave_cluster.py).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.multihost.cluster import PROBE_INTERVAL_MS, SUSPICION_MULT, LabCluster
from tests.multihost.netns import Lab, wait_for

pytestmark = [pytest.mark.multihost, pytest.mark.slow, pytest.mark.timeout(280)]

FIVE = ["h1", "h2", "h3", "h4", "h5"]
SUSPECT_S = PROBE_INTERVAL_MS * SUSPICION_MULT / 1000


def ready(cluster: LabCluster, host: str) -> bool:
    done = cluster.lab.client("probe", cluster.url(host) + "/ready", check=False, timeout_s=10)
    return done.returncode == 0


def dead_verdicts(log: Path, since: int) -> int:
    count = 0
    for line in log.read_text(errors="replace")[since:].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        count += event.get("event") == "member_state" and event.get("new") == "dead"
    return count


def test_rolling_restart_of_five_namespaced_nodes_loses_nothing(
    make_lab: Callable[[int], Lab], tmp_path: Path
) -> None:
    cluster = LabCluster(make_lab(5), tmp_path)
    cluster.start_all(FIVE)
    assert wait_for(lambda: all(ready(cluster, h) for h in FIVE), 30)
    load = cluster.workload("rolling", duration_s=60, rate=40, keys=100, delete_ratio=0.1)
    time.sleep(2)
    for host in FIVE:
        code = cluster.lab.stop(cluster.nodes[host], signal.SIGTERM)
        # uvicorn re-raises SIGTERM after its graceful shutdown: -15 is a clean exit.
        assert code in (0, -signal.SIGTERM), (code, cluster.log_tail(host))
        assert '"node_left"' in cluster.log_tail(host, 40), cluster.log_tail(host)
        cluster.start(host)
        assert wait_for(lambda h=host: ready(cluster, h), 40), cluster.log_tail(host)  # type: ignore[misc]
    history = load.wait(120)
    report, _ = cluster.converge([history], load.prefix)
    summary = report.summary()
    print(f"namespace rolling restart: {summary}")
    assert not report.lost, report.lost[:5]
    assert not report.unexpected, report.unexpected[:5]
    assert report.identical


def test_a_paused_namespaced_node_marks_no_healthy_peer_dead(
    make_lab: Callable[[int], Lab], tmp_path: Path
) -> None:
    cluster = LabCluster(make_lab(3), tmp_path)
    cluster.start_all(FIVE[:3])
    log = tmp_path / "h1.log"
    mark = len(log.read_text(errors="replace"))
    cluster.lab.signal(cluster.nodes["h1"], signal.SIGSTOP)
    try:
        time.sleep(2 * 2 * SUSPECT_S)  # twice suspicion + dead timeout
    finally:
        cluster.lab.signal(cluster.nodes["h1"], signal.SIGCONT)
    cluster.wait_ready(FIVE[:3], members=3)
    time.sleep(3 * PROBE_INTERVAL_MS / 1000)
    false_dead = dead_verdicts(log, mark)
    print(f"false dead verdicts after a namespace SIGSTOP/SIGCONT: {false_dead}")
    assert false_dead == 0
