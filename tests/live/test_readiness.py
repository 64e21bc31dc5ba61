"""``GET /ready``'s decision: loaded, running, not leaving, then joined and caught up or alone."""

from __future__ import annotations

import dataclasses

import pytest

from rumordb.live.readiness import Progress, readiness

READY = Progress(
    loaded_keys=None, running=True, leaving=False, peers=2, caught_up=True, alone_s=0.0
)


@pytest.mark.parametrize(
    ("changes", "ready", "reason"),
    [
        ({}, True, "joined and caught up"),
        (
            {"loaded_keys": 1200, "running": False},
            False,
            "loading: 1200 keys read from disk so far",
        ),
        ({"running": False, "leaving": True}, False, "the node is starting or stopping"),
        ({"leaving": True, "caught_up": False}, False, "the node is leaving the cluster"),
        ({"caught_up": False}, False, "catching up: no anti-entropy exchange completed yet"),
        (
            {"peers": 0, "caught_up": False, "alone_s": 1.3},
            False,
            "joining: no peer yet (1.3 s)",
        ),
        ({"peers": 0, "caught_up": False, "alone_s": 5.0}, True, "alone: no peer found"),
    ],
)
def test_the_first_unmet_condition_is_the_reason(
    changes: dict[str, object], ready: bool, reason: str
) -> None:
    progress = dataclasses.replace(READY, **changes)  # type: ignore[arg-type]
    assert readiness(progress, ready_alone_after_s=5.0) == (ready, reason)
