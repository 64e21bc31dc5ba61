"""Consistent hashing with virtual nodes.

Each member owns ``vnodes`` points on a 64-bit ring; a key belongs to the first
``replicas`` distinct members found walking clockwise from the key's hash (its
*preference list*). Adding a member moves only the keys that now fall just before its
points: about 1/N of them.

Hinted handoff needs more than the owners: ``walk`` yields every member in ring order
from the key, so a writer can skip dead owners and pick the next live node as a stand-in.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator

from rumordb.core.hashing import hash64, key_hash

DEFAULT_VNODES = 128


class Ring:
    __slots__ = ("_members", "_node_of", "_points", "vnodes")

    def __init__(self, members: Iterable[str] = (), vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise ValueError("vnodes must be >= 1")
        self.vnodes = vnodes
        self._members: tuple[str, ...] = tuple(sorted(set(members)))
        placed = sorted(
            (hash64(f"{member}#{i}".encode()), member)
            for member in self._members
            for i in range(vnodes)
        )
        self._points = [point for point, _ in placed]
        self._node_of = [member for _, member in placed]

    @property
    def members(self) -> tuple[str, ...]:
        return self._members

    def walk(self, key: str) -> Iterator[str]:
        """Distinct members in ring order starting at ``key``'s position."""
        if not self._points:
            return
        start = bisect_right(self._points, key_hash(key))
        seen: set[str] = set()
        count = len(self._points)
        for step in range(count):
            member = self._node_of[(start + step) % count]
            if member not in seen:
                seen.add(member)
                yield member
                if len(seen) == len(self._members):
                    return

    def owners(self, key: str, n: int) -> list[str]:
        """The preference list: the first ``n`` distinct members (all, if fewer)."""
        found: list[str] = []
        for member in self.walk(key):
            found.append(member)
            if len(found) == n:
                break
        return found

    def ownership(self) -> dict[str, float]:
        """The fraction of the hash space each member's points start (primary ownership)."""
        if not self._points:
            return {}
        span = 1 << 64
        share = dict.fromkeys(self._members, 0.0)
        for i, point in enumerate(self._points):
            previous = self._points[i - 1] if i else self._points[-1] - span
            share[self._node_of[i]] += (point - previous) / span
        return share
