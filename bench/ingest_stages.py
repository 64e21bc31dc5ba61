"""Where a batch ingest's CPU goes, stage by stage, on an origin and on a replica.

``bench.ingest_bench`` measures whole node processes; this runs the same code in one
process, without HTTP, and times each stage of one node's share of an ingest with
``time.thread_time`` (CPU of this thread only, so other work on a shared machine does
not count, though it still slows caches down):

* origin: decode the client batch (``live.bulk.decode_batch``), build the commands,
  ``Node.write_batch``, queue the persist, ``Node.flush`` (the push, encoded), the
  results and the reply, and the push sealed for one peer;
* replica: open the envelope, ``Node.receive`` (decode, admit, merge), queue the persist;
* both: the digest fold on ticks (as ``core.digest_folding`` paces it, then the rest once
  the batches are in: work an ingest leaves behind is part of its cost), and the SQLite
  writer thread (group commits and log compaction, ``live.storage``; its CPU from
  ``pthread_getcpuclockid``; compaction timed apart).

Three nodes are members (so a push goes to two peers); the origin's push to one of them
is delivered to the replica. Time is a fake clock advancing 0.5 ms a step. Figures are
printed, never asserted. Run: ``python -m bench.ingest_stages [--keys N] [--msgpack]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.ingest_bench import batch_bodies
from rumordb.core import Node, WriteCommand, WriteResult
from rumordb.live.bulk import Bulk, decode_batch, encoded
from rumordb.live.gossip_client import Envelope, open_envelope, seal_envelope
from rumordb.live.settings import Settings
from rumordb.live.storage import Storage
from rumordb.live.wire import Signer

SECRET = "bench-ingest-stages-0123456789abcdef"
STEP_S = 0.0005


class Stages:
    def __init__(self) -> None:
        self.cpu_s: dict[str, float] = {}

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started = time.thread_time()
        try:
            yield
        finally:
            self.cpu_s[name] = self.cpu_s.get(name, 0.0) + time.thread_time() - started


def compaction_timer(storage: Storage, stages: Stages, name: str) -> None:
    """Time ``storage``'s compactions (in its writer thread) under ``name``."""
    compact = storage._compact

    def timed() -> None:
        started = time.thread_time()
        try:
            compact()
        finally:
            stages.cpu_s[name] = stages.cpu_s.get(name, 0.0) + time.thread_time() - started

    storage._compact = timed  # type: ignore[method-assign]


def thread_cpu_s(storage: Storage) -> float:
    assert storage._thread is not None and storage._thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(storage._thread.ident))


async def run(keys: int, binary: bool, tmp: Path) -> tuple[Stages, int]:
    settings = Settings(cluster_secret=SECRET, admin_key=SECRET[::-1])
    config = settings.node_config()
    clock = [time.time()]

    def now() -> float:
        clock[0] += STEP_S
        return clock[0]

    start = clock[0]
    nodes = [Node(f"n{i}", f"http://n{i}", rng=random.Random(i), now=start, config=config)
             for i in (1, 2, 3)]  # fmt: skip
    for a in nodes:
        for b in nodes:
            if a is not b:
                a.join(b.node_id, f"http://{b.node_id}", 0, start)
    origin, replica = nodes[0], nodes[1]
    storages = [Storage.open(tmp / name, "sync") for name in ("origin", "replica")]
    stages = Stages()
    for storage, side in zip(storages, ("origin", "replica"), strict=True):
        compaction_timer(storage, stages, f"{side}: SQLite writer, of which log compaction")
    signer = Signer(SECRET)
    bulk = Bulk(None, settings.max_value_bytes, config.max_key_bytes)  # type: ignore[arg-type]
    timed = stages.timed
    for body in batch_bodies("s", keys, 1000, binary=binary):
        t = now()
        with timed("origin: decode the batch"):
            items = decode_batch(body, binary)
        with timed("origin: commands"):
            commands = bulk.commands(items, int(t * 1000), False)
        with timed("origin: Node.write_batch"):
            written = origin.write_batch(commands, t)
        with timed("origin: persist (queue)"):
            persisting = storages[0].persist(written.output.writes, [])
        await persisting
        with timed("origin: Node.flush (the push)"):
            out = origin.flush(now())
        with timed("origin: results and reply"):
            results = answer(bulk, commands, list(written.results))
            encoded(200, {"results": results, "applied": len(results)}, binary)
        messages = [data for target, data in out.messages if target == replica.node_id]
        with timed("origin: seal the push (one peer)"):
            frame = seal_envelope(signer, Envelope(origin.node_id, messages), now(), "n2")
        with timed("replica: open the envelope"):
            envelope = open_envelope(signer, frame, now(), "n2")
        with timed("replica: Node.receive"):
            received = [replica.receive(message, now()) for message in envelope.messages]
        with timed("replica: persist (queue)"):
            jobs = [storages[1].persist(r.writes, r.purges, durable=False) for r in received]
        for job in jobs:
            await job
        for node, side in ((origin, "origin"), (replica, "replica")):
            with timed(f"{side}: digest fold (ticks)"):
                fold_on_ticks(node, now)
    for node, side in ((origin, "origin"), (replica, "replica")):
        with timed(f"{side}: digest fold (ticks)"):
            node.store.digest(node.placement.owners, node.node_id)  # the rest, as later ticks
    for storage, side in zip(storages, ("origin", "replica"), strict=True):
        # The writer's clock ends with its thread: read it, then add what closing costs
        # (it compacts what the log still holds, as an idle writer does).
        name = f"{side}: SQLite writer, of which log compaction"
        writer_s, compacted_s = thread_cpu_s(storage), stages.cpu_s.get(name, 0.0)
        await storage.close()
        stages.cpu_s[f"{side}: SQLite writer thread"] = (
            writer_s + stages.cpu_s.get(name, 0.0) - compacted_s
        )
    return stages, keys


def answer(bulk: Bulk, commands: list[WriteCommand], answers: list[WriteResult]) -> list[object]:
    """The batch's results, as ``Bulk.batch`` makes them (``result`` item by item in a
    tree before ``Bulk.results``: this bench also runs on older trees, alternated)."""
    if hasattr(bulk, "results"):
        return list(bulk.results(commands, list(answers)))
    return [bulk.result(c, a) for c, a in zip(commands, answers, strict=True)]


def fold_on_ticks(node: Node, now: Callable[[], float]) -> None:
    """Tick while the fold has more than half a slice pending (``DigestFolding.work``)."""
    while node.store.pending_folds() > node.folding.batch // 2:
        node.tick(now())


def report(stages: Stages, keys: int, binary: bool) -> None:
    body = "MessagePack" if binary else "JSON"
    print(f"batch ingest stages, {keys} keys, {body} batches of 1000, 100-byte values "
          f"(CPU us per key, this thread / the writer thread):")  # fmt: skip
    for side in ("origin", "replica"):
        total = 0.0
        for name, cpu_s in stages.cpu_s.items():
            if not name.startswith(side):
                continue
            us = cpu_s / keys * 1e6
            print(f"  {name:58s} {us:6.2f}")
            if "of which" not in name:
                total += us
        print(f"  {side + ': total':58s} {total:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--msgpack", action="store_true", help="MessagePack batch bodies")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rumor-stages-") as tmp:
        stages, keys = asyncio.run(run(args.keys, args.msgpack, Path(tmp)))
    report(stages, keys, args.msgpack)


if __name__ == "__main__":
    main()
