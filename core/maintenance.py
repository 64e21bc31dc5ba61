"""The node's periodic maintenance, and when each part runs: TTL expiry, purge, handoff.

TTL expiry runs on every tick (a heap peek when nothing is due, ``core.expiry``): at most
``maintenance_batch`` values whose instant has come by the tick's wall time become their
derived tombstones. Tombstone purge and handoff run once per anti-entropy interval, a
window of ``maintenance_batch`` keys each: a tombstone goes once every member that must
hold it does (sharded: its owners; else every ring member), and a key this node does not
own goes once its owners hold it. What they still have to confirm is pushed, asking for
an acknowledgement. A static cluster never moves ranges: there only tombstones can need
maintenance.
"""

from __future__ import annotations

from collections.abc import Callable

from rumordb.core import hlc
from rumordb.core.membership import MemberTable
from rumordb.core.outbox import Outbox
from rumordb.core.output import Output
from rumordb.core.placement import Placement
from rumordb.core.replica import Replica

KeysByTarget = dict[str, list[str]]


def expire_due(replica: Replica, out: Output, now: float, budget: int) -> None:
    """Values whose TTL ran out by wall time ``now`` become tombstones (into ``out``)."""
    if len(replica.expiry):  # on every tick: most nodes hold no value with a TTL
        replica.expire(out, hlc.pack(int(now * 1000)), budget)


def is_due(members: MemberTable, replica: Replica) -> bool:
    """Whether this anti-entropy interval's purge and handoff can have any work."""
    return members.detects_failures or bool(replica.tombstones.holders)


def maintain(
    out: Output,
    replica: Replica,
    members: MemberTable,
    owners: Callable[[str], list[str]],
    sharding: bool,
    budget: int,
) -> list[KeysByTarget]:
    """Purge and hand off one window; returns the keys to push for acknowledgement, by
    target, in the order to send them (purge confirmations first, then handoffs)."""
    pushes: list[KeysByTarget] = []
    if replica.tombstones.holders:
        everyone = set(members.ring_members())
        required = (lambda key: set(owners(key))) if sharding else (lambda _: everyone)
        pushes.append(replica.purge_tombstones(out, budget, required, members.is_alive))
    if sharding:
        pushes.append(replica.hand_off(out, budget, owners, members.is_alive))
    return pushes


def run(out: Output, replica: Replica, placement: Placement, outbox: Outbox, budget: int) -> None:
    """One window of ``maintain``, its pushes sent (each target its keys' versions, asking
    for an acknowledgement: purge confirmations first, then handoffs) into ``out``."""
    members, update = placement.members, replica.update
    pushes = maintain(out, replica, members, placement.owners, placement.sharding, budget)
    for keys_by_target in pushes:
        grouped = {t: [update(k) for k in keys] for t, keys in keys_by_target.items()}
        outbox.push_each(out, grouped, ack=True)
