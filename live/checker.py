"""The set-workload checker: did the cluster keep every write it acknowledged?

Jepsen's method, for a LWW key-value store. A workload writes unique values to a small
keyspace through random nodes and logs every operation as invoked, then ok (acknowledged,
with the version the node returned), failed (a 4xx: it certainly did not happen) or
unknown (timeout, connection error, 5xx: it may or may not have happened). After the
faults heal and the cluster is quiet, every key is read from every node with its version
(``GET /kv/{key}?meta=true``) and the history is judged against that final state.

For each acknowledged operation X and each node, the node's final version F of X's key is:

* present: F *is* X (same HLC, origin and tombstone flag);
* superseded: F wins over X under the documented LWW order (``core.merge``: a descendant
  clock wins, else the larger ``(hlc, origin)``), so X was legitimately overwritten; a key
  that is gone entirely (its tombstone was purged) counts as superseded only when a delete
  that could win over X was issued;
* lost: anything else. One lost node makes the operation lost.

A final value that no write produced, or a live value that an acknowledged delete wins
over (a resurrection), is *unexpected*. The nodes hold *identical data* when every key has
the same live version (or none) everywhere.

The classification is pure (``classify``); the HTTP workload and the reads live at the
bottom of the module, so ``rumor check`` and the multi-host tests share both.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import httpx
import msgspec

from rumordb.core.context import decode_context
from rumordb.core.errors import InvalidContext
from rumordb.core.merge import supersedes
from rumordb.core.record import Record
from rumordb.core.vclock import Order, compare

MAX_KEYS = 100_000  # keyspace bound for one check
LIST_PAGE = 1000
MAX_TRACE = 10_000  # convergence trace points kept


class Kind(enum.StrEnum):
    WRITE = "write"
    DELETE = "delete"


class Status(enum.StrEnum):
    INVOKED = "invoked"
    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"


class Op(msgspec.Struct, kw_only=True):
    """One client operation as the history records it."""

    id: int
    kind: Kind
    key: str
    node: str  # the URL the client sent it to
    invoked_s: float
    value: str | None = None  # writes: unique text, so a final value names its write
    status: Status = Status.INVOKED
    completed_s: float | None = None
    http_status: int | None = None
    clock: dict[str, int] | None = None  # the version the node acknowledged
    hlc: int | None = None
    origin: str | None = None  # None when the reply did not say (some deletes)
    error: str | None = None

    @property
    def sha256(self) -> str | None:
        return None if self.value is None else hashlib.sha256(self.value.encode()).hexdigest()


class Version(msgspec.Struct, frozen=True, kw_only=True):
    """A node's stored version of a key, from ``GET /kv/{key}?meta=true``."""

    clock: dict[str, int]
    hlc: int
    origin: str
    tombstone: bool
    value_sha256: str

    @classmethod
    def from_meta(cls, meta: dict[str, object]) -> Version:
        clock = meta.get("clock")
        if not isinstance(clock, dict):
            raise ValueError("meta has no clock")
        return cls(
            clock={str(k): int(v) for k, v in clock.items()},
            hlc=int(meta["hlc"]),  # type: ignore[call-overload]
            origin=str(meta["origin"]),
            tombstone=bool(meta.get("tombstone", False)),
            value_sha256=str(meta.get("value_sha256", "")),
        )

    def live_id(self) -> tuple[int, str, str] | None:
        return None if self.tombstone else (self.hlc, self.origin, self.value_sha256)


# node URL -> key -> its version there (None: the node has never seen it, or purged it)
Snapshot = dict[str, dict[str, Version | None]]


class Finding(msgspec.Struct, frozen=True):
    key: str
    node: str
    reason: str
    op: int | None = None


class Report(msgspec.Struct, kw_only=True):
    invoked: int
    ok: int
    failed: int
    unknown: int
    present: int
    lost: list[Finding]
    superseded: list[Finding]
    unexpected: list[Finding]
    identical: bool
    nodes: int
    keys: int
    heal_to_identical_s: float | None = None
    extra: dict[str, object] = msgspec.field(default_factory=dict)

    @property
    def availability(self) -> float:
        return self.ok / self.invoked if self.invoked else 1.0

    @property
    def passed(self) -> bool:
        return not self.lost

    def summary(self) -> dict[str, object]:
        return {
            "lost": len(self.lost),
            "superseded": len(self.superseded),
            "unexpected": len(self.unexpected),
            "identical": self.identical,
            "invoked": self.invoked,
            "ok": self.ok,
            "failed": self.failed,
            "unknown": self.unknown,
            "availability": round(self.availability, 4),
            "heal_to_identical_s": self.heal_to_identical_s,
            **self.extra,
        }


