"""Which user a read asks for: Zipf-like popularity over the seeded users, a few of them asked for most."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class ZipfPicker(Generic[T]):
    """Draws items with probability proportional to 1 / rank ** exponent: the first item is rank 1.

    Exponent 0 is uniform; about 1 is the classic web-cache popularity; larger is more skewed.
    """

    def __init__(self, items: Sequence[T], exponent: float, rng: random.Random | None = None) -> None:
        if not items:
            raise ValueError("no items to pick from")
        if exponent < 0:
            raise ValueError(f"the Zipf exponent must be >= 0, not {exponent}")
        self.items = items
        self._cumulative = list(itertools.accumulate(rank**-exponent for rank in range(1, len(items) + 1)))
        self._random = (rng or random.Random()).random  # noqa: S311 - popularity, not secrecy

    def pick(self) -> T:
        drawn = self._random() * self._cumulative[-1]
        return self.items[min(bisect.bisect_right(self._cumulative, drawn), len(self.items) - 1)]

    def share_of_top(self, count: int) -> float:
        """The probability that a draw is one of the `count` most popular items."""
        return self._cumulative[min(count, len(self.items)) - 1] / self._cumulative[-1]
