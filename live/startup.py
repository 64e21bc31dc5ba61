"""The start-up load on the event loop: the stored records streamed into the node in slices.

The reserved keyspace (the keyring: the gate needs it) and the log are loaded with the
node, before it serves anything; the rest streams from SQLite here, with the node
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
import time
from collections.abc import Iterator

from rumordb.core import Record, StartupLoad
from rumordb.core.keyring import RESERVED_PREFIX
from rumordb.live.storage import Storage

LOAD_STEP_ROWS = 200
LOAD_SLICE_S = 0.005


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
