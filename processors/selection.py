"""Top-``m`` selection over score vectors: the exact answers of ``argpartition`` and
``argsort``, found cheaply when the scores allow it (ranking calls these per user, per batch).

>>> import numpy as np
>>> x = np.array([0.1, 0.9, 0.4, 0.7])
>>> sorted(top(x, 2).tolist()), best_first(x, 2).tolist()
([1, 3], [1, 3])
"""

from __future__ import annotations

import numpy as np


def top(x: np.ndarray, m: int) -> np.ndarray:
    """The indices of the ``m`` largest entries of ``x``, in no particular order."""
    if x.size <= m:
        return np.arange(x.size)
    return np.argpartition(-x, m)[:m]


# Cheaper equals of ``top`` and of ``argsort(-x)[:m]``.  Both look only at the entries at or
# above a threshold read off a strided sample (about ``2 * m`` of them).  When more than ``m``
# come back and the ``m``-th best of them beats the next (for the ordered head: all of the best
# ``m + 1`` are distinct), every entry left out is worse, so any selection or sort of all of
# ``x`` gives that same answer; otherwise (ties, whose order is the sort's own choice, or a
# threshold that let too few through) the full computation answers.

def _above_sampled_threshold(x: np.ndarray, m: int) -> np.ndarray | None:
    """Indices of the entries of ``x`` at or above a threshold near its ``2m``-th best value
    (``None`` when ``x`` is too short for sampling to pay)."""
    n = x.size
    if n <= 4 * m:
        return None
    sample = x[:: max(1, n // 256)]
    q = sample.size - max(1, (2 * m * sample.size) // n)  # sorted sample[q] ranks about 2m-th in x
    return np.flatnonzero(x >= np.partition(sample, q)[q])


def top_set(x: np.ndarray, m: int) -> np.ndarray:
    """The same rows as :func:`top` (in another order)."""
    above = _above_sampled_threshold(x, m)
    if above is not None and above.size > m:
        values = x[above]
        part = np.argpartition(-values, m)
        if values[part[:m]].min() > values[part[m]]:
            return above[part[:m]]
    return top(x, m)


def best_first(x: np.ndarray, m: int) -> np.ndarray:
    """``np.argsort(-x)[:m]``.

    >>> s = np.random.default_rng(0).random(1000); bool((best_first(s, 50) == np.argsort(-s)[:50]).all())
    True
    """
    above = _above_sampled_threshold(x, m)
    if above is not None and above.size > m:
        values = x[above]
        order = np.argsort(-values)[: m + 1]
        head = values[order]
        if (head[:-1] > head[1:]).all():
            return above[order[:m]]
    return np.argsort(-x)[:m]
