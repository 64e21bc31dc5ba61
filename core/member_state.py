"""A member's liveness as a state machine: an executable transition table.

Theory of operation. Every member has a heartbeat counter it bumps once per probe
interval and an incarnation it bumps when it restarts or must refute a rumour of its
death; ``(incarnation, heartbeat)`` only ever grows, so *progress* is well defined. Each
node judges every other member locally, from how long it has shown no progress, and
moves it through this table (``Membership`` classifies what it saw into an ``Event``,
then calls ``fire``):

    state     event             meaning                                    next state
    -------   ---------------   ----------------------------------------   ----------
    alive     PROGRESS          (incarnation, heartbeat) grew              alive
    suspect   PROGRESS                                                     alive
    dead      PROGRESS                                                     alive
    alive     SUSPECT_TIMEOUT   silent for >= the suspicion timeout        suspect
    suspect   DEAD_TIMEOUT      silent for >= suspicion + dead timeout     dead
    alive     LEAVE             an entry says "left" (same or newer inc.)  left
    suspect   LEAVE                                                        left
    dead      LEAVE                                                        left
    left      REJOIN            progress with a higher incarnation         alive

Any other pair is a bug in the caller (a dead member cannot time out again; a member
that left ignores progress from its old life): ``fire`` raises ``InvalidTransition``
rather than guessing. Gossiped suspect/dead states are not events here: they are
advisory and only make the member they name refute, so one node's broken link cannot
get a healthy member declared dead by others.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


class Event(enum.Enum):
    PROGRESS = "progress"
    SUSPECT_TIMEOUT = "suspect_timeout"
    DEAD_TIMEOUT = "dead_timeout"
    LEAVE = "leave"
    REJOIN = "rejoin"


class InvalidTransition(LookupError):
    """A (state, event) pair the table does not allow: the caller's bug."""


TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.ALIVE, Event.PROGRESS): State.ALIVE,
    (State.SUSPECT, Event.PROGRESS): State.ALIVE,
    (State.DEAD, Event.PROGRESS): State.ALIVE,
    (State.ALIVE, Event.SUSPECT_TIMEOUT): State.SUSPECT,
    (State.SUSPECT, Event.DEAD_TIMEOUT): State.DEAD,
    (State.ALIVE, Event.LEAVE): State.LEFT,
    (State.SUSPECT, Event.LEAVE): State.LEFT,
    (State.DEAD, Event.LEAVE): State.LEFT,
    (State.LEFT, Event.REJOIN): State.ALIVE,
}


def fire(state: State, event: Event) -> State:
    """The state after ``event`` in ``state``; raises ``InvalidTransition`` off the table."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise InvalidTransition(f"{event.value} is not allowed in state {state.value}") from None
