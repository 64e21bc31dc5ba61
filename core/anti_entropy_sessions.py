"""This node's side of anti-entropy sessions: what it answers each step with, and counts.

``core.anti_entropy`` holds the steps as pure functions of one message and a digest;
this module puts them to work for one node: it starts a session with one sampled peer
per interval, answers each step from the digest it shares with that peer
(``core.digest_folding``: none while a backlog is folding, which ends the session rather
than answering wrongly), sends the records asked for, and counts sessions started,
records sent and exchanges completed. A session ends here when the digests agree or
records arrive; merging those records is the node's job (``Replica.merge``).

A leaf phase bounded by ``max_entries``/``max_keys`` resumes: the node that listed the
differing leaves keeps them (``anti_entropy.Listing``, one per peer, at most
``MAX_LISTINGS`` peers) and sends the next chunk when the peer's answer says where it
stopped. Hostile answers cannot replay it: a listing only moves forward.

A leaf phase in progress is let run: while a listing with a peer moved forward in this
interval or the last one, no session with that peer starts here and a new one from it
(its root step) goes unanswered. A new session used to replace the listing, so with
more differing leaves than a few round trips carry in one interval (after a lossy
ingest at 1M keys: 110 000 missing keys) every interval began the repair again from
the first leaf, and a 1M-key node repaired ~160 keys a second. A listing that stops
moving (a lost message) stops protecting itself one interval later.

A leaf phase goes on after the records it brought. Merging a step's records (up to
``max_keys``) leaves them to fold, and a digest is offered only once at most one fold
slice is pending (``core.digest_folding``): with the live fold slice (500 keys) smaller
than a step's records (2 000), every chunk of a repair used to end its session, and the
next chunk waited for a new session an interval or two later (a 1 % repair at 1M keys:
five chunks in 6 s). A step now folds a backlog of at most ``max_keys`` plus one slice
itself, a slice at a time (each a slice of the step when sliced), before it answers;
a larger backlog (a restart, a ring change) still ends the session, and ticks fold it.

One long repair at a time. While a leaf phase of more than one chunk, listed here or
answered here, moved in this interval or the last, this node starts no session and
answers no new session's root, from any peer: two peers repairing the same missing keys
at once sent each record twice (a 1 % repair at 1M keys on 3 nodes: 3.6x the missing
records' bytes). A phase of one chunk, the common case, blocks nothing. A peer's long phases keep the
others out for at most ``MAX_REPAIR_INTERVALS`` of every twice that many intervals, so a
peer that paces a phase forever (or starts one after another) cannot shut them out.

Slices. A wide step (after a restart or an ingest: tens of thousands of children to
compare and hash, thousands of leaves or records) is work the driver must not do in
one piece (measured at 1M keys: 110-140 ms of CPU for one step). With
``slice_items`` set, each step is a generator (``anti_entropy.Work``) doing at most about
that many items per slice: the first slice runs in the call that received the step
(most steps need no more), the rest one slice per tick (``work``, due at once:
``due_at``), and the step's messages leave with the tick that ends it. At most
``MAX_JOBS`` steps are in progress; beyond, a new one is dropped (its session ends, the
next interval starts another: dropping the oldest instead let sessions started every
interval starve each other), and no session starts here while any is in progress. The
answer does not depend on the slicing; the digest may change between slices (writes
keep arriving), as it may between the steps of a session.
"""

from __future__ import annotations

import math
import random

from rumordb.core import anti_entropy
from rumordb.core.anti_entropy import Work
from rumordb.core.counters import Counters
from rumordb.core.digest import Digest
from rumordb.core.digest_folding import FOLD_SLICE_GAP_S, DigestFolding
from rumordb.core.membership import MemberTable
from rumordb.core.messages import DigestStep, LeafEntries, SyncRecords, Update
from rumordb.core.outbox import Outbox
from rumordb.core.output import Output
from rumordb.core.replica import Replica

MAX_LISTINGS = 8  # peers with a resumable leaf phase (the oldest is dropped beyond)
MAX_JOBS = 8  # steps handled in slices at once (a new one is dropped beyond)
MAX_REPAIR_INTERVALS = 30  # a peer's long leaf phases keep others out this long at most
MAX_PHASES = 64  # peers whose long leaf phases are remembered (the oldest dropped beyond)
STEP_SLICE_GAP_S = FOLD_SLICE_GAP_S  # between two slices of a step: the driver serves

Step = DigestStep | LeafEntries | SyncRecords


