"""The read-only face of a node: what drivers (and whole-cluster checks) may look at.

Drivers never touch a node's attributes: they read through ``Node.view`` and act on the
``Output`` a call returns. A view is a window onto the node's parts, not a copy
(``counters`` excepted, which is a snapshot), so it is always current.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, ItemsView, Mapping

from rumordb.core import lifecycle
from rumordb.core.broadcast import BroadcastQueue
from rumordb.core.clock_watch import ClockVerdict, ClockWatch
from rumordb.core.counters import Counters
from rumordb.core.membership import MemberInfo, MemberTable
from rumordb.core.placement import Placement
from rumordb.core.record import Discarded, Record
from rumordb.core.store import Store
from rumordb.core.tombstones import Tombstones


class NodeView:
    __slots__ = (
        "_clock_watch",
        "_counters",
        "_members",
        "_placement",
        "_queue",
        "_sharding",
        "_store",
        "_tombstones",
    )

    def __init__(
        self,
        store: Store,
        tombstones: Tombstones,
        members: MemberTable,
        queue: BroadcastQueue,
        counters: Counters,
        placement: Placement,
        clock_watch: ClockWatch,
        sharding: bool = False,
    ) -> None:
        self._store = store
        self._tombstones = tombstones
        self._members = members
        self._queue = queue
        self._counters = counters
        self._placement = placement  # (not its bound methods: ~128 B a node)
        self._clock_watch = clock_watch
        self._sharding = sharding

    def version_token(self, key: str) -> object | None:
        """An object naming the stored version of ``key`` (or None): ``core.reads.Local.token``."""
        return self._store.records.version_token(key)

    def follow_version_token(self, told: Callable[[Callable[[str], object | None]], None]) -> None:
        """Call ``told`` with the table's own lookup behind ``version_token`` now and
        whenever it changes (the record table split: ``core.packed_shards``), for a driver
        that binds it once (one C call a warm read)."""
        records = self._store.records
        told(records.version_token)
        records.on_split += (lambda: told(records.version_token),)

    # --- data ------------------------------------------------------------------------
    def get(self, key: str) -> Record | None:
        """The live version of ``key`` here, or None if absent or deleted."""
        record = self._store.get(key)
        return None if record is None or record.tombstone else record

    def version(self, key: str) -> Record | None:
        """The stored version, tombstones included."""
        return self._store.get(key)

    def discarded(self, key: str) -> Discarded | None:
        """The last concurrent version of ``key`` that LWW threw away here."""
        return self._store.discarded.get(key)

    def key_count(self) -> tuple[int, int]:
        """(live user keys, tombstones): the reserved keyspace (the keyring) is not counted."""
        tombstones = len(self._tombstones)
        return max(0, len(self._store) - tombstones - self._store.reserved), tombstones

    def items(self) -> ItemsView[str, Record]:
        """Every stored (key, version), tombstones included."""
        return self._store.items()

    def records(self) -> Mapping[str, Record]:
        """The stored versions, read-only by type (no copy: whole-cluster checks)."""
        return self._store.records

    def list_keys(
        self,
        prefix: str = "",
        limit: int = 100,
        after: str = "",
        *,
        reserved: bool = False,
        now_hlc: int = 0,
    ) -> list[str]:
        """This node's live keys in order (``Node.plan_list`` says whom else to ask);
        ``reserved``: the reserved keyspace too (``core.keyring``; never for clients);
        ``now_hlc``: values expired by then are not live (0: no expiry is checked)."""
        return self._store.list_live(prefix, limit, after, now_hlc, reserved=reserved)

    # --- cluster ---------------------------------------------------------------------
    @property
    def node_id(self) -> str:
        return self._members.self_id

    @property
    def incarnation(self) -> int:
        """This node's own incarnation (a refutation raises it: persist it)."""
        return self._members.incarnation

    def me(self) -> MemberInfo:
        """This node's own member entry (incarnation, heartbeat)."""
        me = self._members.member_info(self._members.self_id)
        assert me is not None, "a member table always holds its own node"
        return me

    def members(self) -> list[MemberInfo]:
        return self._members.members()

    def member_count(self) -> int:
        return len(self._members)

    def peers(self) -> list[str]:
        """Peers worth talking to: alive or suspect."""
        return list(self._members.peers())

    def is_alive(self, member_id: str) -> bool:
        return self._members.is_alive(member_id)

    def address(self, member_id: str) -> str | None:
        return self._members.address(member_id)

    def owners(self, key: str) -> list[str]:
        """The key's preference list (every member when sharding is off)."""
        return self._placement.owners(key)

    def ownership(self) -> dict[str, float]:
        """Each ring member's share of the key space."""
        return self._placement.ring().ownership()

    @property
    def leaving(self) -> bool:
        """This node announced that it leaves (``Node.leave``; until it restarts)."""
        return lifecycle.is_leaving(self._members)

    def handoff_remaining(self) -> int:
        """Keys held here that still wait for their owners to hold them (sharded:
        ``core.lifecycle``; a leaving node is done when it is 0)."""
        records, node_id = self._store.records, self._members.self_id
        return lifecycle.handoff_remaining(records, self._placement.owners, node_id, self._sharding)

    def clock(self) -> ClockVerdict:
        """Whether this node's clock is within the skew bound of its peers' (and by how much)."""
        return self._clock_watch.verdict

    # --- work in progress --------------------------------------------------------------
    def queue_length(self) -> int:
        """Rumors still queued for retransmission."""
        return len(self._queue)

    def counters(self) -> Counters:
        """A snapshot of the node's counters (totals since it started), for tests and
        whole-cluster checks: drivers add up each tick's ``Output.counter_deltas`` instead."""
        return dataclasses.replace(self._counters)
