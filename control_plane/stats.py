"""Small statistics the experiment figures are built from: rounding, a sample's number, means, ranks."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def number(sample: Mapping[str, Any], key: str) -> float | None:
    value = sample.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def rank(values: Sequence[float], q: float) -> float | None:
    """The q-quantile by nearest rank: the smallest value with at least q of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def weighted_rank(values: Sequence[tuple[float, float]], q: float) -> float | None:
    """The q-quantile by nearest rank of (value, weight) pairs, a value of weight k counting k times;
    with every weight 1 it is `rank`."""
    ordered = sorted(values)
    total = sum(w for _, w in ordered)
    if total <= 0:
        return None
    need, seen = q * total, 0.0
    for value, weight in ordered:
        seen += weight
        if seen >= need:
            return value
    return ordered[-1][0]


def weighted_median(values: Sequence[tuple[float, float]]) -> float | None:
    """The median of (value, weight) pairs: the plain median when the weights are all equal."""
    if not values:
        return None
    if len({w for _, w in values}) == 1:
        return statistics.median(v for v, _ in values)
    return weighted_rank(values, 0.5)


def reduction(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before <= 0:
        return None
    return round(100.0 * (1 - after / before), 3)


def weighted_mean(values: Sequence[tuple[float, float]]) -> float | None:
    """Mean of (value, weight) pairs."""
    total = sum(w for _, w in values)
    return sum(v * w for v, w in values) / total if total > 0 else None


def mean_maps(maps: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per key, the mean over the samples (a key absent from a sample counts as zero)."""
    keys = {k for m in maps for k in m}
    return {k: statistics.fmean(float(m.get(k, 0.0)) for m in maps) for k in keys} if maps else {}
