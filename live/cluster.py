"""What ``GET /cluster`` answers: this node's view of the cluster, as JSON.

Members sorted by id, each with its state, incarnation and heartbeat, and how long ago it
last made progress (monotonic time, so a clock step never ages a member; this node's own
entry is 0); the key counts (live user keys and tombstones: the reserved keyspace is not
counted), the database's size on disk (None in memory mode) and, sharded, each ring
member's share of the key space.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rumordb.core import MemberInfo, NodeView
from rumordb.live.storage import StorageUsage


def cluster_view(
    view: NodeView,
    url: str,
    *,
    sharding: bool,
    replicas: int,
    usage: StorageUsage | None,
    now_mono: float,
) -> dict[str, Any]:
    """The ``/cluster`` body of the node behind ``view``, reachable at ``url``."""
    node_id = view.node_id
    members = [member_row(m, node_id, now_mono) for m in view.members()]
    members.sort(key=lambda m: m["id"])
    live, tombstones = view.key_count()
    return {
        "node_id": node_id,
        "url": url,
        "sharding": sharding,
        "replicas": replicas,
        "keys": live,
        "tombstones": tombstones,
        "storage": None if usage is None else asdict(usage),
        "members": members,
        "ownership": view.ownership() if sharding else None,
    }


def member_row(member: MemberInfo, node_id: str, now_mono: float) -> dict[str, Any]:
    """One member as ``/cluster`` lists it; ``node_id``: this node (its own age is 0)."""
    age_s = 0.0 if member.id == node_id else round(max(0.0, now_mono - member.last_progress), 3)
    return {
        "id": member.id,
        "url": member.address,
        "state": member.state.value,
        "incarnation": member.incarnation,
        "heartbeat": member.heartbeat,
        "last_heartbeat_age_s": age_s,
    }
