"""The store's sorted key index: a ``sortedcontainers.SortedList`` and its bulk insert.

Why. ``SortedList.update`` of k keys into n adds them one ``add`` at a time when
k < n / 4 (a bisect, an insert and an index update each: ~1 us per key, measured with
batches of 1 000 into 100 000), and re-sorts everything otherwise. A batch or a push of
new keys lands in few sublists (sequential keys: all in the last one), so ``add_new``
groups the sorted keys by the sublist they belong to, merges each group in with one
sort of two runs, and splits what grew past twice the load factor: a bisect per group,
not per key. A group of a few keys in a long sublist is bisected in instead
(``FEW_PER_SUBLIST``): a merge pass reads the whole sublist for each group.

It reaches into the list's documented layout (``_lists``: sorted sublists, ``_maxes``:
their last values, ``_len``, ``_load``, ``_index``: the positional tree, rebuilt lazily
once cleared), as ``SortedList.update`` itself does; sortedcontainers is pinned.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable

from sortedcontainers import SortedList

# A group this many times smaller than its sublist is inserted key by key: a merge pass
# compares every key of the sublist, and keys spread by hash put a few in each of the
# n / load sublists, so a 1 000-key batch made one pass over the whole index (measured
# at 1M keys: 50 ms a batch, and 1.0-1.8 s turns for a push of many keys; 5 ms with this).
FEW_PER_SUBLIST = 16


def add_new(index: SortedList[str], keys: Iterable[str]) -> None:
    """Add ``keys`` (none of them in ``index``, each once) to ``index``."""
    values = sorted(keys)
    maxes = index._maxes
    if not values:
        return
    if not maxes or len(values) * 4 >= len(index):
        index.update(values)  # an empty or small index: one sort of everything is cheapest
        return
    lists, load, last = index._lists, index._load, len(maxes) - 1
    touched: list[int] = []
    start, count = 0, len(values)
    while start < count:
        pos = bisect_left(maxes, values[start], 0, last)  # past the last max: the last one
        end = count if pos == last else bisect_right(values, maxes[pos], start)
        sublist = lists[pos]
        if (end - start) * FEW_PER_SUBLIST < len(sublist):
            for value in values[start:end]:  # a few keys: a bisect each, no pass over it
                insort(sublist, value)
        else:
            sublist.extend(values[start:end])
            sublist.sort()  # two sorted runs: one merge pass
        maxes[pos] = sublist[-1]
        touched.append(pos)
        start = end
    for pos in reversed(touched):  # right to left: the positions to the left stay valid
        sublist = lists[pos]
        if len(sublist) > 2 * load:
            # n near-equal pieces of load..1.5*load keys: none shorter than half the load
            # (SortedList's invariant; a short last piece of a load-sized cut broke it)
            n = len(sublist) // load
            cuts = [len(sublist) * i // n for i in range(n + 1)]
            pieces = [sublist[cuts[i] : cuts[i + 1]] for i in range(n)]
            lists[pos : pos + 1] = pieces
            maxes[pos : pos + 1] = [piece[-1] for piece in pieces]
    index._len += count
    del index._index[:]
