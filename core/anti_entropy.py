"""Anti-entropy: two replicas find their differing keys by walking their digest trees.

Each descent step is a pure function of one message and the local digest, so a lost
message just ends the session (the next interval starts a new one). A session between
A and B:

    A -> B  DigestStep(root)
    B -> A  DigestStep(the children of the differing root, aligned to it)
    A -> B  DigestStep(the children of the differing ones among those)  ... down ...
    X -> Y  LeafEntries(entries of the first differing leaves, more = some are left)
    Y -> X  SyncRecords(Y's records for differing keys, want = key hashes Y lacks or
            differs, next_leaf = where Y's bound stopped it)
    X -> Y  SyncRecords(X's records for the wanted key hashes)
    X -> Y  LeafEntries(the next differing leaves from next_leaf)   ... until none left

Both sides merge with the normal LWW rule, so both end with the winner. In-sync replicas
exchange one ~30-byte message. A step names only the children of buckets that differed
(``DigestStep.parents``), their hashes packed in order, so its bytes follow the
difference. The leaf phase is bounded per round trip (``max_entries`` entries and
``max_keys`` leaves listed, ``max_keys`` records answered) and the lister keeps the
differing leaves (``Listing``), so a cut repair resumes where it stopped instead of
descending again from the root. Measured at 1M keys with 10 000 missing
(``bench.repair_bench``): restarted sessions and unpacked steps sent 4.5x the missing
records' bytes over three intervals; this protocol sends 1.74x in one session.

Pacing. During a bulk ingest every digest differs from its peers' by the versions still
in flight, so a session there finds thousands of "missing" keys that the pushes already
carry, and re-ships them (measured: 6.6% of a 3-node cluster's CPU during an ingest).
``Pacing`` lets a session wait while this node applied at least ``busy_versions`` new
versions since the last interval, at most ``max_waits`` intervals in a row: repair is
slowed under sustained load, never stopped.
"""

from __future__ import annotations

import random
from array import array
from bisect import bisect_left
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from rumordb.core.anti_entropy_wire import MAX_STEP_CHILDREN, pack, unpack
from rumordb.core.digest import Digest, diff_entries, next_width
from rumordb.core.messages import DigestStep, LeafEntries, SyncRecords

_T = TypeVar("_T")
_I = TypeVar("_I")


class Pacing:
    """Whether the next anti-entropy session starts now or waits for an ingest to settle."""

    __slots__ = ("_applied", "_waits", "busy_versions", "max_waits")

    def __init__(self, busy_versions: int, max_waits: int) -> None:
        self.busy_versions, self.max_waits = busy_versions, max_waits
        self._applied = 0  # versions applied by the last interval
        self._waits = 0  # intervals waited in a row

    def due(self, applied: int) -> bool:
        """``applied``: versions this node applied so far (client writes and peers')."""
        busy = 0 < self.busy_versions <= applied - self._applied
        self._applied = applied
        if busy and self._waits < self.max_waits:
            self._waits += 1
            return False
        self._waits = 0
        return True


@dataclass(slots=True)
class Listing:
    """The differing leaves one session still lists to its peer: resumable state.

    ``start``: the first leaf the peer has not handled; ``end``: past the last one sent;
    ``moved``: the interval (the lister's count, ``AntiEntropySessions``) it was made in or
    last moved forward in.
    """

    session: int
    width: int
    leaves: array[int]
    start: int = 0
    end: int = field(default=0)
    moved: int = 0


def start(sender: str, session: int, digest: Digest) -> DigestStep:
    return DigestStep(sender, session, 0, 0, [0], pack([digest.root]), digest.leaf_bits)


def _children(above: int, width: int, parents: Sequence[int]) -> list[int]:
    shift = width - above
    return [child for p in parents for child in range(p << shift, (p + 1) << shift)]


def _aligned_hashes(digest: Digest, width: int, indices: list[int]) -> bytes:
    mine = digest.hashes(width, indices)
    return pack([mine.get(i, 0) for i in indices])


