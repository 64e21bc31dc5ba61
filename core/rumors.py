"""Whom a fresh version goes to: flush targets and a key's effective replicas.

Unsharded, a client write is pushed at once to every peer while there are at most
``direct_mail_max`` of them, else to ``fanout`` sampled peers. A push that reaches every
peer is direct mail (Demers et al.) and nobody relays it; otherwise it is a rumor, queued
and relayed by whoever receives it, so the nodes it missed wait for a gossip round. Sharded, it is
direct mail to the key's replicas, who are all the nodes that need it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from rumordb.core.ring import Ring

T = TypeVar("T")

# Peers a client write is mailed to directly: up to a 9-node cluster, where N-1 pushes
# per flush cost little and a sampled push would leave nodes waiting for a round.
DEFAULT_DIRECT_MAIL_MAX = 8


def replica_targets(
    ring: Ring, key: str, replicas: int, is_alive: Callable[[str], bool], self_id: str
) -> list[str]:
    """The other members of the key's effective preference list.

    That is the live owners, plus, for each dead owner, the next live node on the ring
    (a stand-in holding a hint). Every node computes the same list, so a stand-in does
    not recruit yet another stand-in.
    """
    owners = ring.owners(key, replicas)
    chosen = [owner for owner in owners if is_alive(owner)]
    missing = len(owners) - len(chosen)
    if missing:
        for member in ring.walk(key):
            if member not in owners and is_alive(member):
                chosen.append(member)
                missing -= 1
                if not missing:
                    break
    return [member for member in chosen if member != self_id]


def push_width(fanout: int, peers: int, direct_mail_max: int) -> int:
    """How many peers a fresh client write goes to at once.

    Small clusters get direct mail to everyone: a write is visible on all nodes after
    one message delay instead of one gossip round (~interval) for the peers a sample
    missed, at N-1 messages per flush, which stays cheap up to ``direct_mail_max``
    peers (0 turns it off). Beyond that, ``fanout`` peers and rumor spreading.
    """
    if peers <= direct_mail_max:
        return peers
    return min(fanout, peers)


def is_direct_mail(targets: int, peers: int) -> bool:
    """A push that reaches every peer needs no relaying (anti-entropy covers a loss)."""
    return targets >= peers


def by_target(
    items: Iterable[tuple[str, T]], targets_of: Callable[[str], list[str]]
) -> dict[str, list[T]]:
    """Group (key, item) pairs by every target ``targets_of(key)`` names, in first-seen order."""
    grouped: dict[str, list[T]] = {}
    for key, item in items:
        for target in targets_of(key):
            grouped.setdefault(target, []).append(item)
    return grouped


def chunks(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
