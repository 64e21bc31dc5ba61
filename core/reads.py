"""Where a read or a listing is answered: decided in core, carried out by a driver.

``Node.read`` returns ``Local`` (answer from this node) or ``AskOwners`` (forward to the
owners in order, the first that answers wins). ``AskOwners.fallback`` is the sharded
read while ranges move: this node owns the key but has never seen it, so a co-owner may
hold it already. Only a found value (HTTP 200) from them counts; anything else means the
driver answers "not found" here.

A request that was itself forwarded is never forwarded again (a driver answers
``AskOwners`` for it with "not owner"): two nodes whose ring views differ could
otherwise bounce it between them.

``Node.plan_list`` returns a ``ListPlan``: this node's page and, when sharded, the peers
whose pages complete it (each holds only its ranges); ``merge_pages`` joins them.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from rumordb.core.record import Discarded, Record


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
