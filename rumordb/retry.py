"""Failover and retries as a pure plan: which node to try, when to wait, when to give up.

``exchange`` is a generator that yields ``Send`` and ``Sleep`` steps and receives each
send's outcome (a ``Response`` or a ``Failure``); ``Client`` and ``AsyncClient`` drive it
with their own I/O, so both retry by the same rules and tests need no sockets.

The rules:

* **Reads and listings** (idempotent) are retried on any connection failure and on 429 /
  503, on the next node, with backoff.
* **Writes** (``PUT``, ``POST``, ``DELETE``) are retried only when the node provably did
  not apply them: the connection could not be opened (nothing was sent), or the node
  answered 429, or 503 ``overloaded`` / ``unavailable`` (it refused before storing). A
  write whose connection broke after it was sent, or that timed out waiting for the
  answer, may have been applied; sending it again would write a *second* version, which
  could overwrite a concurrent write made in between (or fail an ``If-Match`` against
  our own first attempt). Such a write raises ``Unreachable`` saying so.
* The preferred node is sticky: after a failure the client moves to the next node and
  stays there, so that consecutive calls (a read, then a conditional write) reach the
  same node. The first pass over the other nodes costs no wait; backoff is exponential
  with full jitter, and a node's ``Retry-After`` is honoured (capped).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, NamedTuple

from rumordb.api import Request, Response
from rumordb.errors import RateLimited, Unreachable, error_from

if TYPE_CHECKING:
    import random

# 503 codes with which a node says it refused a write before storing anything.
NOT_APPLIED = frozenset({"overloaded", "unavailable"})


class Failure(NamedTuple):
    """No answer from ``node``; ``sent`` is False when the request never left us."""

    node: str
    sent: bool
    reason: str


class Send(NamedTuple):
    node: str
    request: Request


class Sleep(NamedTuple):
    seconds: float


class RetryPolicy(NamedTuple):
    retries: int = 3  # attempts after the first
    backoff_s: float = 0.05
    max_backoff_s: float = 2.0

    def checked(self) -> RetryPolicy:
        if self.retries < 0 or self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("retries and backoff must not be negative")
        return self

    def delay_s(
        self, attempt: int, retry_after_s: float | None, rng: random.Random | None
    ) -> float:
        """Full jitter over ``backoff_s * 2**attempt``; the node's ``Retry-After`` wins."""
        if retry_after_s is not None:
            return min(retry_after_s, self.max_backoff_s)
        ceiling = min(self.max_backoff_s, self.backoff_s * 2.0 ** min(attempt, 30))
        if rng is None:  # imported here: most calls never wait, and random costs start-up
            import random

            rng = random.Random()
        return rng.uniform(0, ceiling)


class Nodes:
    """The node URLs, and the one to use now (sticky; moves on after a failure)."""

    def __init__(self, urls: Sequence[str]) -> None:
        cleaned = [url.strip().rstrip("/") for url in urls if url.strip()]
        for url in cleaned:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"a node URL starts with http:// or https://, got {url!r}")
        if not cleaned:
            raise ValueError("give at least one node URL")
        self.urls = cleaned
        self.index = 0

    @property
    def current(self) -> str:
        return self.urls[self.index]

    def failed(self, url: str) -> None:
        if self.urls[self.index] == url:
            self.index = (self.index + 1) % len(self.urls)

    def __len__(self) -> int:
        return len(self.urls)


def retryable(request: Request, error: RateLimited) -> bool:
    return request.idempotent or error.status == 429 or error.code in NOT_APPLIED


def exchange(
    request: Request, nodes: Nodes, policy: RetryPolicy, rng: random.Random | None
) -> Generator[Send | Sleep, Response | Failure | None, Response]:
    """Send ``request`` until a node answers, by the rules above; return the answer.

    Error answers that are not retried are returned too (the caller maps them).
    """
    for attempt in range(policy.retries + 1):
        node = nodes.current
        outcome = yield Send(node, request)
        last = attempt == policy.retries
        if isinstance(outcome, Failure):
            nodes.failed(node)
            if outcome.sent and not request.idempotent:
                raise Unreachable(
                    f"{node}: {outcome.reason}; the write may have been applied, so it was "
                    "not sent again (read the key to find out)"
                )
            if last:
                raise Unreachable(f"no node answered ({node}: {outcome.reason})")
            if attempt + 1 >= len(nodes):  # every node was tried once: back off
                yield Sleep(policy.delay_s(attempt, None, rng))
            continue
        assert outcome is not None
        if outcome.status not in (429, 503) or last:
            return outcome
        error = error_from(outcome.status, outcome.body, outcome.headers, node)
        assert isinstance(error, RateLimited)
        if not retryable(request, error):
            return outcome
        if outcome.status == 503:
            nodes.failed(node)
        yield Sleep(policy.delay_s(attempt, error.retry_after_s, rng))
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover
