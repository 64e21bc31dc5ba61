"""Bounded growth (issue 15) in a namespace lab: the client tools and the scripted run.

The run: a cluster of real nodes; ``keys`` keys written; the last node killed with
SIGKILL and never restarted; once the others mark it dead, every key deleted on them.
The survivors must then hold every tombstone (the dead member might lack one) until an
operator's ``rumor cluster forget`` (or their ``--reap-dead-after-s``) lets purge resume
and the count falls to zero; a constant delete load afterwards must leave it hovering.
A sampler in the control namespace reads every node's ``GET /cluster`` (tombstones, keys
and the database's size, ``storage``) throughout.

In the control namespace (``python -m tests.multihost.growth <command>``):

* ``load``: put or delete ``--count`` keys through ``POST /kv`` batches;
* ``churn``: every ``--tick`` s put ``rate * tick`` new keys and delete those put
  ``--lag`` s before (``rate`` deletes per second once it runs); the last ones are
  deleted at the end, so it leaves no live key;
* ``sample``: one JSON line per node and ``--interval`` until ``--stop-file`` exists.

From the test process, ``run_growth`` drives a ``LabCluster`` through the whole run and
returns the samples, the events' times and each survivor's rows read from its SQLite
file (read-only, beside the node), which the tests hold against ``/cluster``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.multihost.cluster import RUMOR, LabCluster
from tests.multihost.netns import PYTHON, wait_for

BATCH_ITEMS = 500  # per POST /kv (the node takes at most 1000)
VALUE = "v" * 100
GAUGES = (
    "rumor_tombstones",
    "rumor_keys",
    "rumor_storage_db_bytes",
    "rumor_storage_wal_bytes",
    "rumor_storage_free_bytes",
    "rumor_storage_rows",
)


# --- in the control namespace -------------------------------------------------------------
def _post_batch(client: httpx.Client, url: str, items: list[dict[str, str]]) -> int:
    """Send one batch; the number of items the node did not apply (404 deletes count ok)."""
    try:
        reply = client.post(f"{url}/kv", json={"items": items})
    except httpx.HTTPError:
        return len(items)
    if reply.status_code != 200:
        return len(items)
    return sum(1 for r in reply.json()["results"] if r["status"] not in (200, 201, 404))


def _items(op: str, keys: list[str]) -> list[dict[str, str]]:
    if op == "put":
        return [{"op": "put", "key": key, "value_text": VALUE} for key in keys]
    return [{"op": "delete", "key": key} for key in keys]


def load(args: argparse.Namespace) -> int:
    keys = [f"{args.prefix}{i}" for i in range(args.first, args.first + args.count)]
    failed = 0
    with _client(args.api_key) as client:
        for start in range(0, len(keys), BATCH_ITEMS):
            url = args.urls[(start // BATCH_ITEMS) % len(args.urls)]
            failed += _post_batch(client, url, _items(args.op, keys[start : start + BATCH_ITEMS]))
    print(json.dumps({"op": args.op, "count": len(keys), "failed": failed}))
    return 0 if failed == 0 else 1


def churn(args: argparse.Namespace) -> int:
    per_tick = max(1, round(args.rate * args.tick))
    lag_ticks = max(1, round(args.lag / args.tick))
    written: list[list[str]] = []
    failed = deleted = 0
    started = time.monotonic()
    with _client(args.api_key) as client:
        for tick in range(round(args.seconds / args.tick)):
            keys = [f"{args.prefix}{tick * per_tick + i}" for i in range(per_tick)]
            old = written[tick - lag_ticks] if tick >= lag_ticks else []
            url = args.urls[tick % len(args.urls)]
            failed += _post_batch(client, url, _items("put", keys) + _items("delete", old))
            written.append(keys)
            deleted += len(old)
            pause = started + (tick + 1) * args.tick - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        last = [key for keys in written[-lag_ticks:] for key in keys]
        failed += _post_batch(client, args.urls[0], _items("delete", last))  # none left over
        deleted += len(last)
    elapsed = time.monotonic() - started
    print(json.dumps({"deleted": deleted, "failed": failed, "seconds": round(elapsed, 2)}))
    return 0 if failed == 0 else 1


def sample(args: argparse.Namespace) -> int:
    stop = Path(args.stop_file)
    with _client(args.api_key) as client, Path(args.out).open("a") as out:
        while not stop.exists():
            started = time.monotonic()
            for url in args.urls:
                line = _sample_one(client, url)
                if line is not None:
                    out.write(json.dumps(line) + "\n")
            out.flush()
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    return 0


def _sample_one(client: httpx.Client, url: str) -> dict[str, Any] | None:
    try:
        reply = client.get(f"{url}/cluster", timeout=1.0)
    except httpx.HTTPError:
        return None  # the dead node, or a busy one: the next round samples it
    if reply.status_code != 200:
        return None
    view = reply.json()
    try:
        metrics = client.get(f"{url}/metrics", timeout=1.0).text
    except httpx.HTTPError:
        return None
    return {
        "t": time.time(),
        "node": view["node_id"],
        "keys": view["keys"],
        "tombstones": view["tombstones"],
        "storage": view["storage"],
        "states": {m["id"]: m["state"] for m in view["members"]},
        "gauges": _gauges(metrics),
    }


def _gauges(text: str) -> dict[str, float]:
    """The storage and tombstone gauges of a ``/metrics`` body, as operators read them."""
    return {
        family.name: family.samples[0].value
        for family in text_string_to_metric_families(text)
        if family.name in GAUGES and family.samples
    }


def _client(api_key: str) -> httpx.Client:
    auth = {"Authorization": f"Bearer {api_key}"}
    return httpx.Client(headers=auth, timeout=30.0, trust_env=False)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tests.multihost.growth")
    sub = top.add_subparsers(dest="command", required=True)
    for name in ("load", "churn", "sample"):
        p = sub.add_parser(name)
        p.add_argument("--urls", type=lambda s: s.split(","), required=True)
        p.add_argument("--api-key", required=True)
    p = sub.choices["load"]
    p.add_argument("--op", choices=("put", "delete"), required=True)
    p.add_argument("--prefix", default="g")
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int, required=True)
    p = sub.choices["churn"]
    p.add_argument("--prefix", default="c")
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--tick", type=float, default=0.5)
    p.add_argument("--lag", type=float, default=1.0)
    p = sub.choices["sample"]
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--out", required=True)
    p.add_argument("--stop-file", required=True)
    return top


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "load": load,
    "churn": churn,
    "sample": sample,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return COMMANDS[args.command](args)


# --- the run, from the test process ---------------------------------------------------
@dataclass(slots=True)
class GrowthPlan:
    keys: int = 1000
    reap_after_s: float | None = None  # None: an operator forgets the dead node
    hold_s: float = 3.0  # how long the held tombstones are watched before the forget
    churn_s: float = 0.0  # then this long of a constant delete load...
    churn_rate: float = 100.0  # ...of this many deletes per second
    sample_interval_s: float = 1.0
    timeout_s: float = 90.0  # for each wait


@dataclass(slots=True)
class GrowthResult:
    survivors: list[str]  # node ids
    victim: str
    events: dict[str, float] = field(default_factory=dict)  # name -> epoch s
    samples: list[dict[str, Any]] = field(default_factory=list)
    file_rows: dict[str, int] = field(default_factory=dict)  # node id -> rows in its file

    def series(self, node: str, name: str) -> list[tuple[float, float]]:
        """``(seconds since the kill, value)`` of one node; ``storage.x`` for storage."""
        origin = self.events["killed"]
        path = name.split(".")
        found = []
        for s in self.samples:
            if s["node"] == node:
                value: Any = s
                for part in path:
                    value = value[part]
                found.append((s["t"] - origin, float(value)))
        return found


def _tool(cluster: LabCluster, *args: str, timeout_s: float = 120.0) -> dict[str, Any]:
    argv = [PYTHON, "-m", "tests.multihost.growth", *args, f"--api-key={cluster.admin_key}"]
    done = cluster.lab.exec("ctl", argv, timeout_s=timeout_s, check=False)
    assert done.returncode == 0, (args[0], done.stdout, done.stderr[-2000:])
    return dict(json.loads(done.stdout))


class Samples:
    """The sampler's file, read by the test process: the latest sample of each node."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def latest(self, since: float) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return found
        for line in self.path.read_text().splitlines():
            if line.endswith("}"):
                sample = json.loads(line)
                if sample["t"] >= since:
                    found[sample["node"]] = sample
        return found

    def wait_all(
        self, nodes: list[str], check: Callable[[dict[str, Any]], bool], timeout_s: float
    ) -> bool:
        """True once a sample taken after this call satisfies ``check`` on every node."""
        since = time.time()

        def met() -> bool:
            latest = self.latest(since)
            return all(node in latest and check(latest[node]) for node in nodes)

        return wait_for(met, timeout_s, 0.25)


