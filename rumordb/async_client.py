"""``AsyncClient``: the asyncio (and trio) twin of ``Client``, on ``httpx.AsyncClient``.

Same requests (``rumordb.api``), same retry plan (``rumordb.retry``), same results.

>>> import asyncio
>>> from rumordb import AsyncClient
>>> async def main() -> bytes:
...     async with AsyncClient(URLS, api_key=KEY) as db:
...         await db.put("greeting", b"hello")
...         return (await db.get("greeting")).value
>>> asyncio.run(main())
b'hello'

``watch()`` is an async iterator over an ``httpx`` stream that resumes from the last
position it was given after a disconnect (``rumordb.follow``).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rumordb import api
from rumordb.client import DEFAULT_URL, UPDATE_ATTEMPTS, Plan, auth_headers, setup
from rumordb.errors import (
    Exists,
    NotFound,
    PreconditionFailed,
    RumorError,
    Unreachable,
    error_from,
)
from rumordb.follow import READ_TIMEOUT_S, Follow
from rumordb.retry import Failure, RetryPolicy, Sleep, exchange
from rumordb.transport import (
    AsyncHttpxTransport,
    AsyncTransport,
    Cert,
    _httpx_options,
    _import_httpx,
)
from rumordb.types import (
    Change,
    Deleted,
    Exported,
    ItemResult,
    KeyPage,
    Op,
    Value,
    Version,
    Written,
)

if TYPE_CHECKING:
    import random


class AsyncClient:
    """See ``rumordb.Client``: the same arguments and methods, awaited."""

    def __init__(
        self,
        urls: str | Sequence[str] = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
        verify: bool | str = True,
        cert: Cert = None,
        transport: AsyncTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.nodes, tls = setup(urls, verify, cert)
        self.policy = RetryPolicy(retries, backoff_s, max_backoff_s).checked()
        self._rng = rng
        self._stream_options = (auth_headers(api_key), tls)
        self.transport: AsyncTransport = transport or AsyncHttpxTransport(
            auth_headers(api_key), timeout_s, tls
        )

    async def send(self, request: api.Request) -> api.Response:
        import anyio

        plan: Plan = exchange(request, self.nodes, self.policy, self._rng)
        outcome: api.Response | Failure | None = None
        while True:
            try:
                step = plan.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, Sleep):
                await anyio.sleep(step.seconds)
                outcome = None
            else:
                outcome = await self.transport.send(step.node, step.request)

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def get(self, key: str) -> Value:
        return api.value(key, await self.send(api.get(key)))

    async def version(self, key: str) -> Version:
        return api.version_of(await self.send(api.version(key)))

    async def put(
        self,
        key: str,
        value: bytes | str,
        *,
        content_type: str | None = None,
        if_match: str | None = None,
        ttl_s: int | None = None,
    ) -> Written:
        request = api.put(key, value, content_type=content_type, if_match=if_match, ttl_s=ttl_s)
        return api.written(await self.send(request))

    async def create(
        self,
        key: str,
        value: bytes | str,
        *,
        content_type: str | None = None,
        ttl_s: int | None = None,
    ) -> Written:
        request = api.put(key, value, content_type=content_type, create=True, ttl_s=ttl_s)
        return api.written(await self.send(request))

    async def delete(self, key: str, *, if_match: str | None = None) -> Deleted:
        return api.deleted(await self.send(api.delete(key, if_match=if_match)))

    async def list(
        self, prefix: str = "", *, limit: int = 100, after: str | None = None
    ) -> KeyPage:
        return api.page(await self.send(api.list_keys(prefix, limit, after)))

    async def keys(
        self, prefix: str = "", *, after: str | None = None, page_size: int = api.PAGE_MAX
    ) -> AsyncIterator[str]:
        while True:
            page = await self.list(prefix, limit=page_size, after=after)
            for key in page.keys:
                yield key
            if page.next is None:
                return
            after = page.next

    async def update(
        self,
        key: str,
        change: Callable[[Value | None], bytes | str | Awaitable[bytes | str]],
        *,
        content_type: str | None = None,
        attempts: int = UPDATE_ATTEMPTS,
    ) -> Written:
        """As ``Client.update``; ``change`` may be a coroutine function."""
        for _ in range(attempts):
            try:
                current: Value | None = await self.get(key)
            except NotFound:
                current = None
            new = change(current)
            if not isinstance(new, bytes | str):
                new = await new
            kind = content_type or (current.content_type if current else None)
            try:
                if current is None:
                    return await self.create(key, new, content_type=kind)
                return await self.put(key, new, content_type=kind, if_match=current.context)
            except (PreconditionFailed, Exists):
                continue
        raise RumorError(f"{key!r} changed under every one of {attempts} attempts")

    async def watch(
        self, prefix: str = "", *, position: str | None = None
    ) -> AsyncIterator[Change]:
        """As ``Client.watch``: ``async for change in db.watch("user/"): ...``; the
        stream opens at the first ``anext`` (changes applied before are not in it)."""
        import anyio

        httpx = _import_httpx()
        follow = Follow(prefix, position)
        node, failures = self.nodes.current, 0
        headers, tls = self._stream_options
        options = _httpx_options(headers, 5.0, tls)
        options["timeout"] = httpx.Timeout(5.0, read=READ_TIMEOUT_S)
        async with httpx.AsyncClient(**options) as http:
            while True:
                try:
                    async with http.stream("GET", node + follow.request().target) as response:
                        if response.status_code >= 400:
                            body = await response.aread()
                            raise error_from(response.status_code, body, response.headers, node)
                        failures = 0
                        async for raw in response.aiter_lines():
                            change = follow.line(raw, node) if raw else None
                            if change is not None:
                                yield change
                except httpx.TransportError as exc:
                    failures += 1
                    if failures > self.policy.retries:
                        raise Unreachable(f"{node}: the watch stream failed: {exc}") from exc
                    await anyio.sleep(self.policy.delay_s(failures, None, self._rng))

    async def batch(self, ops: Sequence[Op]) -> builtins.list[ItemResult]:
        return api.batch_results(await self.send(api.batch(ops)))

    async def export(
        self, prefix: str = "", *, versions: bool = False, page_size: int = api.PAGE_MAX
    ) -> AsyncIterator[Exported]:
        after: str | None = None
        while True:
            request = api.export_page(prefix, after, page_size, versions)
            items, after = api.exported(await self.send(request))
            for item in items:
                yield item
            if after is None:
                return

    async def cluster(self) -> dict[str, Any]:
        return api.document(await self.send(api.cluster()))

    async def health(self) -> dict[str, Any]:
        return api.document(await self.send(api.health()))

    async def faults(
        self, change: dict[str, Any] | None = None, *, heal: bool = False
    ) -> dict[str, Any]:
        return api.document(await self.send(api.faults(change, heal=heal)))

    async def create_api_key(
        self, name: str, role: str, *, expires_in_s: int | None = None
    ) -> dict[str, Any]:
        return api.document(await self.send(api.create_api_key(name, role, expires_in_s)))

    async def api_keys(self) -> builtins.list[dict[str, Any]]:
        keys = api.document(await self.send(api.api_keys())).get("keys")
        return list(keys) if isinstance(keys, list) else []

    async def revoke_api_key(self, name: str) -> dict[str, Any]:
        return api.document(await self.send(api.revoke_api_key(name)))
