"""Who is in the cluster, and who is alive: heartbeat-based failure detection.

Theory of operation. Every member owns a heartbeat counter and an incarnation (see
``core.member_state`` for the state machine these drive). Members travel as
``MemberEntry`` on every gossip message (the sender's own entry plus a small sample of
others), so a member's progress reaches everyone even across a broken link: replication
goes on around a dead or unreachable node. This table turns what it hears and how long
it heard nothing into ``member_state`` events, and keeps the transitions made for the
node to hand out in its next ``Output``.

A node that hears itself called suspect or dead refutes: it takes an incarnation above
the rumour's, and its next entries override it everywhere.

Leaving and forgetting. A member that leaves gossips its own entry as ``left`` (with a
higher incarnation); others move it to ``left``: it no longer owns data, so tombstone
purge and handoff stop waiting for it. ``forget`` removes a dead or left member for good
(an operator's verdict, or ``reap`` after a long death) and remembers the incarnation it
had: entries from that life, still gossiped by nodes that did not forget it yet, are
ignored; an entry with a higher incarnation is a new member (a process that restarts,
or a new node that takes over the id). Alive and suspect members cannot be forgotten.

Local health (Lifeguard, ``core.local_health``). ``expire`` judges members by how long
*this* node heard nothing from them, which is only fair if this node was listening:
``was_away`` credits every member the time a late probe shows we were away, and the
node's ``local_health`` widens its timeouts until on-time probes bring it back.

``MemberTable`` is the protocol the node needs; ``Membership`` is the real table and
``StaticMembership`` a fixed, shared one for very large simulations.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

import msgspec

from rumordb.core.local_health import away_s, next_health, widened_s
from rumordb.core.member_state import Event, State, fire

FORGOTTEN_MEMORY = 10_000  # forgotten ids remembered, so stale entries cannot revive them


class ForgetRefused(ValueError):
    """``forget`` of a member that is alive or suspect (or of this node itself)."""


class MemberEntry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A member as gossiped: what one node believes about another."""

    id: str
    address: str
    incarnation: int
    heartbeat: int
    state: str = "alive"


def suspicion_timeout_ms(mult: int, n: int, probe_interval_ms: int) -> int:
    """memberlist's formula: mult * max(1, log10(n)) probe intervals."""
    return int(mult * max(1.0, math.log10(max(n, 1))) * probe_interval_ms)


# Gossiped states that make the member they name refute (computed once: see ``entry``).
_RUMOURED_GONE = frozenset((State.SUSPECT.value, State.DEAD.value, State.LEFT.value))


@dataclass(slots=True)
class Member:
    id: str
    address: str
    incarnation: int
    heartbeat: int
    state: State
    last_progress: float  # local time the (incarnation, heartbeat) last grew
    state_since: float

    def entry(self) -> MemberEntry:
        # ``_value_``, not ``.value``: an enum's ``value`` is a Python-level property (~0.2 µs
        # a call, measured), and every message carries a few entries (a client write: 3).
        return MemberEntry(
            self.id, self.address, self.incarnation, self.heartbeat, self.state._value_
        )

    def info(self) -> MemberInfo:
        return MemberInfo(
            self.id, self.address, self.state, self.incarnation, self.heartbeat, self.last_progress
        )


class MemberTable(Protocol):
    """What the node needs of a member table: ``Membership`` or ``StaticMembership``."""

    self_id: str
    epoch: int  # bumped whenever the set of non-left members changes
    detects_failures: bool  # False: every member is alive forever (no heartbeats sent)

    def __len__(self) -> int: ...
    @property
    def incarnation(self) -> int: ...
    def members(self) -> list[MemberInfo]: ...
    def member_info(self, member_id: str) -> MemberInfo | None: ...
    def address(self, member_id: str) -> str | None: ...
    def ring_members(self) -> list[str]: ...
    def is_alive(self, member_id: str) -> bool: ...
    def peers(self) -> list[str]: ...
    def dead_peers(self) -> list[str]: ...
    def sample_peers(self, rng: random.Random, k: int) -> list[str]: ...
    def gossip_entries(self, rng: random.Random, k: int) -> list[MemberEntry]: ...
    def observe(self, entry: MemberEntry, now: float) -> None: ...
    def join(self, member_id: str, address: str, incarnation: int, now: float) -> None: ...
    def expire(self, now: float) -> list[Transition]: ...
    def was_away(self, now: float) -> bool: ...
    def leave(self, now: float) -> None: ...
    def forget(self, member_id: str, now: float) -> bool: ...
    def reap(self, now: float, dead_after_s: float) -> list[str]: ...
    def beat(self) -> None: ...
    def take_transitions(self) -> list[Transition]: ...