class AntiEntropySessions:
    __slots__ = (
        "_counters", "_folding", "_interval", "_jobs", "_listings", "_members", "_outbox",
        "_pacing", "_phases", "_replica", "_rng", "due_at", "max_entries", "max_keys",
        "node_id", "session", "slice_items",
    )  # fmt: skip

    def __init__(
        self, node_id: str, members: MemberTable, folding: DigestFolding, replica: Replica,
        outbox: Outbox, counters: Counters, rng: random.Random, *, max_entries: int,
        max_keys: int, pacing: anti_entropy.Pacing | None = None, slice_items: int = 0,
    ) -> None:  # fmt: skip
        self.node_id, self._members, self._folding = node_id, members, folding
        self._replica = replica
        self._outbox, self._counters, self._rng = outbox, counters, rng
        self.max_entries, self.max_keys = max_entries, max_keys
        self.session = 0  # sessions started here: each one's id
        self._interval = 0  # intervals so far (``start`` calls): a listing's age
        self._pacing = pacing or anti_entropy.Pacing(0, 0)  # (0, 0): never waits
        self._listings: dict[str, anti_entropy.Listing] = {}  # peer -> its leaf phase
        self._phases: dict[str, list[int]] = {}  # peer -> [began, moved]: long leaf phases
        self.slice_items = slice_items  # work per slice of a step (0: each step at once)
        # steps in slices, oldest first (at most MAX_JOBS: a list, not a 600-byte deque)
        self._jobs: list[tuple[Output, Work[None]]] = []
        self.due_at = math.inf  # when the next slice is due (a node deadline)

    def start(self, out: Output) -> None:
        """Open a session with one sampled peer (counted even if no digest is ready yet),
        unless an ingest is under way (``anti_entropy.Pacing``): the pushes carry what a
        session would find missing; or a leaf phase with the sampled peer is under way."""
        self._interval += 1
        if not self._pacing.due(self._counters.updates_applied + self._replica.versions_written):
            return
        if self._jobs:  # still working off steps: a new session would only queue behind them
            return
        sample = self._members.sample_peers(self._rng, 1)
        if not sample:
            return
        peer = sample[0]
        if self._listing_moving(peer):  # let it run: a new session would start it again
            return
        if self._repairing():  # a long leaf phase with another peer: one repair at a time
            return
        self.session += 1
        self._counters.anti_entropy_sessions += 1
        digest = self._folding.digest_for(peer)
        if digest is None:  # still folding (a restart): the next interval tries again
            return
        self._outbox.send(out, [peer], anti_entropy.start(self.node_id, self.session, digest))

    def _listing_moving(self, peer: str) -> bool:
        """Whether the leaf phase with ``peer`` moved forward in this interval or the last."""
        listing = self._listings.get(peer)
        return listing is not None and listing.moved >= self._interval - 1

    def _repairing(self) -> bool:
        """Whether a leaf phase of more than one chunk, listed here or answered here,
        moved forward in this interval or the last, within its peer's protected share."""
        now = self._interval
        for peer, (began, moved) in list(self._phases.items()):
            if began <= now - 2 * MAX_REPAIR_INTERVALS and moved < now - 1:
                del self._phases[peer]  # long over: forgotten
        return any(
            moved >= now - 1 and began > now - MAX_REPAIR_INTERVALS
            for began, moved in self._phases.values()
        )

    def _phase_moved(self, peer: str) -> None:
        """A long leaf phase with ``peer`` moved. It keeps other sessions out for at most
        ``MAX_REPAIR_INTERVALS`` of every twice that many intervals, however the peer
        paces it: a peer that never ends its phases cannot keep the others out."""
        now = self._interval
        phase = self._phases.get(peer)
        if phase is None or phase[0] <= now - 2 * MAX_REPAIR_INTERVALS:
            self._phases.pop(peer, None)
            while len(self._phases) >= MAX_PHASES:
                del self._phases[next(iter(self._phases))]
            self._phases[peer] = phase = [now, now]
        phase[1] = now

    def _phase_ended(self, peer: str) -> None:
        phase = self._phases.get(peer)
        if phase is not None:
            phase[1] = -1  # protects nothing more; when it began still counts

    def resumable(self) -> int:
        """Peers with a leaf phase this node may still resume (at most ``MAX_LISTINGS``)."""
        return len(self._listings)

    def receive(self, out: Output, message: Step, clock: float) -> None:
        """Handle one step: at once, or (``slice_items``) its first slice now and the rest
        on ticks (``work``), whose output then carries its messages."""
        if not self.slice_items:
            anti_entropy.drain(self._handler(out, message))
            return
        job_out = Output()
        job = self._handler(job_out, message)
        if _advance(job):  # one slice was enough (most steps: in-sync replicas, small repairs)
            out.extend(job_out)
            return
        if len(self._jobs) >= MAX_JOBS:  # this one is dropped: its session just ends
            return  # (not the oldest: that would let new sessions starve every old one)
        self._jobs.append((job_out, job))
        self.due_at = min(self.due_at, clock)

    def work(self, out: Output, clock: float) -> None:
        """One slice of the oldest step in progress; its messages once it is done."""
        if self._jobs:
            job_out, job = self._jobs[0]
            if _advance(job):
                del self._jobs[0]
                out.extend(job_out)
        self.due_at = clock + STEP_SLICE_GAP_S if self._jobs else math.inf

    def in_progress(self) -> int:
        """Steps being handled in slices (at most ``MAX_JOBS``)."""
        return len(self._jobs)

    def _handler(self, out: Output, message: Step) -> Work[None]:
        if isinstance(message, DigestStep):
            return self._on_digest(out, message)
        if isinstance(message, LeafEntries):
            return self._on_leaf_entries(out, message)
        return self._on_records(out, message)

    def _digest_for(self, peer: str) -> Work[Digest | None]:
        """The digest to answer ``peer`` from, folding first a backlog no larger than
        what one step's records leave (``max_keys``) plus one slice; None beyond that."""
        folding = self._folding
        digest = folding.digest_for(peer)
        slices = self.max_keys // max(1, folding.batch) + 2  # bounded, writes go on
        while digest is None and slices and folding.pending() <= self.max_keys + folding.batch:
            folding.fold_slice()
            slices -= 1
            digest = folding.digest_for(peer)
            if digest is None:
                yield  # the next slice with the next slice of this step
        return digest

    def _on_digest(self, out: Output, message: DigestStep) -> Work[None]:
        peer = message.sender
        if message.width == 0 and (self._listing_moving(peer) or self._repairing()):
            return  # a new session while a leaf phase is under way: let that one run
        digest = yield from self._digest_for(peer)
        reply = None
        if digest is not None:
            reply = yield from anti_entropy.on_digest_work(
                self.node_id, message, digest, self._rng, self.slice_items
            )
        if isinstance(reply, anti_entropy.Listing):
            self._listings.pop(peer, None)  # the newest leaf phase with a peer, last
            while len(self._listings) >= MAX_LISTINGS:
                del self._listings[next(iter(self._listings))]
            reply.moved = self._interval
            self._listings[peer] = reply
            yield from self._send_chunk(out, peer, reply, digest)
            if reply.end < len(reply.leaves):  # more than one chunk: a long phase
                self._phase_moved(peer)
        elif reply is not None:
            self._outbox.send(out, [peer], reply)
        else:  # our digests agree (or we are still folding): nothing left to repair
            self._counters.anti_entropy_completed += 1

    def _send_chunk(
        self, out: Output, peer: str, listing: anti_entropy.Listing, digest: Digest | None
    ) -> Work[None]:
        if digest is None:  # still folding: the listing waits for the next answer
            return
        chunk = yield from anti_entropy.leaf_chunk_work(
            self.node_id, listing, digest, self.max_entries, self.max_keys, self.slice_items
        )
        self._outbox.send(out, [peer], chunk)

    def _on_leaf_entries(self, out: Output, message: LeafEntries) -> Work[None]:
        digest = yield from self._digest_for(message.sender)
        if digest is None:  # a half-built digest ends the session: not a wrong answer
            return
        keys, want, next_leaf = yield from anti_entropy.on_leaf_entries_work(
            message, digest, self.max_keys, self.slice_items
        )
        peer, session = message.sender, message.session
        if message.more:  # a long leaf phase: no other session runs here meanwhile
            self._phase_moved(peer)
        else:
            self._phase_ended(peer)
        cut = bool(message.leaves) and next_leaf <= message.leaves[-1]
        answer_anyway = message.more or cut  # the lister waits for where to resume
        yield from self._send_records(out, peer, session, keys, want, next_leaf, answer_anyway)

    def _on_records(self, out: Output, message: SyncRecords) -> Work[None]:
        """After the records were merged: the exchange is complete; send what was wanted,
        then the next leaves of a resumable leaf phase with this peer, if any are left."""
        self._counters.anti_entropy_completed += 1
        peer = message.sender
        listing = self._listings.get(peer)
        more = listing is not None and anti_entropy.resume(listing, message)
        if more and listing is not None:
            listing.moved = self._interval
            self._phase_moved(peer)
        digest = (yield from self._digest_for(peer)) if message.want or more else None
        if digest is not None and message.want:
            wanted = yield from anti_entropy.wanted_keys_work(
                message.want, digest, self.max_keys, self.slice_items
            )
            yield from self._send_records(out, peer, message.session, wanted, [])
        if listing is not None and more:
            yield from self._send_chunk(out, peer, listing, digest)
        elif listing is not None and listing.start >= len(listing.leaves):
            self._listings.pop(peer, None)
            self._phase_ended(peer)

    def _send_records(
        self, out: Output, peer: str, session: int, keys: list[str], want: list[int],
        next_leaf: int = -1, answer_anyway: bool = False,
    ) -> Work[None]:  # fmt: skip
        records, update = self._replica.store.records, self._replica.update
        updates: list[Update] = []
        for number, some in enumerate(anti_entropy.pieces(keys, self.slice_items)):
            if number:
                yield
            updates.extend(update(key) for key in some if key in records)
        if updates or want or answer_anyway:
            self._counters.anti_entropy_keys_sent += len(updates)
            sync = SyncRecords(self.node_id, session, updates, want, next_leaf)
            self._outbox.send(out, [peer], sync)


def _advance(job: Work[None]) -> bool:
    """One slice of ``job``; whether it is done."""
    try:
        next(job)
    except StopIteration:
        return True
    return False