# --- pure classification ----------------------------------------------------------------
def _record(clock: dict[str, int], hlc: int, origin: str, tombstone: bool) -> Record:
    return Record(b"", "", clock, hlc, origin, tombstone)


def _op_record(op: Op) -> Record:
    assert op.clock is not None and op.hlc is not None
    return _record(op.clock, op.hlc, op.origin or "", op.kind is Kind.DELETE)


def _version_record(version: Version) -> Record:
    return _record(version.clock, version.hlc, version.origin, version.tombstone)


def is_same(version: Version, op: Op) -> bool:
    """The node holds exactly the version ``op`` wrote."""
    if version.tombstone != (op.kind is Kind.DELETE) or version.hlc != op.hlc:
        return False
    if op.origin is None:  # a delete reply without origin: the clock names it as well
        return version.clock == op.clock
    return version.origin == op.origin


def wins_over(version: Version, op: Op) -> bool:
    """``version`` supersedes ``op`` under LWW. Ties on HLC with an unknown origin favour
    the stored version: the checker must not call a write lost on a guess."""
    if op.origin is None and version.hlc == op.hlc:
        return True
    return supersedes(_version_record(version), _op_record(op))


def could_win(delete: Op, op: Op) -> bool:
    """Could ``delete`` have superseded ``op``? Unknown deletes might have, at any time."""
    if delete.status in (Status.UNKNOWN, Status.INVOKED):
        return True
    if delete.clock is None or delete.hlc is None:
        return False
    if delete.origin is None and delete.hlc == op.hlc:
        return True
    return supersedes(_op_record(delete), _op_record(op))


def judge(op: Op, version: Version | None, deletes: Sequence[Op]) -> str:
    """present / superseded / lost for one acknowledged op against one node's version."""
    if version is None:
        if op.kind is Kind.DELETE:
            return "present"  # deleted and its tombstone purged: the delete took effect
        if any(could_win(d, op) for d in deletes if d.id != op.id):
            return "superseded"
        return "lost"
    if is_same(version, op):
        return "present"
    if wins_over(version, op):
        return "superseded"
    return "lost"


def lost_reason(op: Op, version: Version | None) -> str:
    """Why ``op`` counts as lost on a node, in words that point at the likely cause."""
    what = f"acknowledged {op.kind}"
    if version is None:
        return f"{what} missing: the node does not have the key"
    assert op.clock is not None and op.hlc is not None
    if version.hlc > op.hlc and compare(version.clock, op.clock) is Order.BEFORE:
        return (
            f"{what} overwritten by a later write (larger HLC) whose vector clock is older: "
            "a clock went backwards (e.g. counters restarted after a tombstone purge)"
        )
    return f"{what} missing: the node holds a version it wins over"


def _unexpected(key: str, node: str, version: Version, ops: Sequence[Op]) -> Finding | None:
    if version.tombstone:
        return None
    writers = [op for op in ops if op.kind is Kind.WRITE and op.sha256 == version.value_sha256]
    if not writers:
        return Finding(key, node, "a value nobody wrote")
    if all(op.status is Status.FAILED for op in writers):
        return Finding(key, node, "a value whose write failed", writers[0].id)
    for op in ops:
        if (
            op.kind is Kind.DELETE
            and op.status is Status.OK
            and op.clock is not None
            and not is_same(version, op)
            and not wins_over(version, op)
        ):
            reason = "resurrected: an acknowledged delete wins over it"
            if version.hlc > (op.hlc or 0):
                reason += " by clock, though it was written later (a clock went backwards)"
            return Finding(key, node, reason, op.id)
    return None


def differing_keys(snapshot: Snapshot) -> set[str]:
    """The keys whose live version (or absence) is not the same on every node."""
    keys = {key for versions in snapshot.values() for key in versions}
    differing = set()
    for key in keys:
        seen = {_live_id(versions.get(key)) for versions in snapshot.values()}
        if len(seen) > 1:
            differing.add(key)
    return differing


def _live_id(version: Version | None) -> tuple[int, str, str] | None:
    return None if version is None else version.live_id()


def identical(snapshot: Snapshot) -> bool:
    """Every node holds the same live version (or none) of every key."""
    return not differing_keys(snapshot)


