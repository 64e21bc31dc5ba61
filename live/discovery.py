"""UDP broadcast discovery: nodes find each other with no static list.

Every ``interval_ms`` (jittered) a node broadcasts an ``Announcement`` (node id, base URL,
incarnation), msgpack-encoded and sealed with the cluster secret (``live.wire``), to
``broadcast_addr:port``; every node listens on that port and hands each authentic
announcement from another node to ``on_peer``. A node that hears a peer for the first
time announces itself at once, so a newcomer learns the whole cluster within one round
trip instead of one interval. Datagrams that are too large (``max_datagram_bytes``, checked
before anything else), unsigned, mis-signed, replayed, undecodable, or announcing another
node than the one that sealed them are dropped and counted in ``rejected``; authentic
ones outside the freshness window (a paused node's backlog) are counted apart in
``stale`` (``on_stale``) and logged at debug level, since they are not attacks. The seal
names the sender and ``BROADCAST`` as recipient, so a datagram cannot be replayed as
gossip. Our own announcements come back too and are ignored (``ignored_own``).

Which address the socket binds (found by experiment on Linux 6.x, see the tests):

* Bound to the node's own address (``127.0.0.2:P``) it hears *no* broadcast: Linux
  delivers a datagram only to sockets whose bound address equals its destination
  (``127.255.255.255``) or is the wildcard.
* Bound to ``0.0.0.0:P`` it hears the broadcasts, but also unicast datagrams sent to
  any address of the machine, from the LAN too: wrong for a node meant to stay on
  loopback.
* Bound to the broadcast address itself (``127.255.255.255:P``) it hears exactly the
  datagrams broadcast to it: from loopback only, since no outside host can reach
  127/8. With ``SO_REUSEADDR`` + ``SO_REUSEPORT`` every node of the machine binds the same
  address and port, and the kernel delivers each broadcast to *all* of them (reuseport's
  load balancing applies to unicast only). This is what we do, on a real interface too
  (e.g. ``10.0.0.255``: only that subnet's broadcasts). The same socket sends
  (``SO_BROADCAST``); a socket bound to a broadcast address sends from the route's source.

Exceptions: ``255.255.255.255`` (only ever used when configured explicitly, e.g. inside a
compose network) is received on the wildcard address; an explicit address that is not a
broadcast address of this machine cannot be bound, so we listen on ``bind_host`` instead.

``--seeds`` covers networks without broadcast: ``seed_peers`` lists the seed URLs to
contact, ``expand_seeds`` turns each seed that names a host into one URL per address the
name resolves to (every round, so a seed naming a headless Kubernetes Service follows the
StatefulSet's scale), the runner fetches ``GET /heartbeat`` from each, and
``announcement_from_heartbeat`` turns a reply into the same ``Announcement``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import random
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
import psutil
import structlog

from rumordb.live.settings import UNSPECIFIED_HOSTS, check_node_id, normalize_base_url
from rumordb.live.wire import BROADCAST, AuthError, Signer, StaleFrame

log = structlog.get_logger(__name__)

LOOPBACK_BROADCAST = "127.255.255.255"
LIMITED_BROADCAST = "255.255.255.255"
MAX_DATAGRAM_BYTES = 1024
MAX_PEERS = 4096  # peers remembered (to spot new ones); oldest forgotten first
JITTER = 0.1  # +-10% of the interval, so nodes do not announce in lockstep


class Announcement(msgspec.Struct, frozen=True, array_like=True, tag="announce"):
    node_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    incarnation: Annotated[int, msgspec.Meta(ge=0)]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Announcement)


def encode_announcement(announcement: Announcement) -> bytes:
    return _encoder.encode(announcement)


def decode_announcement(payload: bytes) -> Announcement:
    """The announcement in ``payload``; ``ValueError`` if malformed in any way."""
    try:
        announcement = _decoder.decode(payload)
    except msgspec.DecodeError as error:  # ValidationError is a DecodeError
        raise ValueError(str(error)) from None
    check_node_id(announcement.node_id)
    if normalize_base_url(announcement.url) != announcement.url:
        raise ValueError(f"not a base URL: {announcement.url!r}")
    return announcement


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, discovery: Discovery) -> None:
        self._discovery = discovery
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._discovery.datagram_received(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("discovery_socket_error", error=str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


class Discovery:
    def __init__(
        self,
        node_id: str,
        url_fn: Callable[[], str],
        incarnation_fn: Callable[[], int],
        signer: Signer,
        bind_host: str,
        port: int,
        broadcast_addr: str,
        interval_ms: int,
        on_peer: Callable[[Announcement], None],
        *,
        clock: Callable[[], float] = time.time,
        max_datagram_bytes: int = MAX_DATAGRAM_BYTES,
        on_stale: Callable[[], object] = lambda: None,
    ) -> None:
        if interval_ms < 1:
            raise ValueError("interval_ms must be >= 1")
        self.node_id = node_id
        self.url_fn = url_fn
        self.incarnation_fn = incarnation_fn
        self.signer = signer
        self.bind_host = bind_host
        self.port = port
        self.broadcast_addr = broadcast_addr
        self.interval_ms = interval_ms
        self.on_peer = on_peer
        self.clock = clock
        self.max_datagram_bytes = max_datagram_bytes
        self.on_stale = on_stale
        self.sent = 0
        self.received = 0  # authentic announcements from other nodes
        self.rejected = 0  # oversized, unsigned, mis-signed, replayed or malformed
        self.stale = 0  # authentic, but outside the freshness window
        self.ignored_own = 0
        self.peers: dict[str, Announcement] = {}  # last heard, bounded by MAX_PEERS
        self._transport: asyncio.DatagramTransport | None = None
        self._listener: _Listener | None = None
        self._task: asyncio.Task[None] | None = None
        self._soon = asyncio.Event()
        self._rng = random.Random()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._soon = asyncio.Event()
        sock = open_socket(self.broadcast_addr, self.port, self.bind_host)
        try:
            transport, listener = await loop.create_datagram_endpoint(
                lambda: _Listener(self), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        self._transport, self._listener = transport, listener
        self._task = loop.create_task(self._announce_loop(), name="rumor-discovery")
        log.debug(
            "discovery_started",
            bound=sock.getsockname()[0],
            broadcast=self.broadcast_addr,
            port=self.port,
        )

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        """After ``close``: wait until the task has ended and the socket is closed."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            await self._listener.lost

    def announce(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        announcement = Announcement(self.node_id, self.url_fn(), self.incarnation_fn())
        payload = encode_announcement(announcement)
        frame = self.signer.seal(payload, self.clock(), self.node_id, BROADCAST)
        self._transport.sendto(frame, (self.broadcast_addr, self.port))
        self.sent += 1

    async def _announce_loop(self) -> None:
        while True:
            try:
                self.announce()
            except Exception as error:  # a bad url_fn must not end discovery for good
                log.warning("discovery_announce_failed", error=repr(error))
            spread = 1 + self._rng.uniform(-JITTER, JITTER)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_ms * spread / 1000):
                    await self._soon.wait()
            self._soon.clear()

    def datagram_received(self, data: bytes) -> None:
        if len(data) > self.max_datagram_bytes:
            self.rejected += 1
            return
        try:
            opened = self.signer.open(data, self.clock(), BROADCAST)
            announcement = decode_announcement(opened.payload)
            if announcement.node_id != opened.sender:
                raise ValueError("announces another node than the one that sealed it")
        except StaleFrame:
            self.stale += 1
            self.on_stale()
            log.debug("discovery_stale_datagram")
            return
        except (AuthError, ValueError):
            self.rejected += 1
            return
        if announcement.node_id == self.node_id:
            self.ignored_own += 1
            return
        self.received += 1
        if self._remember(announcement):
            self._soon.set()  # a newcomer: tell it about us now, not in one interval
        try:
            self.on_peer(announcement)
        except Exception as error:
            log.warning("discovery_on_peer_failed", peer=announcement.node_id, error=repr(error))

    def _remember(self, announcement: Announcement) -> bool:
        """Record the peer; True if it was not known."""
        peers = self.peers
        new = announcement.node_id not in peers
        if new and len(peers) >= MAX_PEERS:
            peers.pop(next(iter(peers)))
        peers[announcement.node_id] = announcement
        return new


