"""Convergence, measured from outside the nodes.

For every key the checker knows every version ever issued, so it knows the *latest* one:
the winner among them all under ``core.merge`` (the same LWW order the nodes use, folded
over the versions as they are issued). A write issued by a node that
had purged the latest tombstone is the one exception: it follows the delete the writer
saw, so it becomes the latest (the core starts its vector clock afresh there). A node *holds the latest* version of a key when
its stored version is that one (same ``(hlc, origin)``), or when the latest is a
tombstone and the node has no record at all: a read there answers 404, exactly as the
latest says. Only that observable predicate is used, so a live cluster can be measured
the same way (GET every key on every node) and the two curves overlaid.

Which nodes count: the nodes that are up (a crashed node cannot answer); with sharding
on, only the key's owners that are up. The checker is incremental: the driver reports
every stored version, purge, crash and restart, so the fraction of nodes holding the
latest is known at every instant and the moment of convergence is exact, not sampled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from rumordb.core import Record, merge
from rumordb.core.record import version_of

Version = tuple[int, str]


@dataclass(slots=True)
class WriteStats:
    """What happened to client writes at the moment they were issued."""

    writes: int = 0
    deletes: int = 0
    causal: int = 0  # the writer held the latest version: its write descends from it
    superseded_at_issue: int = 0  # lost at once to a concurrent, already issued version
    causal_lost: int = 0  # a causal write that did not become the latest: must stay 0
    reads: int = 0
    stale_reads: int = 0
    lists: int = 0
    incomplete_lists: int = 0  # a listing that missed a live key or showed a deleted one


@dataclass(slots=True)
class KeyState:
    latest: Record
    issued_at: float
    holders: set[str] = field(default_factory=set)
    missing: int = 0  # counted nodes that do not hold the latest
    complete_at: float | None = None  # when missing last dropped to 0 for this version


class Convergence:
    """Who holds the latest version of every key, updated event by event."""

    def __init__(
        self,
        node_ids: Iterable[str],
        records_of: Callable[[str], Mapping[str, Record]],
        owners: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.node_ids = list(node_ids)
        self.up: set[str] = set(self.node_ids)
        self.behind = dict.fromkeys(self.node_ids, 0)  # keys whose latest a node lacks
        self._records_of = records_of
        self._owners = owners
        self._owner_cache: dict[str, frozenset[str]] = {}
        self.keys: dict[str, KeyState] = {}
        self.incomplete = 0
        self.complete_since: float | None = 0.0  # nothing written: trivially converged
        self.dissemination_s: list[float] = []  # per version: issue -> held by all counted
        self.stats = WriteStats()

    # --- who counts --------------------------------------------------------------------
    def owners_of(self, key: str) -> frozenset[str] | None:
        if self._owners is None:
            return None
        cached = self._owner_cache.get(key)
        if cached is None:
            cached = self._owner_cache[key] = frozenset(self._owners(key))
        return cached

    def counted(self, node: str, key: str) -> bool:
        if node not in self.up:
            return False
        owners = self.owners_of(key)
        return owners is None or node in owners

    def counted_total(self, key: str) -> int:
        owners = self.owners_of(key)
        if owners is None:
            return len(self.up)
        return sum(1 for node in owners if node in self.up)

    # --- events ------------------------------------------------------------------------
    def issued(self, key: str, record: Record, writer_had: Record | None, now: float) -> bool:
        """A client write was accepted; returns whether it became the latest version.

        ``writer_had`` is what the writing node held for the key: its stored version, or
        the tombstone it purged (a node that purged a tombstone still *observes* the
        delete: its next write of the key follows the delete, whatever its clock says).
        """
        stats = self.stats
        stats.writes += 1
        stats.deletes += record.tombstone
        state = self.keys.get(key)
        previous = state.latest if state is not None else None
        causal = _same(writer_had, previous)
        stats.causal += causal
        winner = merge(previous, record)
        if causal and previous is not None and _ends(previous):
            winner = record  # re-created after the delete (or expiry) the writer had seen
        if winner is not record:
            stats.superseded_at_issue += 1
            stats.causal_lost += causal
            return False
        self._new_latest(key, record, now)
        return True

    def listed(self, keys: list[str], limit: int) -> bool:
        """A client listing of every key; returns True when it was not the latest truth.

        The truth is every key whose latest version is live, up to the page's last key
        when the page is full: a listing is eventually consistent, like a read.
        """
        self.stats.lists += 1
        bound = keys[-1] if len(keys) >= limit else None
        # A value with a TTL is left out: whether it expired depends on the node's clock.
        expiring = {key for key, state in self.keys.items() if state.latest.expires}
        live = {
            key
            for key, state in self.keys.items()
            if not _ends(state.latest) and (bound is None or key <= bound)
        }
        incomplete = live != set(keys) - expiring
        self.stats.incomplete_lists += incomplete
        return incomplete

    def stored(self, node: str, key: str, record: Record, now: float) -> None:
        state = self.keys.get(key)
        if state is not None:
            self._set(node, key, state, version_of(record) == version_of(state.latest), now)

    def purged(self, node: str, key: str, now: float) -> None:
        state = self.keys.get(key)
        if state is not None:
            # A purged expiring value: every node derived and dropped its tombstone.
            self._set(node, key, state, _ends(state.latest), now)

    def wiped(self, node: str, now: float) -> None:
        """The node lost every record (crash with its disk)."""
        for key, state in self.keys.items():
            self._set(node, key, state, state.latest.tombstone, now)

    def set_up(self, node: str, up: bool, now: float) -> None:
        if (node in self.up) == up:
            return
        if up:
            self.up.add(node)
        else:
            self.up.discard(node)
        for key, state in self.keys.items():
            owners = self.owners_of(key)
            if owners is None or node in owners:
                self._recount(key, state, now)

    def read(self, node: str, key: str) -> bool:
        """A client read at ``node``; returns True when it saw a stale version."""
        self.stats.reads += 1
        stale = key in self.keys and node not in self.keys[key].holders
        self.stats.stale_reads += stale
        return stale

    # --- reading -----------------------------------------------------------------------
    def holds(self, node: str, key: str) -> bool:
        state = self.keys.get(key)
        return state is None or node in state.holders

    def fractions(self) -> list[float]:
        """Per key: the fraction of counted nodes holding its latest version."""
        found = []
        for key, state in self.keys.items():
            total = self.counted_total(key)
            found.append(1.0 if total == 0 else 1.0 - state.missing / total)
        return found

    def nodes_current(self) -> float:
        """The fraction of up nodes holding the latest version of every key they serve."""
        if not self.up:
            return 1.0
        return sum(1 for node in self.up if self.behind[node] == 0) / len(self.up)

    @property
    def complete(self) -> bool:
        return self.incomplete == 0

    # --- bookkeeping -------------------------------------------------------------------
    def _new_latest(self, key: str, record: Record, now: float) -> None:
        state = self.keys.get(key)
        owners = self.owners_of(key)
        relevant = self.node_ids if owners is None else sorted(owners)
        before = set(relevant) if state is None else state.holders
        if state is None:
            state = self.keys[key] = KeyState(record, now)
        else:
            state.latest, state.issued_at, state.complete_at = record, now, None
        holders: set[str] = set()
        if record.tombstone:
            # Nodes that never stored the key already answer as the tombstone does.
            holders = {node for node in relevant if key not in self._records_of(node)}
        state.holders = holders
        behind = self.behind
        for node in relevant:
            behind[node] += (node in before) - (node in holders)
        self._recount(key, state, now)

    def _set(self, node: str, key: str, state: KeyState, holds: bool, now: float) -> None:
        if (node in state.holders) == holds:
            return
        if holds:
            state.holders.add(node)
        else:
            state.holders.discard(node)
        owners = self.owners_of(key)
        if owners is None or node in owners:
            self.behind[node] += -1 if holds else 1
        if self.counted(node, key):
            self._adjust(state, state.missing + (-1 if holds else 1), now)

    def _recount(self, key: str, state: KeyState, now: float) -> None:
        owners = self.owners_of(key)
        counted = self.up if owners is None else owners & self.up
        self._adjust(state, sum(1 for node in counted if node not in state.holders), now)

    def _adjust(self, state: KeyState, missing: int, now: float) -> None:
        # A new key starts at missing == 0 and is not yet counted in ``incomplete``.
        self.incomplete += (missing > 0) - (state.missing > 0)
        state.missing = missing
        if missing == 0 and state.complete_at is None:
            state.complete_at = now
            self.dissemination_s.append(now - state.issued_at)
        if self.incomplete:
            self.complete_since = None
        elif self.complete_since is None:
            self.complete_since = now


def _ends(record: Record) -> bool:
    """A tombstone, or a value that becomes one when its TTL runs out."""
    return record.tombstone or record.expires != 0


def _same(a: Record | None, b: Record | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return version_of(a) == version_of(b)


def divergent_keys(
    states: Mapping[str, Mapping[str, Record]],
    owners: Callable[[str], list[str]] | None = None,
) -> list[str]:
    """Keys on which the given nodes' observable states differ (tombstone == absent).

    ``states`` maps node id -> its records; with ``owners``, only a key's owners among
    the given nodes are compared.
    """
    keys = sorted({key for records in states.values() for key in records})
    divergent: list[str] = []
    for key in keys:
        seen: set[Version | None] = set()
        for node, records in states.items():
            if owners is not None and node not in owners(key):
                continue
            record = records.get(key)
            seen.add(None if record is None or record.tombstone else version_of(record))
        if len(seen) > 1:
            divergent.append(key)
    return divergent