def _window(indices: list[int], limit: int, rng: random.Random) -> list[int]:
    """At most ``limit`` of the ascending ``indices``, from a random place: a step cut by
    its size bound does not starve the same buckets every session."""
    if len(indices) <= limit:
        return indices
    offset = rng.randrange(len(indices))
    wrapped = max(0, offset + limit - len(indices))
    return sorted(indices[offset : offset + limit] + indices[:wrapped])


Work = Generator[None, None, _T]  # a step handled in slices: each ``next`` does one


def drain(work: Work[_T]) -> _T:
    """Run ``work`` to its end at once (what a step costs unsliced)."""
    while True:
        try:
            next(work)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def _parents_per_slice(slice_items: int, fan_bits: int) -> int:
    """Parents whose ``2**fan_bits`` children each make at most ``slice_items`` (0: all)."""
    return max(1, slice_items >> fan_bits) if slice_items else 0


def pieces(items: Sequence[_I], size: int) -> Iterator[Sequence[_I]]:
    """``items`` in consecutive slices of at most ``size`` (one slice if ``size`` < 1)."""
    if size < 1 or len(items) <= size:
        yield items
        return
    for first in range(0, len(items), size):
        yield items[first : first + size]


def on_digest(
    sender: str, step: DigestStep, digest: Digest, rng: random.Random
) -> DigestStep | Listing | None:
    """``on_digest_work`` done at once."""
    return drain(on_digest_work(sender, step, digest, rng, 0))


def on_digest_work(
    sender: str, step: DigestStep, digest: Digest, rng: random.Random, slice_items: int
) -> Work[DigestStep | Listing | None]:
    """Compare the peer's hashes with ours; descend, or return the differing leaves.

    ``step`` is checked whole (``core.anti_entropy_wire``). The session descends to the
    finer of the two shapes' leaves: buckets finer than our own leaves are computed from
    the leaf entries (``Digest.hashes``). Sliced: at most ``slice_items`` children are
    compared, or hashed for the next step, per slice (0: all at once). Measured at 1M
    keys, 1% missing: the widest steps compared or hashed 40 000-60 000 children, 110-140
    ms of CPU in one piece. The answer does not depend on the slicing (the random window
    is drawn once, between the two phases).
    """
    leaf_bits = max(digest.leaf_bits, step.leaf_bits)
    fan_bits = step.width - step.above
    theirs = unpack(step.hashes)
    differing: list[int] = []
    offset = done = 0  # children compared so far; in this slice
    for parents in pieces(step.parents, _parents_per_slice(slice_items, fan_bits)):
        indices = _children(step.above, step.width, parents)
        if slice_items and done and done + len(indices) > slice_items:
            yield
            done = 0
        mine = digest.hashes(step.width, indices)
        aligned = theirs[offset : offset + len(indices)]
        differing.extend(i for i, h in zip(indices, aligned, strict=True) if mine.get(i, 0) != h)
        offset += len(indices)
        done += len(indices)
    if not differing:
        return None
    below = next_width(step.width, leaf_bits)
    if below is None:
        return Listing(step.session, step.width, array("I", differing))  # < 2**24: 4 B each
    parents = _window(differing, MAX_STEP_CHILDREN >> (below - step.width), rng)
    packed: list[bytes] = []
    for some in pieces(parents, _parents_per_slice(slice_items, below - step.width)):
        children = _children(step.width, below, some)
        if slice_items and done and done + len(children) > slice_items:
            yield
            done = 0
        packed.append(_aligned_hashes(digest, below, children))
        done += len(children)
    return DigestStep(sender, step.session, step.width, below, parents, b"".join(packed), leaf_bits)


def leaf_chunk(
    sender: str, listing: Listing, digest: Digest, max_entries: int, max_keys: int
) -> LeafEntries:
    """``leaf_chunk_work`` done at once."""
    return drain(leaf_chunk_work(sender, listing, digest, max_entries, max_keys, 0))