def run_growth(cluster: LabCluster, hosts: list[str], plan: GrowthPlan) -> GrowthResult:
    """The whole scripted run on a started cluster of ``hosts`` (the last one is killed)."""
    *survivors, victim = hosts
    result = GrowthResult([cluster.node_id(h) for h in survivors], cluster.node_id(victim))
    out, stop = cluster.workdir / "growth.samples.jsonl", cluster.workdir / "growth.stop"
    sampler = cluster.lab.spawn("ctl", [
        PYTHON, "-m", "tests.multihost.growth", "sample", "--urls", ",".join(cluster.urls(hosts)),
        f"--api-key={cluster.admin_key}", "--interval", str(plan.sample_interval_s),
        "--out", str(out), "--stop-file", str(stop),
    ], log=cluster.workdir / "growth.sampler.log")  # fmt: skip
    try:
        _script(cluster, hosts, plan, result, Samples(out))
    finally:
        stop.touch()
        try:
            sampler.wait(10)
        except subprocess.TimeoutExpired:
            cluster.lab.stop(sampler, signal.SIGKILL)
    lines = out.read_text().splitlines() if out.exists() else []
    result.samples = [json.loads(line) for line in lines if line.endswith("}")]
    for host in survivors:
        result.file_rows[cluster.node_id(host)] = file_rows(cluster.workdir / host)
    return result