# --- sockets and addresses -----------------------------------------------------------
def receive_address(broadcast_addr: str) -> str:
    """The address to bind for hearing ``broadcast_addr`` (see the module docstring)."""
    return "0.0.0.0" if broadcast_addr == LIMITED_BROADCAST else broadcast_addr


def open_socket(broadcast_addr: str, port: int, bind_host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setblocking(False)
        try:
            sock.bind((receive_address(broadcast_addr), port))
        except OSError as error:
            if error.errno != errno.EADDRNOTAVAIL:
                raise
            fallback = "0.0.0.0" if bind_host in UNSPECIFIED_HOSTS else bind_host
            log.warning("discovery_not_a_local_broadcast", broadcast=broadcast_addr, bind=fallback)
            sock.bind((fallback, port))
    except BaseException:
        sock.close()
        raise
    return sock


def resolve_broadcast(host: str, setting: str) -> str | None:
    """Where to announce: None for ``off``; an explicit address as given; else derived.

    ``auto``: ``127.255.255.255`` for a loopback host; for ``0.0.0.0`` (or a host name) the
    broadcast address of the first interface that is up and not loopback; for an address
    of this machine, its interface's broadcast address. Never ``255.255.255.255`` unless
    given explicitly. None (discovery off) when no broadcast address exists.
    """
    if setting == "off":
        return None
    if setting != "auto":
        return str(ipaddress.IPv4Address(setting))  # ValueError for junk
    if host == "localhost":
        return LOOPBACK_BROADCAST
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None  # a host name: whatever the machine's main interface reaches
    if address is not None and address.version == 4 and address.is_loopback:
        return LOOPBACK_BROADCAST
    if address is None or host in UNSPECIFIED_HOSTS:
        return _primary_broadcast() or LOOPBACK_BROADCAST
    if address.version != 4:
        return None
    return _interface_broadcast(str(address))


def _broadcast_of(address: Any) -> str | None:
    """An interface address's broadcast address (psutil ``snicaddr``), never the limited one."""
    if address.broadcast and address.broadcast != LIMITED_BROADCAST:
        return str(address.broadcast)
    if not address.netmask:
        return None
    network = ipaddress.IPv4Network(f"{address.address}/{address.netmask}", strict=False)
    if network.prefixlen >= 31:
        return None  # point-to-point: no broadcast address
    return str(network.broadcast_address)


def _ipv4_addresses() -> Iterable[tuple[str, Any]]:
    stats = psutil.net_if_stats()
    for name, addresses in sorted(psutil.net_if_addrs().items()):
        if name in stats and not stats[name].isup:
            continue
        for address in addresses:
            if address.family == socket.AF_INET:
                yield name, address


def _primary_broadcast() -> str | None:
    for _, address in _ipv4_addresses():
        if not address.address.startswith("127."):
            found = _broadcast_of(address)
            if found is not None:
                return found
    return None


def _interface_broadcast(host: str) -> str | None:
    for _, address in _ipv4_addresses():
        if address.address == host:
            return _broadcast_of(address)
    raise ValueError(
        f"{host} is not an address of this machine's interfaces: bind to one of them, "
        "or set --broadcast to an address (or off)"
    )


# --- seeds ---------------------------------------------------------------------------
def seed_peers(seeds: Iterable[str], own_url: str) -> list[str]:
    """Seed base URLs to contact, normalized, without duplicates and without ourselves."""
    own = normalize_base_url(own_url)
    found: list[str] = []
    for seed in seeds:
        url = normalize_base_url(seed)
        if url != own and url not in found:
            found.append(url)
    return found


Resolver = Callable[[str], Awaitable[list[str]]]
RESOLVE_TIMEOUT_S = 2.0  # a seed round must not hang on a slow DNS server
# Addresses contacted per seed name and round: one live peer is enough to join (gossip
# spreads the rest), so a name with hundreds of records costs a bounded round.
MAX_ADDRESSES_PER_SEED = 16


async def resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to (A and AAAA records), without duplicates."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def expand_seeds(seeds: Iterable[str], resolve: Resolver | None = None) -> list[str]:
    """The seed URLs with each host name replaced by one URL per address it resolves to.

    A DNS name with several records (a headless Kubernetes Service: one per pod) stands for
    every node behind it; the HTTP client alone would contact only the first address, which
    may be this node itself. IP literals pass through. A name that does not resolve (yet)
    is left out of this round; of a name's addresses the first ``MAX_ADDRESSES_PER_SEED``
    count. ``resolve`` defaults to ``resolve_host``.
    """
    resolve = resolve or resolve_host
    found: list[str] = []
    for seed in seeds:
        parts = urlsplit(seed)
        host = parts.hostname or ""
        if _is_ip(host):
            addresses = [host]
        else:
            try:
                addresses = await resolve(host)
            except (OSError, TimeoutError) as error:
                log.debug("seed_unresolved", seed=seed, error=str(error))
                continue
        for address in addresses[:MAX_ADDRESSES_PER_SEED]:
            url = _with_host(parts.scheme, address, parts.port, parts.path)
            if url not in found:
                found.append(url)
    return found


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _with_host(scheme: str, address: str, port: int | None, path: str) -> str:
    netloc = f"[{address}]" if ":" in address else address
    if port is not None:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{path}"


def announcement_from_heartbeat(url: str, body: Any) -> Announcement:
    """A seed's ``GET /heartbeat`` JSON as an ``Announcement``; ``ValueError`` if malformed."""
    if not isinstance(body, dict):
        raise ValueError("a heartbeat is a JSON object")
    node_id, incarnation = body.get("node_id"), body.get("incarnation")
    if not isinstance(node_id, str) or not isinstance(incarnation, int) or incarnation < 0:
        raise ValueError("a heartbeat has a string node_id and an integer incarnation >= 0")
    check_node_id(node_id)
    return Announcement(node_id, normalize_base_url(url), incarnation)