def leaf_chunk_work(
    sender: str, listing: Listing, digest: Digest, max_entries: int, max_keys: int,
    slice_items: int,
) -> Work[LeafEntries]:  # fmt: skip
    """The next leaves of ``listing`` from its start: at most ``max_entries`` entries and
    ``max_keys`` leaves (every differing leaf asks for at least one record), at least one;
    sliced every ``slice_items`` leaves and entries listed (0: never)."""
    leaves: list[int] = []
    packed: list[bytes] = []
    count = 0
    position = listing.start
    done = 0  # leaves and entries listed since the last slice
    while position < len(listing.leaves) and len(leaves) < max_keys:
        if slice_items and done >= slice_items:
            yield
            done = 0
        leaf = listing.leaves[position]
        mine = digest.pairs(listing.width, leaf)
        if leaves and count + len(mine) > max_entries:
            break
        leaves.append(leaf)
        packed.append(pack([v for pair in mine for v in pair]))
        count += len(mine)
        done += 1 + len(mine)
        position += 1
    listing.end = position
    more = position < len(listing.leaves)
    return LeafEntries(sender, listing.session, listing.width, leaves, packed, more)


def resume(listing: Listing, answer: SyncRecords) -> bool:
    """Move past the leaves the peer handled (``answer.next_leaf``); whether any are left.
    An answer that does not move forward (stale, or repeated) resumes nothing."""
    if answer.session != listing.session or listing.start >= len(listing.leaves):
        return False
    if answer.next_leaf <= listing.leaves[listing.start]:
        return False
    listing.start = bisect_left(listing.leaves, answer.next_leaf, listing.start, listing.end)
    return listing.start < len(listing.leaves)


def on_leaf_entries(
    message: LeafEntries, digest: Digest, max_keys: int
) -> tuple[list[str], list[int], int]:
    """``on_leaf_entries_work`` done at once."""
    return drain(on_leaf_entries_work(message, digest, max_keys, 0))


def on_leaf_entries_work(
    message: LeafEntries, digest: Digest, max_keys: int, slice_items: int
) -> Work[tuple[list[str], list[int], int]]:
    """The keys whose records we send, the key hashes we want from the peer, and the
    first leaf left unhandled (one past the last if none): a leaf is handled whole, and
    only while both lists stay within ``max_keys``. ``message`` is checked whole. Sliced
    every ``slice_items`` leaves and entries compared (0: never)."""
    send: list[str] = []
    want: list[int] = []
    next_leaf = message.leaves[-1] + 1 if message.leaves else 0
    done = 0
    for leaf, packed in zip(message.leaves, message.pairs, strict=True):
        if slice_items and done >= slice_items:
            yield
            done = 0
        mine_leaf = digest.entries(message.width, leaf)
        flat = unpack(packed)
        theirs = dict(zip(flat[0::2], flat[1::2], strict=True))
        mine_differs, only_theirs = diff_entries(mine_leaf, theirs)
        leaf_want = [kh for kh in mine_differs if kh in theirs] + only_theirs
        grown = max(len(send) + len(mine_differs), len(want) + len(leaf_want))
        if (send or want) and grown > max_keys:
            next_leaf = leaf
            break
        send.extend(mine_leaf[kh][1] for kh in mine_differs)
        want.extend(leaf_want)
        done += 1 + len(mine_leaf) + len(theirs)
    return send, want, next_leaf


def wanted_keys(want: list[int], digest: Digest, max_keys: int) -> list[str]:
    """``wanted_keys_work`` done at once."""
    return drain(wanted_keys_work(want, digest, max_keys, 0))


def wanted_keys_work(
    want: list[int], digest: Digest, max_keys: int, slice_items: int
) -> Work[list[str]]:
    """The keys behind the key hashes a peer asked for (unknown hashes are skipped)."""
    keys: list[str] = []
    for number, some in enumerate(pieces(want[:max_keys], slice_items)):
        if number:
            yield
        for khash in some:
            key = digest.key_of(khash)
            if key is not None:
                keys.append(key)
    return keys