def classify(history: Sequence[Op], snapshot: Snapshot) -> Report:
    by_key: dict[str, list[Op]] = {}
    for op in history:
        by_key.setdefault(op.key, []).append(op)
    lost: list[Finding] = []
    superseded: list[Finding] = []
    present = 0
    for op in history:
        if op.status is not Status.OK:
            continue
        deletes = [d for d in by_key[op.key] if d.kind is Kind.DELETE]
        verdicts = {node: judge(op, snap.get(op.key), deletes) for node, snap in snapshot.items()}
        bad = sorted(node for node, verdict in verdicts.items() if verdict == "lost")
        if bad:
            reason = lost_reason(op, snapshot[bad[0]].get(op.key))
            lost.append(Finding(op.key, ",".join(bad), reason, op.id))
        elif "superseded" in verdicts.values():
            superseded.append(Finding(op.key, "", f"{op.kind} superseded under LWW", op.id))
        else:
            present += 1
    unexpected: list[Finding] = []
    for node, versions in snapshot.items():
        for key, version in sorted(versions.items()):
            if version is None:
                continue
            finding = _unexpected(key, node, version, by_key.get(key, []))
            if finding is not None:
                unexpected.append(finding)
    return Report(
        invoked=len(history),
        ok=sum(op.status is Status.OK for op in history),
        failed=sum(op.status is Status.FAILED for op in history),
        unknown=sum(op.status in (Status.UNKNOWN, Status.INVOKED) for op in history),
        present=present,
        lost=lost,
        superseded=superseded,
        unexpected=unexpected,
        identical=identical(snapshot),
        nodes=len(snapshot),
        keys=len({key for versions in snapshot.values() for key in versions}),
    )


# --- history files ----------------------------------------------------------------------
def dump_history(history: Sequence[Op]) -> bytes:
    return msgspec.json.encode(list(history))


def load_history(data: bytes) -> list[Op]:
    return msgspec.json.decode(data, type=list[Op])


def dump_snapshot(snapshot: Snapshot) -> bytes:
    return msgspec.json.encode(snapshot)


def load_snapshot(data: bytes) -> Snapshot:
    return msgspec.json.decode(data, type=Snapshot)


# --- the workload (I/O) -----------------------------------------------------------------
@dataclass(slots=True)
class Workload:
    """A rate-limited stream of writes and deletes to a keyspace, through random nodes."""

    urls: list[str]
    api_key: str | None = None
    prefix: str = "chk/"
    keys: int = 100
    rate: float = 50.0  # operations per second
    duration_s: float = 10.0
    delete_ratio: float = 0.1
    timeout_s: float = 2.0
    concurrency: int = 32
    seed: int = 0
    history: list[Op] = field(default_factory=list)

    def key_names(self) -> list[str]:
        return [f"{self.prefix}{i:05d}" for i in range(min(self.keys, MAX_KEYS))]

    async def run(self, client: httpx.AsyncClient, stop: asyncio.Event | None = None) -> list[Op]:
        rng = random.Random(self.seed)
        names = self.key_names()
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        total = int(self.rate * self.duration_s)
        run_tag = f"{self.seed:x}.{int(time.time() * 1000):x}"
        for i in range(total):
            if stop is not None and stop.is_set():
                break
            await _sleep_until(start + i / self.rate)
            kind = Kind.DELETE if rng.random() < self.delete_ratio else Kind.WRITE
            op = Op(
                id=len(self.history),
                kind=kind,
                key=rng.choice(names),
                node=rng.choice(self.urls),
                invoked_s=time.time(),
                value=f"{run_tag}:{len(self.history)}" if kind is Kind.WRITE else None,
            )
            self.history.append(op)
            await slots.acquire()
            task = asyncio.create_task(self._perform(client, op, slots))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        return self.history

    async def _perform(self, client: httpx.AsyncClient, op: Op, slots: asyncio.Semaphore) -> None:
        try:
            url = f"{op.node}/kv/{op.key}"
            headers = _auth(self.api_key)
            if op.kind is Kind.WRITE:
                assert op.value is not None
                headers["Content-Type"] = "text/plain"
                reply = await client.put(
                    url, content=op.value.encode(), headers=headers, timeout=self.timeout_s
                )
            else:
                reply = await client.delete(url, headers=headers, timeout=self.timeout_s)
            record_reply(op, reply.status_code, _json_or_empty(reply))
        except httpx.HTTPError as exc:
            op.status = Status.UNKNOWN
            op.error = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            op.completed_s = time.time()
            slots.release()


