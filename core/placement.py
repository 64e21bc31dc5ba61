"""Where keys live: the ring over the current members, a key's owners and replicas.

The ring is rebuilt only when the member table's ``epoch`` changes (a member joined or
left), and whoever caches per-ring state is told (``on_new_ring``). Unsharded, every
member owns every key; sharded, a key's ``replicas`` owners come from the ring, and a
write to a dead owner goes to the next live node on the ring instead (a hint). The
reserved keyspace (``core.keyring``: the API keys) is owned by every member, sharded or
not, so every node can check a key without asking another.
"""

from __future__ import annotations

from collections.abc import Callable

from rumordb.core.keyring import is_reserved
from rumordb.core.membership import MemberTable
from rumordb.core.ring import Ring
from rumordb.core.rumors import replica_targets


class Placement:
    __slots__ = ("_on_new_ring", "_ring", "members", "node_id", "replicas", "sharding", "vnodes")

    def __init__(
        self,
        members: MemberTable,
        *,
        sharding: bool,
        replicas: int,
        vnodes: int,
        ring: Ring | None,
        on_new_ring: Callable[[], None],
    ) -> None:
        """``ring``: a fixed ring shared by many nodes (a static member table only)."""
        if ring is not None and members.detects_failures:
            raise ValueError("a shared ring needs a static membership")
        self.members = members
        self.node_id = members.self_id
        self.sharding, self.replicas, self.vnodes = sharding, replicas, vnodes
        self._ring: tuple[int, Ring] | None = (0, ring) if ring is not None else None
        self._on_new_ring = on_new_ring

    def ring(self) -> Ring:
        epoch = self.members.epoch
        if self._ring is None or self._ring[0] != epoch:
            self._ring = (epoch, Ring(self.members.ring_members(), self.vnodes))
            self._on_new_ring()
        return self._ring[1]

    def owners(self, key: str) -> list[str]:
        """The key's preference list (every member when sharding is off)."""
        ring = self.ring()
        everyone = not self.sharding or is_reserved(key)
        return ring.owners(key, len(ring.members) if everyone else self.replicas)

    def route(self, key: str) -> list[str] | None:
        """None when this node serves ``key``; otherwise its owners, live ones first."""
        if not self.sharding or is_reserved(key):
            return None
        owners = self.owners(key)
        if self.node_id in owners:
            return None
        alive = self.members.is_alive
        return sorted(owners, key=lambda m: not alive(m))

    def replica_targets(self, key: str) -> list[str]:
        """The other live members of the key's effective preference list (``core.rumors``)."""
        ring = self.ring()
        replicas = len(ring.members) if is_reserved(key) else self.replicas
        return replica_targets(ring, key, replicas, self.members.is_alive, self.node_id)

    def shared_owners(self) -> Callable[[str], list[str]]:
        """``owners`` bound to the current ring: for a scan over many keys."""
        ring, n = self.ring(), self.replicas
        everyone = len(ring.members)
        return lambda key: ring.owners(key, everyone if is_reserved(key) else n)
