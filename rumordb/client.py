"""``Client``: a synchronous RumorDB client with failover, retries and typed results.

>>> from rumordb import Client
>>> with Client(URLS, api_key=KEY) as db:  # URLS: node URLs, KEY: an admin API key
...     written = db.put("greeting", "hello")
...     db.get("greeting").text
'hello'

``rumor cluster up --detach`` starts nodes at http://127.0.0.1:8001..8003 and prints an
admin key; ``tests/client/test_docs.py`` runs these examples against real nodes.

Design notes: ``put`` builds its request in ``rumordb.api.put`` (``ttl_s`` is a query
parameter there); a batch becomes one more request builder and result parser there.
``watch`` streams over its own httpx connection to one node and resumes from the last
position it was given (``rumordb.follow``) after a disconnect or an overflow.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rumordb import api
from rumordb.errors import (
    Exists,
    NotFound,
    PreconditionFailed,
    RumorError,
    Unreachable,
    error_from,
)
from rumordb.follow import READ_TIMEOUT_S, Follow
from rumordb.retry import Failure, Nodes, RetryPolicy, Send, Sleep, exchange
from rumordb.transport import (
    Cert,
    StdlibTransport,
    SyncTransport,
    _httpx_options,
    _import_httpx,
    tls_context,
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

DEFAULT_URL = "http://127.0.0.1:8001"
UPDATE_ATTEMPTS = 10

Plan = Generator[Send | Sleep, api.Response | Failure | None, api.Response]


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def setup(urls: str | Sequence[str], verify: bool | str, cert: Cert) -> tuple[Nodes, Any]:
    """The node list and the TLS context (only built when a node uses https)."""
    nodes = Nodes([urls] if isinstance(urls, str) else list(urls))
    secure = any(url.startswith("https://") for url in nodes.urls)
    return nodes, tls_context(verify, cert) if secure else None


class Client:
    """Talk to a RumorDB cluster through any of its nodes.

    ``urls``: one node URL or several; requests go to one node at a time and move to the
    next when it cannot be reached (see ``rumordb.retry`` for what is retried: reads
    always, writes only when they provably were not applied). ``api_key``: an admin key
    writes, a reader key only reads. ``verify``/``cert``: TLS (CA bundle path, or False;
    client certificate for mutual TLS). ``transport``: ``"httpx"`` (default, a
    thread-safe pool), ``"stdlib"`` (``http.client``: no httpx import, fastest start-up;
    one thread at a time), or any object with ``send`` and ``close``.

    Every method raises a ``rumordb.errors.RumorError``: ``NotFound``,
    ``PreconditionFailed``, ``Unauthorized``, ``Unreachable``...
    """

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
        transport: str | SyncTransport = "httpx",
        rng: random.Random | None = None,
    ) -> None:
        self.nodes, tls = setup(urls, verify, cert)
        self.policy = RetryPolicy(retries, backoff_s, max_backoff_s).checked()
        self._rng = rng
        headers = auth_headers(api_key)
        self._stream_options = (headers, tls)  # what a watch stream's connection uses
        if transport == "stdlib":
            self.transport: SyncTransport = StdlibTransport(headers, timeout_s, tls)
        elif transport == "httpx":
            from rumordb.transport import HttpxTransport

            self.transport = HttpxTransport(headers, timeout_s, tls)
        elif isinstance(transport, str):
            raise ValueError(f"transport is 'httpx', 'stdlib' or an object, not {transport!r}")
        else:
            self.transport = transport

    # --- plumbing ---------------------------------------------------------------------
    def send(self, request: api.Request) -> api.Response:
        """One request through the retry plan (the answer may be an error status)."""
        plan: Plan = exchange(request, self.nodes, self.policy, self._rng)
        outcome: api.Response | Failure | None = None
        while True:
            try:
                step = plan.send(outcome)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                outcome = None
            else:
                outcome = self.transport.send(step.node, step.request)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- data -------------------------------------------------------------------------
    def get(self, key: str) -> Value:
        """The key's value on the current node; ``NotFound`` if absent or deleted."""
        return api.value(key, self.send(api.get(key)))

    def version(self, key: str) -> Version:
        """The key's version (clock, HLC, origin, tombstone, last LWW discard) on a node."""
        return api.version_of(self.send(api.version(key)))

    def put(
        self,
        key: str,
        value: bytes | str,
        *,
        content_type: str | None = None,
        if_match: str | None = None,
        ttl_s: int | None = None,
    ) -> Written:
        """Store ``value`` (upsert). ``if_match=ctx``: only over the version ``ctx`` names
        (``PreconditionFailed`` otherwise), and the new version descends from it.
        ``ttl_s``: the value expires that many seconds after its write, on every node."""
        request = api.put(key, value, content_type=content_type, if_match=if_match, ttl_s=ttl_s)
        return api.written(self.send(request))

    def create(
        self,
        key: str,
        value: bytes | str,
        *,
        content_type: str | None = None,
        ttl_s: int | None = None,
    ) -> Written:
        """Store ``value`` only if the key has no live value on that node (else ``Exists``)."""
        request = api.put(key, value, content_type=content_type, create=True, ttl_s=ttl_s)
        return api.written(self.send(request))

    def delete(self, key: str, *, if_match: str | None = None) -> Deleted:
        """Write a tombstone; ``NotFound`` if the key is absent."""
        return api.deleted(self.send(api.delete(key, if_match=if_match)))

    def list(self, prefix: str = "", *, limit: int = 100, after: str | None = None) -> KeyPage:
        """One page of keys in order (``limit`` at most 1000); ``page.next`` continues."""
        return api.page(self.send(api.list_keys(prefix, limit, after)))

    def keys(
        self, prefix: str = "", *, after: str | None = None, page_size: int = api.PAGE_MAX
    ) -> Iterator[str]:
        """Every key with ``prefix``, in order, one page (``page_size`` keys) at a time."""
        while True:
            page = self.list(prefix, limit=page_size, after=after)
            yield from page.keys
            if page.next is None:
                return
            after = page.next

    def update(
        self,
        key: str,
        change: Callable[[Value | None], bytes | str],
        *,
        content_type: str | None = None,
        attempts: int = UPDATE_ATTEMPTS,
    ) -> Written:
        """Read-modify-write: ``change(current or None)`` gives the new value, written with
        ``if_match`` (or as a create); on 412 / 409 it reads again and retries.

        ``change`` may run more than once: keep it free of side effects. The guard holds
        on the node that takes the write; see the README on concurrent writers on two
        nodes during a partition.

        >>> _ = db.put("counter", "41")
        >>> db.update("counter", lambda v: str(int(v.text) + 1 if v else 1)).created
        False
        >>> db.get("counter").text
        '42'

        """
        for _ in range(attempts):
            try:
                current: Value | None = self.get(key)
            except NotFound:
                current = None
            new = change(current)
            kind = content_type or (current.content_type if current else None)
            try:
                if current is None:
                    return self.create(key, new, content_type=kind)
                return self.put(key, new, content_type=kind, if_match=current.context)
            except (PreconditionFailed, Exists):
                continue
        raise RumorError(f"{key!r} changed under every one of {attempts} attempts")

    def watch(self, prefix: str = "", *, position: str | None = None) -> Iterator[Change]:
        """Every change applied on the current node to keys starting with ``prefix``, as it
        is applied (client writes there, gossip, anti-entropy, expiries), until closed.

        The stream is open when ``watch`` returns: every change from then on is in it.
        ``position``: resume after it (``Change.position``); ``PositionLost`` if the node
        no longer holds the changes since. A dropped connection or an overflow resumes
        from the last position (up to ``retries`` failed attempts in a row).

        >>> changes = db.watch("color/")
        >>> _ = db.put("color/sky", "blue")
        >>> change = next(changes)
        >>> change.key, change.value, change.replicated
        ('color/sky', b'blue', False)
        >>> changes.close()
        """
        stream = self._follow(Follow(prefix, position))
        next(stream)  # connected: the node has placed this watcher
        return _changes(stream)

    def _follow(self, follow: Follow) -> Iterator[Change | None]:
        """The stream's changes, after one None once the first connection is open."""
        httpx = _import_httpx()
        node, failures, opened = self.nodes.current, 0, False
        headers, tls = self._stream_options
        options = _httpx_options(headers, 5.0, tls)
        options["timeout"] = httpx.Timeout(5.0, read=READ_TIMEOUT_S)
        with httpx.Client(**options) as http:
            while True:
                try:
                    with http.stream("GET", node + follow.request().target) as response:
                        if response.status_code >= 400:
                            body = response.read()
                            raise error_from(response.status_code, body, response.headers, node)
                        failures = 0
                        if not opened:
                            opened = True
                            yield None
                        for raw in response.iter_lines():
                            change = follow.line(raw, node) if raw else None
                            if change is not None:
                                yield change
                except httpx.TransportError as exc:
                    failures += 1
                    if failures > self.policy.retries:
                        raise Unreachable(f"{node}: the watch stream failed: {exc}") from exc
                    time.sleep(self.policy.delay_s(failures, None, self._rng))

    def batch(self, ops: Sequence[Op]) -> builtins.list[ItemResult]:
        """Apply up to 1000 puts and deletes in one request, one group commit, one push per
        peer; one ``ItemResult`` per op, in order. One invalid op refuses them all
        (``BadRequest``/``TooLarge`` naming it). ``rumordb.api.chunks`` cuts longer lists.

        >>> from rumordb import Op
        >>> [r.result for r in db.batch([Op.put("b1", "x"), Op.delete("b1")])]
        ['created', 'deleted']
        """
        return api.batch_results(self.send(api.batch(ops)))

    def export(
        self, prefix: str = "", *, versions: bool = False, page_size: int = api.PAGE_MAX
    ) -> Iterator[Exported]:
        """Every live key with ``prefix``, in order, with its value (and, with
        ``versions``, its clock, HLC and origin: ``Op.put(..., version=item.version)``
        restores it elsewhere in the same LWW order)."""
        after: str | None = None
        while True:
            items, after = api.exported(
                self.send(api.export_page(prefix, after, page_size, versions))
            )
            yield from items
            if after is None:
                return

    # --- cluster ----------------------------------------------------------------------
    def cluster(self) -> dict[str, Any]:
        """``GET /cluster``: the node's view of members, states, key counts, ownership."""
        return api.document(self.send(api.cluster()))

    def health(self) -> dict[str, Any]:
        """``GET /health`` (no key needed): ``{"status", "node_id"}``."""
        return api.document(self.send(api.health()))

    def faults(self, change: dict[str, Any] | None = None, *, heal: bool = False) -> dict[str, Any]:
        """The node's injected faults (nodes with ``--allow-faults``, admin key): read them,
        add ``change`` (e.g. ``{"delay_ms": 50}``), or ``heal=True`` to remove all."""
        return api.document(self.send(api.faults(change, heal=heal)))

    # --- the replicated keyring (admin key) --------------------------------------------
    def create_api_key(
        self, name: str, role: str, *, expires_in_s: int | None = None
    ) -> dict[str, Any]:
        """A new key on the cluster's keyring: ``{name, role, created, expires, key}``; the
        key is shown only in this answer. ``Exists`` if the name is taken or revoked."""
        return api.document(self.send(api.create_api_key(name, role, expires_in_s)))

    def api_keys(self) -> builtins.list[dict[str, Any]]:
        """The keyring's keys: ``{name, role, created, expires, state}`` (never a secret)."""
        keys = api.document(self.send(api.api_keys())).get("keys")
        return list(keys) if isinstance(keys, list) else []

    def revoke_api_key(self, name: str) -> dict[str, Any]:
        """Revoke every key of ``name`` on every node; ``NotFound`` if none is known."""
        return api.document(self.send(api.revoke_api_key(name)))


def _changes(stream: Iterator[Change | None]) -> Iterator[Change]:
    for change in stream:
        if change is not None:
            yield change
