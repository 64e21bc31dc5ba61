"""A node's start: its data directory opened, then its stored records streamed in slices.

``open_node`` opens the storage and builds the node: its id (configured, else the one
kept in the data directory), its incarnation bumped and persisted before anything is
served (``core.membership.restart_incarnation``: a restarted node's heartbeats override
whatever the cluster remembers of its previous life), the purged-version memory, and the
reserved keyspace (the keyring: the gate needs it) with the log. The rest of the stored
records streams from SQLite through ``StartupLoader``, on the event loop, with the node
already listening, so a restart with millions of keys answers at once. A slice is steps
of ``LOAD_STEP_ROWS`` records (read, decoded, indexed: ~1 ms each) until ``LOAD_SLICE_S``
has passed; then the loop serves what waits (single-key reads: a key not loaded yet is
read from the disk, ``core.startup.read_stored``) before the next slice. A read thus
waits at most about one slice behind the load, also on a busy machine (2 000-row slices
took ~100 ms of wall time each at load average 9, and a read from disk waits for 3
turns). Nothing else changes the store while it loads: the runner serves writes,
listings, peers' gossip and ticks only once the last slice is in.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from rumordb.core import Node, Record, StartupLoad, restart_incarnation
from rumordb.core.keyring import RESERVED_PREFIX
from rumordb.live.settings import load_or_create_node_id
from rumordb.live.storage import Storage

if TYPE_CHECKING:
    from rumordb.live.settings import Settings

LOAD_STEP_ROWS = 200
LOAD_SLICE_S = 0.005


class Opened(NamedTuple):
    storage: Storage
    node: Node


def open_node(settings: Settings, url: str, now: float, mono: float) -> Opened:
    """The storage of ``settings.data_dir`` and the node built from it (reachable at
    ``url``; wall time ``now``, monotonic ``mono``), holding the reserved keyspace."""
    s = settings
    storage = Storage.open(Path(s.data_dir), s.durability)
    try:
        node_id = resolve_node_id(s)
        storage.set_meta("node_id", node_id)
        incarnation = restart_incarnation(int(storage.get_meta("incarnation") or "0"))
        storage.set_meta("incarnation", str(incarnation))
        node = Node(
            node_id,
            url,
            rng=random.Random(int.from_bytes(os.urandom(8), "big")),
            now=now,
            config=s.node_config(),
            incarnation=incarnation,
            records=storage.stream(within=RESERVED_PREFIX),  # packed into the store as read
            mono=mono,
            purged=storage.load_purged(),
        )
    except BaseException:
        storage.close_sync()  # nobody else holds it yet: release the data directory
        raise
    return Opened(storage, node)


def resolve_node_id(settings: Settings) -> str:
    """The configured id, else the stable one kept in the data dir (created the first time)."""
    if settings.node_id:
        return settings.node_id
    return load_or_create_node_id(Path(settings.data_dir))


class StartupLoader:
    """One start-up load of every stored record outside the reserved keyspace."""

    __slots__ = ("_rows", "_startup", "keys")

    def __init__(self, startup: StartupLoad, storage: Storage) -> None:
        self._startup = startup
        self._rows: Iterator[tuple[str, Record]] = storage.stream(
            without=RESERVED_PREFIX, chunk_rows=LOAD_STEP_ROWS
        )
        self.keys = 0  # the keys the node holds so far (the reserved ones too)

    def load_slice(self) -> bool:
        """Load steps of the stored records for ``LOAD_SLICE_S``; True while more may follow."""
        until = time.perf_counter() + LOAD_SLICE_S
        while True:
            chunk = list(itertools.islice(self._rows, LOAD_STEP_ROWS))
            self.keys = self._startup.load(chunk)
            if len(chunk) < LOAD_STEP_ROWS:
                return False
            if time.perf_counter() >= until:
                return True

    async def load_rest(self) -> None:
        """Slice after slice until every record is in, serving the loop in between. A
        record that cannot be read raises: the node cannot serve what it cannot read."""
        while self.load_slice():
            await asyncio.sleep(0)  # reads (and probes) are served between slices
