"""An in-memory cluster of real ``core.Node``s: a dict of nodes and a queue of messages.

Time advances in fixed steps; every step ticks each node and delivers the messages sent
in the previous step (a one-step network delay). Loss and partitions decide per message,
from the harness's own seeded ``random.Random``, so a seed fixes the whole trace.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Iterable

from rumordb.core import Node, NodeConfig, Output, Record


class Cluster:
    def __init__(
        self,
        n: int,
        seed: int,
        config: NodeConfig | None = None,
        loss: float = 0.0,
        step_s: float = 0.05,
    ) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.step_s = step_s
        self.loss = loss
        self.ids = [f"n{i}" for i in range(1, n + 1)]
        self.nodes = {
            nid: Node(
                nid, f"mem://{nid}", rng=random.Random(f"{seed}/{nid}"), now=0.0, config=config
            )
            for nid in self.ids
        }
        for a in self.ids:
            for b in self.ids:
                if a != b:
                    self.nodes[a].join(b, f"mem://{b}", 0, 0.0)
        self.queue: deque[tuple[str, str, bytes]] = deque()
        self.groups: list[set[str]] | None = None
        self.down: set[str] = set()
        self.trace = hashlib.sha256()
        self.delivered = 0

    # --- faults ------------------------------------------------------------------
    def partition(self, *groups: Iterable[str]) -> None:
        self.groups = [set(g) for g in groups]

    def heal(self) -> None:
        self.groups = None

    def connected(self, a: str, b: str) -> bool:
        if a in self.down or b in self.down:
            return False
        if self.groups is None:
            return True
        return any(a in g and b in g for g in self.groups)

    # --- driving -----------------------------------------------------------------
    def send(self, source: str, out: Output) -> None:
        for target, data in out.messages:
            self.trace.update(f"{self.now:.3f}|{source}>{target}|".encode() + data)
            self.queue.append((source, target, data))

    def put(self, nid: str, key: str, value: bytes) -> Record | None:
        result = self.nodes[nid].put(key, value, "application/octet-stream", self.now)
        self.send(nid, result.output)
        self.send(nid, self.nodes[nid].flush(self.now))
        return result.record

    def delete(self, nid: str, key: str) -> Record | None:
        result = self.nodes[nid].delete(key, self.now)
        self.send(nid, result.output)
        self.send(nid, self.nodes[nid].flush(self.now))
        return result.record

    def step(self) -> None:
        self.now = round(self.now + self.step_s, 6)
        pending = len(self.queue)
        for _ in range(pending):
            source, target, data = self.queue.popleft()
            if not self.connected(source, target) or self.rng.random() < self.loss:
                continue
            self.delivered += 1
            self.send(target, self.nodes[target].receive(data, self.now))
        for nid in self.ids:
            if nid not in self.down:
                self.send(nid, self.nodes[nid].tick(self.now))

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / self.step_s)):
            self.step()

    # --- observing ---------------------------------------------------------------
    def state(self, nid: str) -> dict[str, tuple[int, str, bool, bytes]]:
        return {
            key: (r.hlc, r.origin, r.tombstone, r.value) for key, r in self.nodes[nid].view.items()
        }

    def live_data(self, nid: str) -> dict[str, bytes]:
        node = self.nodes[nid]
        return {k: r.value for k, r in node.view.items() if not r.tombstone}

    def converged(self) -> bool:
        first = self.live_data(self.ids[0])
        return all(self.live_data(nid) == first for nid in self.ids[1:])

    def run_until_converged(self, max_seconds: float) -> float:
        start = self.now
        while self.now - start < max_seconds:
            self.step()
            if self.converged():
                return self.now - start
        raise AssertionError(f"not converged within {max_seconds} s of simulated time")