def restart_incarnation(previous: int) -> int:
    """The incarnation of a process that starts after one that ran with ``previous``.

    Always above every incarnation the member used before (a refutation raises it, and
    the driver keeps the highest), so its first entries override whatever the cluster
    still believes about its last life.
    """
    return previous + 1


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """A read-only snapshot of one member, for drivers (``NodeView.members``)."""

    id: str
    address: str
    state: State
    incarnation: int
    heartbeat: int
    last_progress: float


@dataclass(frozen=True, slots=True)
class Transition:
    member: str
    old: State
    new: State
    at: float


class Membership:
    """The member table of one node (``self_id`` included, always alive)."""

    detects_failures = True

    def __init__(
        self,
        self_id: str,
        address: str,
        now: float,
        incarnation: int = 0,
        suspicion_mult: int = 3,
        probe_interval_ms: int = 1000,
        dead_timeout_ms: int | None = None,
    ) -> None:
        self.self_id = self_id
        self.suspicion_mult = suspicion_mult
        self.probe_interval_ms = probe_interval_ms
        self.dead_timeout_ms = dead_timeout_ms
        self._members: dict[str, Member] = {
            self_id: Member(self_id, address, incarnation, 0, State.ALIVE, now, now)
        }
        self._peers: list[str] | None = None  # cache of alive + suspect peers
        self._others: list[Member] | None = None  # cache of every member but self
        # State changes not yet handed out: the node moves them into every Output, so
        # this holds at most one call's worth (a few per member).
        self._transitions: list[Transition] = []
        self.epoch = 0  # bumped whenever the set of non-left members changes
        self._forgotten: dict[str, int] = {}  # id -> the incarnation it had when forgotten
        self._last_expire = now
        self.local_health = 0  # 0: healthy; each late expire widens timeouts one step

    # --- reading -----------------------------------------------------------------
    @property
    def me(self) -> Member:
        return self._members[self.self_id]

    @property
    def incarnation(self) -> int:
        return self.me.incarnation

    def get(self, member_id: str) -> Member | None:
        return self._members.get(member_id)

    def members(self) -> list[MemberInfo]:
        return [m.info() for m in self._members.values()]

    def member_info(self, member_id: str) -> MemberInfo | None:
        member = self._members.get(member_id)
        return member.info() if member is not None else None

    def take_transitions(self) -> list[Transition]:
        made, self._transitions = self._transitions, []
        return made

    def __len__(self) -> int:
        return len(self._members)

    def address(self, member_id: str) -> str | None:
        member = self._members.get(member_id)
        return member.address if member else None

    def ring_members(self) -> list[str]:
        """Members that own data: all but those that left (dead ones may come back)."""
        return [m.id for m in self._members.values() if m.state is not State.LEFT]

    def is_alive(self, member_id: str) -> bool:
        member = self._members.get(member_id)
        return member is not None and member.state in (State.ALIVE, State.SUSPECT)

    def peers(self) -> list[str]:
        """Peers worth gossiping to: alive or merely suspect (memberlist does the same)."""
        if self._peers is None:
            self._peers = [
                m.id
                for m in self._members.values()
                if m.id != self.self_id and m.state in (State.ALIVE, State.SUSPECT)
            ]
        return self._peers

    def dead_peers(self) -> list[str]:
        return [m.id for m in self._members.values() if m.state is State.DEAD]

    def sample_peers(self, rng: random.Random, k: int) -> list[str]:
        peers = self.peers()
        return list(peers) if len(peers) <= k else rng.sample(peers, k)

    def gossip_entries(self, rng: random.Random, k: int) -> list[MemberEntry]:
        """The sender's own entry first, then up to ``k`` others."""
        if self._others is None:
            self._others = [m for m in self._members.values() if m.id != self.self_id]
        others = self._others
        chosen = others if len(others) <= k else rng.sample(others, k)
        return [self.me.entry(), *(m.entry() for m in chosen)]

    def suspect_timeout_s(self) -> float:
        live = sum(1 for m in self._members.values() if m.state is not State.LEFT)
        base = suspicion_timeout_ms(self.suspicion_mult, live, self.probe_interval_ms) / 1000
        return widened_s(base, self.local_health)

    def dead_timeout_s(self) -> float:
        if self.dead_timeout_ms is not None:
            return widened_s(self.dead_timeout_ms / 1000, self.local_health)
        return self.suspect_timeout_s()

    # --- changing ----------------------------------------------------------------
    def beat(self) -> None:
        self.me.heartbeat += 1

    def refute(self, above: int) -> None:
        self.me.incarnation = max(self.me.incarnation, above) + 1
        self.me.heartbeat = 0
        # Others stopped hearing us: our own slowness is the likelier cause (Lifeguard).
        self.local_health = next_health(self.local_health, away=True)

    def leave(self, now: float) -> None:
        if self.me.state is State.LEFT:
            return
        self.me.incarnation += 1
        self._fire(self.me, Event.LEAVE, now)

    def observe(self, entry: MemberEntry, now: float) -> None:
        """Absorb what a peer believes about ``entry.id``."""
        if entry.id == self.self_id:
            self._observe_self(entry)
            return
        if not self._is_news(entry):
            return
        member = self._members.get(entry.id)
        if member is None:
            if entry.state != State.LEFT.value:
                self._members[entry.id] = Member(
                    entry.id, entry.address, entry.incarnation, entry.heartbeat, State.ALIVE, now, now
                )  # fmt: skip
                self._changed()
            return
        if entry.state == State.LEFT.value:
            if entry.incarnation >= member.incarnation and member.state is not State.LEFT:
                member.incarnation = entry.incarnation
                self._fire(member, Event.LEAVE, now)
            return
        if (entry.incarnation, entry.heartbeat) <= (member.incarnation, member.heartbeat):
            return
        if member.state is State.LEFT and entry.incarnation <= member.incarnation:
            return  # progress from the life it left: ignored
        event = Event.REJOIN if member.state is State.LEFT else Event.PROGRESS
        member.incarnation = entry.incarnation
        member.heartbeat = entry.heartbeat
        member.address = entry.address or member.address
        member.last_progress = now
        self._fire(member, event, now)

    def _is_news(self, entry: MemberEntry) -> bool:
        """False for an entry from a forgotten member's old life; a newer life is new."""
        forgotten = self._forgotten.get(entry.id)
        if forgotten is None:
            return True
        if entry.incarnation <= forgotten or entry.state == State.LEFT.value:
            return False
        del self._forgotten[entry.id]
        return True

    def forget(self, member_id: str, now: float) -> bool:
        """Remove a dead or left member for good; False if unknown.

        Raises ``ForgetRefused`` for this node itself or a member that is alive or suspect.
        """
        member = self._members.get(member_id)
        if member is None:
            return False
        if member.id == self.self_id or member.state in (State.ALIVE, State.SUSPECT):
            raise ForgetRefused(f"{member_id} is {member.state.value}: only dead or left members")
        del self._members[member_id]
        self._forgotten[member_id] = member.incarnation
        if len(self._forgotten) > FORGOTTEN_MEMORY:
            del self._forgotten[next(iter(self._forgotten))]
        self._changed()
        return True

    def reap(self, now: float, dead_after_s: float) -> list[str]:
        """Forget the members dead (or left) for at least ``dead_after_s``; returns them."""
        gone = [
            m.id
            for m in self._members.values()
            if m.state in (State.DEAD, State.LEFT)
            and m.id != self.self_id
            and now - m.state_since >= dead_after_s
        ]
        for member_id in gone:
            self.forget(member_id, now)
        return gone

    def _observe_self(self, entry: MemberEntry) -> None:
        me = self.me
        if me.state is State.LEFT:
            return
        rumoured_gone = entry.state in _RUMOURED_GONE
        if rumoured_gone and entry.incarnation >= me.incarnation:
            self.refute(entry.incarnation)

    def join(self, member_id: str, address: str, incarnation: int, now: float) -> None:
        """A member announced itself (discovery): add it, or note its new address."""
        self.observe(MemberEntry(member_id, address, incarnation, 0), now)
        member = self._members.get(member_id)
        if member is not None and member.id != self.self_id and address:
            member.address = address

    def expire(self, now: float) -> list[Transition]:
        """Apply the silence timeouts; returns the transitions made."""
        suspect_after = self.suspect_timeout_s()
        dead_after = suspect_after + self.dead_timeout_s()
        made: list[Transition] = []
        for member in self._members.values():
            if member.id == self.self_id or member.state in (State.DEAD, State.LEFT):
                continue
            silent = now - member.last_progress
            if member.state is State.ALIVE and silent >= suspect_after:
                made.extend(self._fire(member, Event.SUSPECT_TIMEOUT, now))
            if member.state is State.SUSPECT and silent >= dead_after:
                made.extend(self._fire(member, Event.DEAD_TIMEOUT, now))
        return made

    def was_away(self, now: float) -> bool:
        """Called once per probe, before ``expire``: True if this node was away.

        Away (``core.local_health.away_s``): every member is credited the time this node
        was not listening, and the caller should read what waited for it before judging
        anyone (skip this ``expire``).
        """
        gap, self._last_expire = now - self._last_expire, now
        away = away_s(gap, self.probe_interval_ms / 1000)
        self.local_health = next_health(self.local_health, away > 0)
        if away:
            for member in self._members.values():
                member.last_progress = min(now, member.last_progress + away)
        return away > 0

    def _fire(self, member: Member, event: Event, now: float) -> list[Transition]:
        """Move ``member`` by the state table; returns the transition made, if any."""
        state = fire(member.state, event)
        if state is member.state:
            return []
        change = Transition(member.id, member.state, state, now)
        member.state = state
        member.state_since = now
        self._transitions.append(change)
        self._changed()
        return [change]

    def _changed(self) -> None:
        self._peers = None
        self._others = None
        self.epoch += 1


