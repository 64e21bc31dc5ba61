"""When digest work is done: in bounded slices on ticks, and when a digest may be offered.

A key's change is folded into the digest tree lazily. A little pending work stays for
anti-entropy to fold (rewrites of one key coalesce); a backlog (a restart, a ring change,
heavy writes) is worked off on ticks, ``digest_fold_batch`` keys a slice, the next slice
due ``FOLD_SLICE_GAP_S`` later so the driver serves requests in between, and no tick and
no anti-entropy step takes long. A digest is offered to a peer only once at most one
slice is pending: a half-built digest would answer wrongly, so the session ends instead.
Sharded, each peer gets a digest over the keys both nodes own.
"""

from __future__ import annotations

import math

from rumordb.core.digest import Digest
from rumordb.core.membership import MemberTable
from rumordb.core.placement import Placement
from rumordb.core.store import Store

FOLD_SLICE_GAP_S = 0.001  # between digest fold slices: the driver serves in between


class DigestFolding:
    __slots__ = ("_members", "_placement", "_store", "batch", "due_at")

    def __init__(
        self, store: Store, placement: Placement, members: MemberTable, batch: int
    ) -> None:
        self._store, self._placement, self._members = store, placement, members
        self.batch = batch
        self.due_at = math.inf  # when the next slice is due (a node deadline)

    def backlogged(self) -> bool:
        """Whether more keys wait than anti-entropy folds itself: ticks work them off."""
        return self._store.pending_folds() > self.batch // 2

    def work(self, now: float) -> None:
        """One slice of folding if a backlog is pending; schedules the next one."""
        if not self.backlogged():  # every tick: the common, cheap case
            self.due_at = math.inf
            return
        left = self.fold_slice()
        self.due_at = now + FOLD_SLICE_GAP_S if left else math.inf

    def fold_slice(self) -> int:
        """Fold one slice (``batch`` keys) now; returns how many keys are left."""
        placement = self._placement
        owners_of = placement.shared_owners() if placement.sharding else placement.owners
        return self._store.fold(self.batch, owners_of, placement.node_id)

    def pending(self) -> int:
        """Keys still to fold into some digest (``Store.pending_folds``)."""
        return self._store.pending_folds()

    def digest_for(self, peer: str) -> Digest | None:
        """The whole digest, or (sharded) one over the keys both nodes own; None while
        more than one slice of keys is pending (after a restart or a ring change)."""
        placement = self._placement
        if not placement.sharding:
            return self._store.ready_digest(placement.owners, placement.node_id, self.batch)
        owners_of = placement.shared_owners()
        epoch = self._members.epoch
        return self._store.ready_digest_for(peer, epoch, owners_of, placement.node_id, self.batch)
