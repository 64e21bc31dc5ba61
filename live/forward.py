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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Forwarded:
    """An owner's answer, relayed as is."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


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

    async def forward(
        self,
        owners: Sequence[str],
        method: str,
        path_qs: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
    ) -> Forwarded | None:
        """The first owner's answer, or None when no owner could answer."""
        sent = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k in PASSED_HEADERS
        ]
        sent.append((FORWARDED_HEADER, self.node_id))
        for owner in owners:
            if owner == self.node_id:
                continue
            url = self._address_of(owner)
            if not url:
                continue
            answer = await self._try(url + path_qs, method, sent, body, owner)
            if answer is not None:
                self._metrics.forwarded.labels("ok").inc()
                return answer
        self._metrics.forwarded.labels("failed").inc()
        return None

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
        sent = [
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k in PASSED_HEADERS
        ]
        sent.append((FORWARDED_HEADER, self.node_id))
        try:
            response = await self.client.get(url + path_qs, headers=sent)
            if response.status_code != 200:
                return None
            answer: object = response.json()
            return answer
        except (httpx.HTTPError, ValueError):
            return None
