"""The node's tunables: one frozen settings object, validated whole when built.

Field names are the same everywhere: the live flag ``--anti-entropy-interval-ms``, the env
var ``RUMOR_ANTI_ENTROPY_INTERVAL_MS`` and the scenario field all map onto one field here.
"""

from __future__ import annotations

from dataclasses import dataclass

from rumordb.core.bounds import DEFAULT_CLOCK_SLACK, DEFAULT_MAX_CLOCK_SKEW_MS
from rumordb.core.keys import DEFAULT_MAX_KEY_BYTES
from rumordb.core.messages import DEFAULT_MAX_MESSAGE_BYTES
from rumordb.core.ring import DEFAULT_VNODES
from rumordb.core.rumors import DEFAULT_DIRECT_MAIL_MAX


@dataclass(frozen=True, slots=True)
class NodeConfig:
    fanout: int = 3
    # Client writes go to every peer while there are at most this many (core.rumors).
    direct_mail_max: int = DEFAULT_DIRECT_MAIL_MAX
    gossip_interval_ms: int = 200
    anti_entropy_interval_ms: int = 1000
    probe_interval_ms: int = 1000
    suspicion_mult: int = 3
    dead_timeout_ms: int | None = None  # after suspicion; None = one more suspicion timeout
    reap_dead_after_ms: int = 0  # forget members dead (or left) this long; 0: never
    retransmit_mult: int = 4
    max_batch: int = 512  # updates per gossip message
    queue_max: int = 10_000  # rumor queue bound
    sharding: bool = False
    replicas: int = 3
    vnodes: int = DEFAULT_VNODES
    sync_max_keys: int = 2_000  # records per anti-entropy step
    sync_max_entries: int = 20_000  # leaf entries per anti-entropy step
    # keys folded into the digests per tick (~5 us each, ~10 ms): bounds a tick's work
    # after a restart or a ring change; anti-entropy waits while more are pending
    digest_fold_batch: int = 2_000
    # An anti-entropy session waits (at most ``anti_entropy_max_waits`` intervals in a
    # row) while this node applied this many new versions per interval: an ingest
    # (core.anti_entropy.Pacing). 0 turns the waiting off.
    anti_entropy_busy_versions: int = 5_000
    anti_entropy_max_waits: int = 4
    # Work per slice of an anti-entropy step (children compared or hashed, leaves and
    # entries listed, records read): a wide step is handled in slices, the rest on
    # ticks, so no step holds a driver long (core.anti_entropy_sessions). 0: each step
    # at once, in the call that received it (the simulator: time does not pass in a call).
    anti_entropy_slice_items: int = 0
    member_gossip: int = 6  # member entries piggybacked per message (besides our own)
    max_key_bytes: int = DEFAULT_MAX_KEY_BYTES
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    maintenance_batch: int = 512  # tombstones / handed-off keys examined per interval
    jitter_timers: bool = True  # random first deadlines, so nodes do not act in lockstep
    # Clocks from outside (core.bounds): HLCs at most this far ahead of ours; vector
    # clocks at most ``clock_slack`` entries wider than the members ever seen.
    max_clock_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS
    clock_slack: int = DEFAULT_CLOCK_SLACK

    def __post_init__(self) -> None:
        for name in (
            "fanout",
            "gossip_interval_ms",
            "anti_entropy_interval_ms",
            "probe_interval_ms",
            "suspicion_mult",
            "retransmit_mult",
            "max_batch",
            "queue_max",
            "replicas",
            "vnodes",
            "sync_max_keys",
            "sync_max_entries",
            "digest_fold_batch",
            "max_key_bytes",
            "maintenance_batch",
            "max_clock_skew_ms",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.anti_entropy_slice_items < 0:
            raise ValueError("anti_entropy_slice_items must be >= 0 (0: each step at once)")
        if self.anti_entropy_busy_versions < 0 or self.anti_entropy_max_waits < 0:
            raise ValueError("anti_entropy_busy_versions and anti_entropy_max_waits must be >= 0")
        if self.reap_dead_after_ms < 0:
            raise ValueError("reap_dead_after_ms must be >= 0 (0: never)")
        if self.direct_mail_max < 0:
            raise ValueError("direct_mail_max must be >= 0")
        if self.clock_slack < 0:
            raise ValueError("clock_slack must be >= 0")