SAMPLE_SET_MIN = 22  # from this population on (k <= 5), Random.sample draws as below


def sample_below(rng: random.Random, n: int, k: int) -> list[int]:
    """``rng.sample(range(n), k)``: the same picks from the same draws, cheaper.

    For ``k <= 5`` and ``n >= 22``, CPython's ``sample`` draws ``randbelow(n)`` again while
    the pick is taken (its set branch): so does this, without its generic setup
    (``range`` is not built, no ABC check): 6.6 -> 3.1 us for 3 picks of 100 000, on
    every rumor round of a simulated node (``tests/core/test_membership.py`` compares).
    """
    if k > 5 or n < SAMPLE_SET_MIN:
        return rng.sample(range(n), k)
    randrange = rng.randrange  # randrange(n) is randbelow(n), for n > 0
    picks: list[int] = []
    for _ in range(k):
        pick = randrange(n)
        while pick in picks:
            pick = randrange(n)
        picks.append(pick)
    return picks


class StaticMembership:
    """A fixed, shared view of the cluster for very large simulations.

    10 000 nodes that each keep a full member table hold 10^8 entries; this view is one
    shared tuple instead. Failure detection is off (every member is alive), but peer
    selection goes through the same calls as ``Membership``, so the rumor and
    anti-entropy code under test is the real one.
    """

    __slots__ = ("_ids", "_index", "_self_index", "epoch", "self_id")  # one per node
    detects_failures = False

    def __init__(self, self_id: str, ids: tuple[str, ...], index: dict[str, int]) -> None:
        self.self_id = self_id
        self._ids = ids
        self._self_index = index[self_id]
        self._index = index
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def incarnation(self) -> int:
        return 0

    def members(self) -> list[MemberInfo]:
        return [MemberInfo(m, m, State.ALIVE, 0, 0, 0.0) for m in self._ids]

    def member_info(self, member_id: str) -> MemberInfo | None:
        return (
            MemberInfo(member_id, member_id, State.ALIVE, 0, 0, 0.0)
            if member_id in self._index
            else None
        )

    def take_transitions(self) -> list[Transition]:
        return []

    def ring_members(self) -> list[str]:
        return list(self._ids)

    def is_alive(self, member_id: str) -> bool:
        return True

    def peers(self) -> list[str]:
        return [m for m in self._ids if m != self.self_id]

    def dead_peers(self) -> list[str]:
        return []

    def sample_peers(self, rng: random.Random, k: int) -> list[str]:
        n = len(self._ids)
        if k >= n - 1:
            return self.peers()
        picks = sample_below(rng, n - 1, k)  # skip self by shifting indices past it
        return [self._ids[i + 1 if i >= self._self_index else i] for i in picks]

    def gossip_entries(self, rng: random.Random, k: int) -> list[MemberEntry]:
        return []

    def observe(self, entry: MemberEntry, now: float) -> None:
        return None

    def join(self, member_id: str, address: str, incarnation: int, now: float) -> None:
        return None

    def expire(self, now: float) -> list[Transition]:
        return []

    def was_away(self, now: float) -> bool:
        return False

    def leave(self, now: float) -> None:
        return None

    def forget(self, member_id: str, now: float) -> bool:
        raise ForgetRefused("a static membership never changes")

    def reap(self, now: float, dead_after_s: float) -> list[str]:
        return []

    def beat(self) -> None:
        return None

    def address(self, member_id: str) -> str | None:
        return member_id if member_id in self._index else None
