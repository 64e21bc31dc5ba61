"""Replication lag: how long a version takes from its write to every counted node.

The checker records one lag per version that reached every counted node before being
overwritten (``Convergence.dissemination_s``). Percentiles use the nearest-rank rule (the
value at rank ``ceil(q * n)``), so every figure is a lag that happened. The CDF is kept
at fixed quantiles, finer in the tail, so ``metrics.json`` stays small whatever the
number of writes, and runs (or a live cluster measured the same way) can be overlaid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Every percent, then every tenth of a percent above 99: where the tail lives.
CDF_QUANTILES = tuple(i / 100 for i in range(100)) + tuple((990 + i) / 1000 for i in range(1, 11))


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted, non-empty ``ordered``."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def cdf_points(values: Sequence[float]) -> list[list[float]]:
    """``[[q, lag_s], ...]`` at ``CDF_QUANTILES`` (q = 0 is the smallest lag, 1 the largest)."""
    if not values:
        return []
    ordered = sorted(values)
    return [[q, nearest_rank(ordered, q)] for q in CDF_QUANTILES]


def percentile_from_cdf(points: Sequence[Sequence[float]], q: float) -> float | None:
    """The lag at quantile ``q`` read back from ``cdf_points`` (None when there is none)."""
    found = [lag for at, lag in points if at >= q - 1e-12]
    return found[0] if found else None
