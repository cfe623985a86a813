"""One interval's engagements as per-post decayed sums: the form in which popularity
(:mod:`processors.item_state`) and trends (:mod:`processors.trends`) travel between workers.

>>> index, sums, newest = decayed_sums(["p1", "p2", "p1"], [1.0, 2.0, 1.0], [0.0, 5.0, 10.0], [0.0, 0.1])
>>> index, newest.tolist()
({'p1': 0, 'p2': 1}, [10.0, 5.0])
>>> [round(float(x), 4) for x in sums[index["p1"]]]
[2.0, 1.3679]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def decayed_sums(posts: Sequence[str], weights: Sequence[float], times: Sequence[float],
                 rates: Sequence[float]) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """``(row of each post, sums, newest)``: per post its newest event time, and per decay rate
    (per second) the sum of its weights decayed to that time, ``Σ w · exp(-(newest - t) · rate)``;
    ``sums`` is (posts × rates)."""
    index: dict[str, int] = {}
    at = np.fromiter((index.setdefault(p, len(index)) for p in posts), dtype=np.int64, count=len(posts))
    t = np.asarray(times, dtype=np.float64)
    newest = np.full(len(index), -np.inf)
    np.maximum.at(newest, at, t)
    age, w = newest[at] - t, np.asarray(weights, dtype=np.float64)
    sums = np.stack([np.bincount(at, weights=w * np.exp(-age * rate), minlength=len(index)) for rate in rates], axis=1)
    return index, sums, newest
