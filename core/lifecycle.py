"""A member's end in the cluster: leaving, handing off, forgetting and reaping.

A node that leaves announces ``left`` to every peer at once (a heartbeat that carries its
own entry, not a wait for gossip); peers stop counting it for tombstone purge and handoff
as soon as they hear. Sharded, a left node owns nothing: each interval's maintenance
sends its keys to their owners and drops each one they acknowledge, so it is done when
``handoff_remaining`` is 0. A dead or left member is forgotten for good by an operator
(``Membership.forget``: alive and suspect members are refused) or reaped by each node
once it has been dead for ``reap_dead_after_ms`` (0: never).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rumordb.core.member_state import State
from rumordb.core.membership import MemberTable


def is_leaving(members: MemberTable) -> bool:
    """This node announced that it leaves (it stays ``left`` until it restarts)."""
    me = members.member_info(members.self_id)
    return me is not None and me.state is State.LEFT


def leave_targets(members: MemberTable) -> list[str]:
    """Who hears the announcement: every peer still worth talking to."""
    return list(members.peers())


def handoff_remaining(
    keys: Iterable[str], owners: Callable[[str], list[str]], self_id: str, sharding: bool
) -> int:
    """Keys held here whose owners do not include this node (unsharded: none)."""
    if not sharding:
        return 0
    return sum(1 for key in keys if self_id not in owners(key))


def reap(members: MemberTable, now: float, reap_dead_after_ms: int) -> list[str]:
    """Forget the members dead or left for ``reap_dead_after_ms`` (0: keep them)."""
    if not reap_dead_after_ms:
        return []
    return members.reap(now, reap_dead_after_ms / 1000)