def record_reply(op: Op, status_code: int, body: dict[str, object]) -> None:
    """Fill ``op`` from a node's reply: 2xx ok, 4xx failed, anything else unknown."""
    op.http_status = status_code
    if 200 <= status_code < 300:
        context = body.get("context")
        try:
            decoded = decode_context(str(context)) if context else None
        except InvalidContext:
            decoded = None
        if decoded is None:
            op.status = Status.UNKNOWN
            op.error = "acknowledged without a version context"
            return
        op.status = Status.OK
        op.clock = decoded.clock
        hlc = body.get("hlc")
        op.hlc = int(hlc) if isinstance(hlc, int) else decoded.hlc
        origin = body.get("origin")
        op.origin = origin if isinstance(origin, str) else None
    elif 400 <= status_code < 500:
        op.status = Status.FAILED
        op.error = str(body.get("error", status_code))
    else:
        op.status = Status.UNKNOWN
        op.error = str(body.get("error", status_code))


def _json_or_empty(reply: httpx.Response) -> dict[str, object]:
    try:
        body = reply.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _auth(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


# --- reading the final state (I/O) ------------------------------------------------------
async def read_version(
    client: httpx.AsyncClient, url: str, key: str, api_key: str | None
) -> Version | None:
    reply = await client.get(f"{url}/kv/{key}", params={"meta": "true"}, headers=_auth(api_key))
    if reply.status_code == 404:
        return None
    reply.raise_for_status()
    return Version.from_meta(reply.json())


async def list_keys(
    client: httpx.AsyncClient, url: str, prefix: str, api_key: str | None
) -> list[str]:
    """Every live key under ``prefix`` on one node (bounded by ``MAX_KEYS``)."""
    keys: list[str] = []
    after = ""
    while len(keys) < MAX_KEYS:
        params = {"prefix": prefix, "limit": str(LIST_PAGE), "after": after}
        reply = await client.get(f"{url}/kv", params=params, headers=_auth(api_key))
        reply.raise_for_status()
        body = reply.json()
        keys.extend(body["keys"])
        if not body.get("next") or not body["keys"]:
            break
        after = body["next"]
    return keys


async def snapshot(
    client: httpx.AsyncClient,
    urls: Sequence[str],
    keys: Iterable[str],
    prefix: str,
    api_key: str | None,
    concurrency: int = 4,
    discover: bool = True,
) -> Snapshot:
    """Every key's version on every node: ``keys`` plus (``discover``) whatever the nodes
    list under ``prefix``. Few requests in flight: on a busy machine more only queue up."""
    known = set(keys)
    if discover:
        for url in urls:
            known.update(await list_keys(client, url, prefix, api_key))
    slots = asyncio.Semaphore(concurrency)

    async def one(url: str, key: str) -> tuple[str, str, Version | None]:
        async with slots:
            return url, key, await read_version(client, url, key, api_key)

    results = await asyncio.gather(*(one(url, key) for url in urls for key in sorted(known)))
    snap: Snapshot = {url: {} for url in urls}
    for url, key, version in results:
        snap[url][key] = version
    return snap


async def wait_identical(
    client: httpx.AsyncClient,
    urls: Sequence[str],
    keys: Iterable[str],
    prefix: str,
    api_key: str | None,
    timeout_s: float,
    poll_s: float = 0.05,
    trace: list[tuple[float, int]] | None = None,
) -> tuple[Snapshot, float | None]:
    """Poll until every node holds identical data; (final snapshot, seconds taken or None).

    One full read, then only the keys that still differ (cheap, so the time is precise:
    without client writes a key that agrees everywhere stays so), then a full read again to
    confirm. The time is taken at the end of the first poll that found no difference.
    ``trace`` (if given) receives (seconds, keys still differing) after every poll."""
    start = time.monotonic()
    deadline = start + timeout_s
    snap = await _full_snapshot(client, urls, keys, prefix, api_key, deadline)
    pending = differing_keys(snap)
    while time.monotonic() < deadline:
        if trace is not None and len(trace) < MAX_TRACE:
            trace.append((round(time.monotonic() - start, 3), len(pending)))
        if not pending:
            took_s = time.monotonic() - start
            snap = await _full_snapshot(client, urls, keys, prefix, api_key, deadline)
            pending = differing_keys(snap)
            if not pending:
                return snap, took_s
            continue
        await asyncio.sleep(poll_s)
        try:
            part = await snapshot(client, urls, pending, prefix, api_key, discover=False)
        except httpx.HTTPError:
            continue
        for url, versions in part.items():
            snap[url].update(versions)
        pending = differing_keys(part)
    return snap, None


async def _full_snapshot(
    client: httpx.AsyncClient,
    urls: Sequence[str],
    keys: Iterable[str],
    prefix: str,
    api_key: str | None,
    deadline: float,
) -> Snapshot:
    keys = list(keys)
    while True:
        try:
            return await snapshot(client, urls, keys, prefix, api_key)
        except httpx.HTTPError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.2)
