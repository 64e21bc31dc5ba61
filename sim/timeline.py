"""The fault timeline read back: when each fault was in force, and when the last cleared.

A run's events (faults and churn, in time order) become *spans*: a partition from
``partition`` to ``heal`` (a new partition replaces the one in force), a node down from
``crash`` to ``restart``, a link degraded from a ``link`` change to the change that
restores the ``[network]`` defaults on the same links (``links`` omitted: every link).
Clock changes are conditions, not faults: they never clear, and are left out.

*Heal to converged* runs from the instant the last fault cleared (the end of the last
span) to the moment from which every counted node held the latest version of every key;
it is undefined when there was no fault or one never cleared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Span:
    kind: str  # "partition", "down" (a node crashed), "link" (degraded)
    start_s: float
    end_s: float | None  # None: still in force at the end of the run
    subject: str  # the node, the links, or "" for a partition


def fault_spans(events: Iterable[Mapping[str, Any]], scenario: Mapping[str, Any]) -> list[Span]:
    """Every fault's span, in the order the faults started."""
    network = scenario.get("network", {})
    link_faults = iter(
        sorted(
            (f for f in scenario.get("faults", []) if f["action"] == "link"),
            key=lambda f: f["at_s"],
        )
    )
    open_: dict[tuple[str, str], float] = {}
    spans: list[Span] = []

    def close(kind: str, subject: str, at_s: float) -> None:
        start = open_.pop((kind, subject), None)
        if start is not None:
            spans.append(Span(kind, start, at_s, subject))

    for event in events:
        at_s, action = float(event["at_s"]), event["action"]
        if action in ("partition", "heal"):
            close("partition", "", at_s)
            if action == "partition":
                open_[("partition", "")] = at_s
        elif action == "crash":
            for node in event.get("nodes") or []:
                open_.setdefault(("down", node), at_s)
        elif action == "restart":
            for node in event.get("nodes") or []:
                close("down", node, at_s)
        elif action == "link":
            fault = next(link_faults, None)
            if fault is not None:
                _link_change(fault, network, at_s, open_, close)
    spans += [Span(kind, start, None, subject) for (kind, subject), start in open_.items()]
    return sorted(spans, key=lambda s: (s.start_s, s.kind, s.subject))


def _link_change(
    fault: Mapping[str, Any],
    network: Mapping[str, Any],
    at_s: float,
    open_: dict[tuple[str, str], float],
    close: Any,
) -> None:
    links = fault.get("links")
    subject = "every link" if links is None else " ".join("-".join(p) for p in links)
    restores = all(
        fault.get(name) is None or fault[name] == network.get(name, default)
        for name, default in (("latency_ms", 5.0), ("jitter_ms", 0.0), ("loss", 0.0))
    )
    if not restores:
        open_.setdefault(("link", subject), at_s)
    elif links is None:
        for kind, name in [key for key in open_ if key[0] == "link"]:
            close(kind, name, at_s)
    else:
        close("link", subject, at_s)


def faults_cleared_s(spans: Sequence[Span]) -> float | None:
    """When the last fault cleared; None if there was none or one is still in force."""
    if not spans or any(span.end_s is None for span in spans):
        return None
    return max(span.end_s for span in spans if span.end_s is not None)


def heal_to_converged_s(converged_at_s: float | None, cleared_s: float | None) -> float | None:
    if converged_at_s is None or cleared_s is None:
        return None
    return max(0.0, converged_at_s - cleared_s)
