"""Where a read or a listing is answered: decided in core, carried out by a driver.

``Node.read`` returns ``Local`` (answer from this node) or ``AskOwners`` (forward to the
owners in order, the first that answers wins). ``AskOwners.fallback`` is the sharded
read while ranges move: this node owns the key but has never seen it, so a co-owner may
hold it already. Only a found value (HTTP 200) from them counts; anything else means the
driver answers "not found" here.

A request that was itself forwarded is never forwarded again (a driver answers
``AskOwners`` for it with "not owner"): two nodes whose ring views differ could
otherwise bounce it between them.

``Reader`` makes both decisions for a node (``Node.read``, ``Node.plan_list``).

``Node.plan_list`` returns a ``ListPlan``: this node's page and, when sharded, the peers
whose pages complete it (each holds only its ranges); ``merge_pages`` joins them.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from rumordb.core import hlc
from rumordb.core.placement import Placement
from rumordb.core.record import Discarded, Record, is_live
from rumordb.core.store import Store


# Frozen msgspec Structs: one is built per client read, and they cost a tenth of a
# frozen dataclass to build.
class Local(msgspec.Struct, frozen=True, gc=False):
    """Answer here. ``record`` None: not found (a plain read also maps tombstones to None).

    ``discarded``: the last concurrent version LWW threw away (filled for meta reads).
    ``token``: set when this answer depends on nothing but the stored version (a plain
    read of a live value without a TTL, sharding off): it stays the answer to the same
    read for as long as ``NodeView.version_token(key) is token`` (``core.record_table``),
    so a driver may keep what it rendered from it and skip the read until then.
    """

    record: Record | None
    discarded: Discarded | None = None
    token: object | None = None


class AskOwners(msgspec.Struct, frozen=True, gc=False):
    owners: tuple[str, ...]
    fallback: bool = False  # only a found value from them counts; else "not found" here


ReadPlan = Local | AskOwners


class ListPlan(msgspec.Struct, frozen=True, gc=False):
    keys: list[str]  # this node's page
    gather: tuple[str, ...] = ()  # peers to ask for their pages of the same query


def merge_pages(local: Iterable[str], pages: Iterable[Iterable[str]], limit: int) -> list[str]:
    """One ordered page out of several nodes' pages of the same query (duplicates once)."""
    found = set(local)
    for page in pages:
        found.update(page)
    return sorted(found)[:limit]


class Reader:
    """A node's reads and listings (``Node.read``, ``Node.plan_list`` ask these methods,
    with the node's latest time for a call given none), decided over its store and where
    keys live."""

    __slots__ = ("_placement", "_store")

    def __init__(self, store: Store, placement: Placement) -> None:
        self._store, self._placement = store, placement

    def read(self, key: str, forwarded: bool, meta: bool, now: float) -> ReadPlan:
        """Where to answer a read of ``key``; ``meta``: tombstones too; ``now``: a value
        expired by then reads as absent."""
        placement = self._placement
        owners = placement.route(key)
        if owners is not None:
            return AskOwners(tuple(owners))
        record = self._store.get(key)
        if meta:
            return Local(record, self._store.discarded.get(key))
        if record is None and placement.sharding and not forwarded:
            # A new owner may not hold the key yet while ranges move: ask the others.
            others = tuple(m for m in placement.owners(key) if m != placement.node_id)
            if others:
                return AskOwners(others, fallback=True)
        if record is not None and (record.tombstone or record.expires):
            # Only a tombstone or a value with a TTL needs the clock (the common case not).
            record = record if is_live(record, hlc.pack(int(now * 1000))) else None
        elif record is not None and not placement.sharding:
            # Unsharded, the answer follows from the stored version alone (no ring, no
            # clock): name that version, so a driver can tell when it changes.
            return Local(record, None, self._store.records.version_token(key))
        return Local(record)

    def plan_list(
        self, prefix: str, limit: int, after: str, forwarded: bool, now: float
    ) -> ListPlan:
        """This node's page of live keys; sharded, also the peers holding the other ranges."""
        keys = self._store.list_live(prefix, limit, after, hlc.pack(int(now * 1000)))
        if not self._placement.sharding or forwarded:
            return ListPlan(keys)
        return ListPlan(keys, tuple(self._placement.members.peers()))
