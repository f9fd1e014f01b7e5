"""Percentiles as the pages state them: nearest rank, so a figure is always one of the values seen
(a p90 over three waits is the longest of them, not an interpolation nor the middle one)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def nearest_rank(values: Sequence[float], percentile: float) -> float:
    """The smallest value with at least `percentile`% of the values at or below it."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return ordered[rank - 1]