def _script(
    cluster: LabCluster, hosts: list[str], plan: GrowthPlan, result: GrowthResult, seen: Samples
) -> None:
    *survivors, victim = hosts
    n, wait, events = plan.keys, plan.timeout_s, result.events
    everyone, alive, gone = [cluster.node_id(h) for h in hosts], result.survivors, result.victim
    urls = ",".join(cluster.urls(survivors))
    _tool(cluster, "load", "--urls", urls, "--op", "put", "--count", str(n))
    assert seen.wait_all(everyone, lambda v: v["keys"] == n, wait), "keys not everywhere"
    cluster.kill(victim)
    events["killed"] = time.time()
    dead = seen.wait_all(alive, lambda v: v["states"].get(gone, "dead") == "dead", wait)
    assert dead, "the survivors never marked the killed node dead"
    events["dead"] = time.time()
    _tool(cluster, "load", "--urls", urls, "--op", "delete", "--count", str(n))
    events["deleted"] = time.time()
    held = seen.wait_all(alive, lambda v: v["tombstones"] == n, wait)
    assert held, f"the survivors never held all {n} tombstones"
    events["held"] = time.time()
    if plan.reap_after_s is None:
        time.sleep(plan.hold_s)  # the plateau, for the figures: nothing may purge here
        events["forget_sent"] = time.time()
        done = cluster.lab.exec("ctl", [
            RUMOR, "cluster", "forget", gone, "--url", cluster.url(survivors[0]),
            f"--api-key={cluster.admin_key}", "--json",
        ], timeout_s=60, check=False)  # fmt: skip
        assert done.returncode == 0, (done.stdout, done.stderr)
        events["forgotten"] = time.time()
    purged = seen.wait_all(alive, lambda v: v["tombstones"] == 0, wait)
    assert purged, "the tombstones were not purged after forget / reap"
    events["purged"] = time.time()
    if plan.churn_s > 0:
        events["churn_start"] = time.time()
        _tool(cluster, "churn", "--urls", urls, "--rate", str(plan.churn_rate),
              "--seconds", str(plan.churn_s), timeout_s=plan.churn_s + 120)  # fmt: skip
        events["churn_end"] = time.time()
        calm = seen.wait_all(alive, lambda v: v["tombstones"] == 0, wait)
        assert calm, "tombstones of the constant load were not purged after it stopped"
        events["calm"] = time.time()
    # The last samples: the writer folds, recounts rows and gives pages back when idle.
    time.sleep(3 * plan.sample_interval_s + 2)


def file_rows(data_dir: Path) -> int:
    """Rows of the records table, read from the node's SQLite file itself (read-only)."""
    uri = f"file:{data_dir / 'rumor.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=10) as db:
        return int(db.execute("SELECT count(*) FROM records").fetchone()[0])


if __name__ == "__main__":
    sys.exit(main())
