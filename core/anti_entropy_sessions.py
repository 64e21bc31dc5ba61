"""This node's side of anti-entropy sessions: what it answers each step with, and counts.

``core.anti_entropy`` holds the steps as pure functions of one message and a digest;
this module puts them to work for one node: it starts a session with one sampled peer
per interval, answers each step from the digest it shares with that peer
(``core.digest_folding``: none while a backlog is folding, which ends the session rather
than answering wrongly), sends the records asked for, and counts sessions started,
records sent and exchanges completed. A session ends here when the digests agree or
records arrive; merging those records is the node's job (``Replica.merge``).
"""

from __future__ import annotations

import random

from rumordb.core import anti_entropy
from rumordb.core.counters import Counters
from rumordb.core.digest_folding import DigestFolding
from rumordb.core.membership import MemberTable
from rumordb.core.messages import DigestStep, LeafEntries, SyncRecords
from rumordb.core.outbox import Outbox
from rumordb.core.output import Output
from rumordb.core.replica import Replica


class AntiEntropySessions:
    __slots__ = (
        "_counters", "_folding", "_members", "_outbox", "_pacing", "_replica", "_rng",
        "max_entries", "max_keys", "node_id", "session",
    )  # fmt: skip

    def __init__(
        self, node_id: str, members: MemberTable, folding: DigestFolding, replica: Replica,
        outbox: Outbox, counters: Counters, rng: random.Random, *, max_entries: int,
        max_keys: int, pacing: anti_entropy.Pacing | None = None,
    ) -> None:  # fmt: skip
        self.node_id, self._members, self._folding = node_id, members, folding
        self._replica = replica
        self._outbox, self._counters, self._rng = outbox, counters, rng
        self.max_entries, self.max_keys = max_entries, max_keys
        self.session = 0  # sessions started here: each one's id
        self._pacing = pacing or anti_entropy.Pacing(0, 0)  # (0, 0): never waits

    def start(self, out: Output) -> None:
        """Open a session with one sampled peer (counted even if no digest is ready yet),
        unless an ingest is under way (``anti_entropy.Pacing``): the pushes carry what a
        session would find missing."""
        if not self._pacing.due(self._counters.updates_applied + self._replica.versions_written):
            return
        sample = self._members.sample_peers(self._rng, 1)
        if not sample:
            return
        peer = sample[0]
        self.session += 1
        self._counters.anti_entropy_sessions += 1
        digest = self._folding.digest_for(peer)
        if digest is None:  # still folding (a restart): the next interval tries again
            return
        self._outbox.send(out, [peer], anti_entropy.start(self.node_id, self.session, digest))

    def on_digest(self, out: Output, message: DigestStep) -> None:
        peer = message.sender
        digest = self._folding.digest_for(peer)
        reply = None
        if digest is not None:
            reply = anti_entropy.on_digest(self.node_id, message, digest, self.max_entries, self._rng)  # fmt: skip
        if reply is not None:
            self._outbox.send(out, [peer], reply)
        else:  # our digests agree (or the step was malformed): nothing left to repair
            self._counters.anti_entropy_completed += 1

    def on_leaf_entries(self, out: Output, message: LeafEntries) -> None:
        digest = self._folding.digest_for(message.sender)
        if digest is not None:  # a half-built digest ends the session: not a wrong answer
            keys, want = anti_entropy.on_leaf_entries(message, digest, self.max_keys)
            self._send_records(out, message.sender, message.session, keys, want)

    def on_records(self, out: Output, message: SyncRecords) -> None:
        """After the records were merged: the exchange is complete; send what was wanted."""
        self._counters.anti_entropy_completed += 1
        digest = self._folding.digest_for(message.sender) if message.want else None
        if digest is not None:
            wanted = anti_entropy.wanted_keys(message.want, digest, self.max_keys)
            self._send_records(out, message.sender, message.session, wanted, [])

    def _send_records(
        self, out: Output, peer: str, session: int, keys: list[str], want: list[int]
    ) -> None:
        records, update = self._replica.store.records, self._replica.update
        updates = [update(key) for key in keys if key in records]
        if updates or want:
            self._counters.anti_entropy_keys_sent += len(updates)
            self._outbox.send(out, [peer], SyncRecords(self.node_id, session, updates, want))
