"""What ``GET /ready`` answers: whether this node should be sent traffic yet, and why not.

A node is ready once it has loaded its store, runs, is not leaving, and has either
joined a peer and completed one anti-entropy exchange (so it serves what the cluster
holds, not only what it held when it stopped), or found no peer for
``ready_alone_after_s`` (a cluster of one must become ready too). The checks run in
that order: the first that fails is the reason given.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a node is in its start-up (``Runner.readiness`` fills it in)."""

    loaded_keys: int | None  # keys read from disk so far while loading; None: loaded
    running: bool
    leaving: bool
    peers: int  # peers worth talking to (alive or suspect)
    caught_up: bool  # an anti-entropy exchange completed in this incarnation
    alone_s: float  # time since it started running


def readiness(progress: Progress, ready_alone_after_s: float) -> tuple[bool, str]:
    """(ready, the reason shown with it)."""
    p = progress
    if p.loaded_keys is not None:
        return False, f"loading: {p.loaded_keys} keys read from disk so far"
    if not p.running:
        return False, "the node is starting or stopping"
    if p.leaving:
        return False, "the node is leaving the cluster"
    if p.peers:
        if not p.caught_up:
            return False, "catching up: no anti-entropy exchange completed yet"
        return True, "joined and caught up"
    if p.alone_s < ready_alone_after_s:
        return False, f"joining: no peer yet ({p.alone_s:.1f} s)"
    return True, "alone: no peer found"
