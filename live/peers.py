"""How a running node meets its peers: UDP discovery, and seeds where there is no broadcast.

Discovery (``live.discovery``) announces this node on the broadcast address of its host
and hears signed announcements; seeds (``--seeds``: several machines, Kubernetes) are
contacted over HTTP: every ``SEED_RETRY_S`` each seed's ``GET /heartbeat`` is asked
until the seed is a live member, and asked again once it dies (a DNS seed: each of its
addresses). Either way a peer heard is joined to the member table (``Node.join``: a
no-op for a member known at that address); this node's own announcement is ignored.
Peers are met only while the node runs (``running``): never while it loads or stops.

Discovery is imported when it starts: ``psutil`` and the socket code are not needed by
the processes that only import the runner (the CLI's client commands).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from rumordb.core import Node
from rumordb.live.metrics import Metrics
from rumordb.live.wire import signer_for

if TYPE_CHECKING:
    from rumordb.live.discovery import Announcement, Discovery
    from rumordb.live.settings import Settings

SEED_RETRY_S = 2.0
SEED_TIMEOUT_S = 1.0


class Peers:
    """The discovery and the seed loop of one node (``start``, then ``close``)."""

    def __init__(
        self,
        settings: Settings,
        node: Node,
        url: str,
        *,
        client: httpx.AsyncClient,
        running: Callable[[], bool],
        now: Callable[[], float],
        metrics: Metrics,
    ) -> None:
        self._settings, self._node, self._url = settings, node, url
        self._client = client  # the gossip client's: its TLS and limits
        self._running, self._now, self._metrics = running, now, metrics
        self._discovery: Discovery | None = None
        self._seeding: asyncio.Task[None] | None = None

    @property
    def rejected(self) -> int:
        """Discovery datagrams dropped (unsigned, mis-signed, stale, malformed)."""
        return self._discovery.rejected if self._discovery is not None else 0

    async def start(self, *, discovery: bool) -> None:
        """Contact the seeds (if any) and, with ``discovery``, announce and listen."""
        if self._settings.seeds:
            self._seeding = asyncio.get_running_loop().create_task(self._seed_loop())
        if discovery:
            await self._start_discovery()

    async def close(self) -> None:
        """Stop announcing, listening and contacting seeds (the node stops)."""
        if self._discovery is not None:
            self._discovery.close()
            await self._discovery.wait_closed()
        seeding, self._seeding = self._seeding, None
        if seeding is not None:
            seeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await seeding

    def on_peer(self, announcement: Announcement) -> None:
        """A peer was heard: join it (no-op for members we know at that address)."""
        node = self._node
        if not self._running() or announcement.node_id == node.view.node_id:
            return
        node.join(
            announcement.node_id, announcement.url, announcement.incarnation, self._now(),
            mono=time.monotonic(),
        )  # fmt: skip

    async def _start_discovery(self) -> None:
        from rumordb.live.discovery import Discovery, resolve_broadcast

        s, node = self._settings, self._node
        broadcast = resolve_broadcast(s.host, s.broadcast)
        if broadcast is None:
            return
        self._discovery = Discovery(
            node_id=node.view.node_id,
            url_fn=lambda: self._url,
            incarnation_fn=lambda: node.view.incarnation,
            signer=signer_for(s),  # its own replay window: datagrams are not gossip
            # The series exists once discovery runs (a node without it shows none).
            on_stale=self._metrics.stale_frames.labels("discovery").inc,
            bind_host=s.host,
            port=s.discovery_port,
            broadcast_addr=broadcast,
            interval_ms=s.discovery_interval_ms,
            on_peer=self.on_peer,
        )
        await self._discovery.start()

    async def _seed_loop(self) -> None:
        """Contact seeds until each is a live member; re-contact one that dies."""
        from rumordb.live.discovery import expand_seeds, seed_peers

        seeds = seed_peers(self._settings.seeds, self._url)
        while self._running():
            for seed in await expand_seeds(seeds):  # a DNS seed: each of its addresses
                await self.contact_seed(seed)
            await asyncio.sleep(SEED_RETRY_S)

    async def contact_seed(self, url: str) -> None:
        """Ask the seed at ``url`` who it is, and join it unless it is a live member."""
        from rumordb.live.discovery import announcement_from_heartbeat

        try:
            response = await self._client.get(url + "/heartbeat", timeout=SEED_TIMEOUT_S)
            announcement = announcement_from_heartbeat(url, response.json())
        except (httpx.HTTPError, ValueError):
            return
        if not self._node.view.is_alive(announcement.node_id):
            self.on_peer(announcement)
