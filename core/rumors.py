"""Whom a fresh version goes to: flush targets and a key's effective replicas.

Unsharded, a client write is pushed at once to ``fanout`` sampled peers; when that
already reaches every peer it is direct mail (Demers et al.) and nobody relays it,
otherwise it is a rumor, queued here and relayed by whoever receives it. Sharded, it is
direct mail to the key's replicas, who are all the nodes that need it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from rumordb.core.ring import Ring

T = TypeVar("T")


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
