"""Sharded mode: hand a client request to an owner of its key, one hop, over pooled HTTP.

Any node accepts any request. When this node does not own the key, the request (method,
path, query, body, auth and conditional headers) goes to the key's owners in preference
order, live ones first, until one answers; a connection failure or a 5xx moves on to the
next owner. Forwarded requests carry ``X-Rumor-Forwarded``: a node never forwards such a
request again (views of the ring can differ for a moment; a second hop could loop). It
coordinates a forwarded write itself even if its view says it is no owner: the version
is then a hint, handed to the owners by the core's handoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import httpx
import structlog

from rumordb.live.http_transport import PooledTransport
from rumordb.live.metrics import Metrics

log = structlog.get_logger("rumor.forward")

FORWARDED_HEADER = "x-rumor-forwarded"
PASSED_HEADERS = frozenset(
    {b"authorization", b"x-api-key", b"content-type", b"if-match", b"accept"}
)
RETURNED_HEADERS = frozenset({"content-type", "etag", "x-rumor-context", "x-rumor-node"})


class Relay(Protocol):
    """A client request as another node would get it (what forwarding needs of it).

    ``live.kv``'s parsed request is one (no second object per request on the hot path);
    ``Request`` is one built by hand.
    """

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> bytes: ...  # the raw path, percent-encoding kept
    @property
    def query(self) -> bytes: ...
    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]: ...
    @property
    def body(self) -> bytes: ...
    @property
    def forwarded(self) -> bool: ...  # it came from another node: never forward it again


class Request(NamedTuple):
    """A ``Relay`` built by hand."""

    method: str
    path: bytes
    query: bytes
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes = b""
    forwarded: bool = False


def path_qs(relay: Relay) -> str:
    path = relay.path.decode("latin-1")
    return path + "?" + relay.query.decode("latin-1") if relay.query else path


@dataclass(frozen=True, slots=True)
class Forwarded:
    """An owner's answer, relayed as is."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Unforwarded:
    """No owner answered (``twice``: the request was itself forwarded, so none was asked)."""

    owners: tuple[str, ...]
    twice: bool = False


class Forwarder:
    def __init__(
        self,
        node_id: str,
        address_of: Callable[[str], str | None],
        metrics: Metrics,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.node_id = node_id
        self._address_of = address_of
        self._metrics = metrics
        self.client = httpx.AsyncClient(
            transport=transport or PooledTransport(),
            timeout=httpx.Timeout(timeout_s, connect=1.0),
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def forward(self, owners: Sequence[str], relay: Relay) -> Forwarded | Unforwarded:
        """The first owner's answer, in ``owners`` order; one hop at most."""
        if relay.forwarded:
            return Unforwarded(tuple(owners), twice=True)
        sent = self._headers(relay.headers)
        for owner in owners:
            if owner == self.node_id:
                continue
            url = self._address_of(owner)
            if not url:
                continue
            answer = await self._try(url + path_qs(relay), relay.method, sent, relay.body, owner)
            if answer is not None:
                self._metrics.forwarded.labels("ok").inc()
                return answer
        self._metrics.forwarded.labels("failed").inc()
        return Unforwarded(tuple(owners))

    async def gather_keys(self, members: Sequence[str], relay: Relay) -> list[list[str]]:
        """Each member's page of the same listing (a member that fails adds nothing)."""
        path_qs = "/kv?" + relay.query.decode("latin-1")
        answers = await asyncio.gather(*(self.get_json(m, path_qs, relay.headers) for m in members))
        pages: list[list[str]] = []
        for answer in answers:
            if isinstance(answer, dict) and isinstance(answer.get("keys"), list):
                pages.append([k for k in answer["keys"] if isinstance(k, str)])
        return pages

    def _headers(self, headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
        sent = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k in PASSED_HEADERS
        ]
        sent.append((FORWARDED_HEADER, self.node_id))
        return sent

    async def _try(
        self, url: str, method: str, headers: list[tuple[str, str]], body: bytes, owner: str
    ) -> Forwarded | None:
        try:
            response = await self.client.request(method, url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            log.info("forward_failed", owner=owner, error=type(exc).__name__)
            return None
        if response.status_code >= 500:
            log.info("forward_refused", owner=owner, status=response.status_code)
            return None
        kept = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers.items()
            if name in RETURNED_HEADERS
        ]
        return Forwarded(response.status_code, kept, response.content)

    async def get_json(
        self, member: str, path_qs: str, headers: Sequence[tuple[bytes, bytes]]
    ) -> object | None:
        """A JSON answer from one member (listing gather), or None if it failed."""
        url = self._address_of(member)
        if not url:
            return None
        try:
            response = await self.client.get(url + path_qs, headers=self._headers(headers))
            if response.status_code != 200:
                return None
            answer: object = response.json()
            return answer
        except (httpx.HTTPError, ValueError):
            return None
