"""Summaries of measurements: medians, percentiles, latency recorders."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import attrs

__all__ = ["LatencySummary", "median", "percentile", "summarize"]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) of already sorted values, nearest-rank method."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@attrs.frozen
class LatencySummary:
    """Latencies of one contender, in microseconds."""

    count: int
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float
    mean_us: float

    def as_dict(self) -> dict[str, float]:
        return attrs.asdict(self)


def summarize(samples_ns: Sequence[int]) -> LatencySummary:
    """Percentiles of latencies recorded in nanoseconds, reported in microseconds."""
    ordered = sorted(samples_ns)
    us = 1e-3
    return LatencySummary(
        count=len(ordered),
        p50_us=percentile(ordered, 50) * us,
        p90_us=percentile(ordered, 90) * us,
        p99_us=percentile(ordered, 99) * us,
        max_us=(ordered[-1] * us) if ordered else math.nan,
        mean_us=(statistics.fmean(ordered) * us) if ordered else math.nan,
    )
