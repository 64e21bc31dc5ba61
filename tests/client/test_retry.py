"""The retry plan without sockets: which node, when to wait, what is never sent twice."""

from __future__ import annotations

import random

import pytest

from rumordb import api
from rumordb.api import Response
from rumordb.errors import Unreachable
from rumordb.retry import Failure, Nodes, RetryPolicy, Send, Sleep, exchange

A, B = "http://a:1", "http://b:2"


def drive(request: api.Request, outcomes: list[Response | Failure], nodes: Nodes) -> list[object]:
    """Run the plan on scripted outcomes; return the steps and the final answer."""
    plan = exchange(request, nodes, RetryPolicy(retries=3, backoff_s=0.1), random.Random(1))
    steps: list[object] = []
    reply: Response | Failure | None = None
    while True:
        try:
            step = plan.send(reply)
        except StopIteration as done:
            steps.append(done.value)
            return steps
        steps.append(step)
        reply = outcomes.pop(0) if isinstance(step, Send) else None


def ok(node: str) -> Response:
    return Response(200, {}, b"{}", node)


def status(code: int, error: str, node: str) -> Response:
    body = f'{{"error": "{error}", "detail": ""}}'.encode()
    return Response(code, {"retry-after": "1"}, body, node)


def test_a_read_fails_over_to_the_next_node_at_once_and_stays_there() -> None:
    nodes = Nodes([A, B])
    steps = drive(api.get("k"), [Failure(A, sent=True, reason="reset"), ok(B)], nodes)
    assert [type(s) for s in steps] == [Send, Send, Response]
    assert [s.node for s in steps if isinstance(s, Send)] == [A, B]
    assert nodes.current == B  # sticky: the next call starts on B


def test_backoff_only_after_every_node_was_tried() -> None:
    refused = [Failure(A, False, "refused"), Failure(B, False, "refused"), ok(A)]
    steps = drive(api.get("k"), refused, Nodes([A, B]))
    assert [type(s) for s in steps] == [Send, Send, Sleep, Send, Response]


def test_a_write_that_may_have_been_applied_is_not_sent_again() -> None:
    request = api.put("k", "v")
    with pytest.raises(Unreachable, match="may have been applied"):
        drive(request, [Failure(A, sent=True, reason="read timeout")], Nodes([A, B]))


def test_a_write_that_was_never_sent_goes_to_the_next_node() -> None:
    steps = drive(api.put("k", "v"), [Failure(A, False, "refused"), ok(B)], Nodes([A, B]))
    assert [s.node for s in steps if isinstance(s, Send)] == [A, B]


def test_a_write_refused_before_storing_is_retried_after_retry_after() -> None:
    steps = drive(api.put("k", "v"), [status(503, "overloaded", A), ok(B)], Nodes([A, B]))
    assert steps[1] == Sleep(1.0)
    assert isinstance(steps[-1], Response) and steps[-1].status == 200


def test_a_write_whose_owners_did_not_answer_is_returned_not_retried() -> None:
    steps = drive(api.put("k", "v"), [status(503, "owners_unavailable", A)], Nodes([A, B]))
    assert len(steps) == 2 and isinstance(steps[-1], Response) and steps[-1].status == 503


def test_reads_give_up_after_the_retries() -> None:
    failures = [Failure(A, False, "refused")] * 4
    with pytest.raises(Unreachable, match="no node answered"):
        drive(api.get("k"), failures, Nodes([A]))


@pytest.mark.parametrize("attempt", [0, 1, 2, 5, 40])
def test_full_jitter_stays_under_the_exponential_ceiling(attempt: int) -> None:
    policy = RetryPolicy(backoff_s=0.05, max_backoff_s=2.0)
    rng = random.Random(attempt)
    ceiling = min(2.0, 0.05 * 2**attempt)
    assert all(0 <= policy.delay_s(attempt, None, rng) <= ceiling for _ in range(50))
    assert policy.delay_s(attempt, 30.0, rng) == 2.0  # Retry-After, capped


def test_node_urls_are_checked() -> None:
    with pytest.raises(ValueError, match="http://"):
        Nodes(["127.0.0.1:8001"])
    with pytest.raises(ValueError, match="at least one"):
        Nodes([" "])
