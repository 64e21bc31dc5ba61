"""A full scan of many keys: pages of ``GET /kv`` in process and through HTTP (issue 14).

The issue's target: a full scan of 10M keys in under 60 s, GET p99 during the scan at
most 2x its idle value; listing cost O(page). Two measurements, figures only:

* ``inproc``: a ``core.Node`` built from N stored records (100-byte values, the
  restart's bulk path), then every key listed by pages of 1 000 through
  ``Node.plan_list`` (the core's listing). Reports the scan's CPU time, each page's CPU
  time (p50, p99, max: a page is one loop turn of a live node) and the pages' cost
  against the number of keys (the first and the last tenth of the scan: O(page) means
  equal).
* ``live``: one ``rumor node`` on loopback started on a data directory written with N
  records beforehand (straight into its SQLite ``records`` table, as a compaction
  leaves it: loading N keys through the API takes many minutes at 10M). It measures the
  restart (process start to the first answered GET of a stored key, to ``/health`` ok),
  then ``IDLE_S`` idle, then the scan through HTTP pages of 1 000, with the stall probe
  of ``bench.volume_bench`` (a GET every 10 ms from its own process) and the node's
  loop monitor: per phase the GET p99, max and longest gap, and the longest loop turn.

Run: ``make bench-scan`` (``SCAN_KEYS``, default 10 000 000 in process and live), or
``.venv/bin/python -m bench.scan_bench inproc|live|both --keys N``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec

from bench.volume_bench import Cluster, StallProbe, _key, answers, print_table, wait_for
from rumordb.core import Node, Record

VALUE_BYTES = 100
PAGE = 1000
IDLE_S = 10.0
ROWS_PER_INSERT = 10_000


def _records(keys: int, hlc_base: int) -> Iterator[tuple[str, Record]]:
    """N records in key order (as SQLite streams them back), values of ``VALUE_BYTES``."""
    rng = random.Random(7)
    value = rng.randbytes(VALUE_BYTES)
    for i, key in enumerate(sorted(_key(i) for i in range(keys))):
        yield key, Record(value, "application/octet-stream", {"n0": i + 1}, hlc_base + i, "n0")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))], 2)


def inproc(keys: int) -> dict[str, object]:
    began = time.monotonic()
    node = Node("n0", rng=random.Random(0), now=time.time(), records=_records(keys, 1 << 40))
    built_s = time.monotonic() - began
    page_ms: list[float] = []
    after, seen = "", 0
    cpu = time.process_time()
    while True:
        start = time.process_time()
        page = node.plan_list("", PAGE, after).keys
        page_ms.append((time.process_time() - start) * 1000)
        seen += len(page)
        if len(page) < PAGE:
            break
        after = page[-1]
    tenth = max(1, len(page_ms) // 10)
    return {
        "mode": "inproc",
        "keys": keys,
        "build_s": round(built_s, 1),
        "scanned": seen,
        "scan_cpu_s": round(time.process_time() - cpu, 2),
        "page_ms_p50": _percentile(page_ms, 0.5),
        "page_ms_p99": _percentile(page_ms, 0.99),
        "page_ms_max": round(max(page_ms), 2),
        "first_tenth_page_ms": round(sum(page_ms[:tenth]) / tenth, 3),
        "last_tenth_page_ms": round(sum(page_ms[-tenth:]) / tenth, 3),
    }


def write_data_dir(path: Path, keys: int) -> None:
    """A node's SQLite file holding ``keys`` records, as a compacted store leaves them."""
    from rumordb.live.storage import DB_FILE, Storage

    Storage.open(path, "batch").close_sync()  # the schema, exactly as a node makes it
    encode = msgspec.msgpack.Encoder().encode
    db = sqlite3.connect(path / DB_FILE)
    try:
        db.execute("PRAGMA synchronous=OFF")
        rows: list[tuple[str, bytes]] = []
        hlc_base = int(time.time() * 1000) << 16
        for key, record in _records(keys, hlc_base):
            rows.append((key, encode(record)))
            if len(rows) == ROWS_PER_INSERT:
                db.executemany("INSERT INTO records (key, record) VALUES (?, ?)", rows)
                rows.clear()
        db.executemany("INSERT INTO records (key, record) VALUES (?, ?)", rows)
        db.commit()
    finally:
        db.close()


async def _scan(client: httpx.AsyncClient, url: str) -> tuple[float, int, float]:
    """Seconds, keys seen, and the slowest page (ms), paging with ``after``."""
    began, after, seen, slowest = time.monotonic(), "", 0, 0.0
    while True:
        start = time.monotonic()
        page = (await client.get(f"{url}/kv", params={"limit": PAGE, "after": after})).json()
        slowest = max(slowest, time.monotonic() - start)
        seen += len(page["keys"])
        if page["next"] is None:
            return round(time.monotonic() - began, 1), seen, round(slowest * 1000, 1)
        after = page["next"]


async def _live(keys: int, root: Path) -> dict[str, object]:
    cluster = Cluster(root, nodes=1)
    row: dict[str, object] = {"mode": "live", "keys": keys}
    began = time.monotonic()
    write_data_dir(root / "n1", keys)
    row["write_data_dir_s"] = round(time.monotonic() - began, 1)
    probe = StallProbe(root, cluster, keys)
    try:
        headers = {"Authorization": f"Bearer {cluster.key}"}
        async with httpx.AsyncClient(headers=headers, timeout=120.0, trust_env=False) as client:
            url = cluster.url(0)
            probe.phase("restart")
            cluster.start(0)
            first = asyncio.ensure_future(wait_for(lambda: answers(client, url, f"/kv/{_key(keys // 2)}")))  # fmt: skip
            row["restart_health_ok_s"] = round(await wait_for(lambda: answers(client, url, "/health", "ok"), step_s=0.1), 1)  # fmt: skip
            row["restart_first_read_s"] = round(await first, 2)
            probe.phase("idle")
            await asyncio.sleep(IDLE_S)
            probe.phase("scan")
            row["scan_s"], row["scanned"], row["slowest_page_ms"] = await _scan(client, url)
            probe.phase(None)
            row["rss_mib"] = cluster.rss_mib()
        probe.stop()
        row["stalls"] = probe.table()
        return row
    finally:
        probe.stop()
        cluster.stop(0)


def live(keys: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="rumor-scan-"))
    try:
        return asyncio.run(_live(keys, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.scan_bench")
    parser.add_argument("mode", nargs="?", default="both", choices=["inproc", "live", "both"])
    parser.add_argument("--keys", type=int, default=10_000_000)
    args = parser.parse_args(argv)
    if args.mode in ("inproc", "both"):
        print(json.dumps(inproc(args.keys)), flush=True)
    if args.mode in ("live", "both"):
        row = live(args.keys)
        stalls = row.pop("stalls", [])
        print(json.dumps(row), flush=True)
        print_table(stalls)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
