"""Comparing timing distributions without scipy: the two-sample Kolmogorov-Smirnov statistic."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence


def ks_statistic(first: Sequence[float], second: Sequence[float]) -> float:
    """The largest gap between the two samples' empirical distribution functions (0: alike, 1: apart)."""
    first, second = sorted(first), sorted(second)

    def cdf(sample: Sequence[float], x: float) -> float:
        return bisect.bisect_right(sample, x) / len(sample)

    return max(abs(cdf(first, x) - cdf(second, x)) for x in (*first, *second))


def ks_critical(n: int, m: int, alpha: float) -> float:
    """The statistic above which the samples differ at level `alpha` (the asymptotic bound, as tables give)."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))
