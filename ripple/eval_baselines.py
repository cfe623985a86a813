"""The baseline recommenders of the prequential replay, in numpy over a fixed item list.

* :class:`RecentPopularity` — the items with the highest exponentially decayed interaction count.
* :class:`ISGD` — incremental implicit MF (Vinagre et al. 2014: positive-only SGD, items ranked
  by ``|1 - u·i|``).
* :class:`FactorsOnly` (``FunkMF``) — ``models.factors.ImplicitMF`` alone (river FunkMF, 1
  positive + sampled negatives per event), scoring every item.

Each excludes the items the user already interacted with; ties go to catalog order.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# Baseline settings were chosen on the first 20,000 MovieLens-100K events only (the tuning prefix;
# docs/benchmarks.md), like Ripple's blend in ``ripple.eval_ripple.eval_config``:
POP_HALF_LIFE_S = 30 * 86400.0  # popularity: 14 days .. all-time are within 0.001 HR@10; 1 day is worse
FUNKMF_LEARNING_RATE, FUNKMF_NEGATIVES = 0.1, 8  # FunkMF baseline: HR@10 0.104 on the prefix vs 0.066 at 0.05/3


class _Indexed:
    """Item ↔ row index and per-user seen rows, shared by the numpy baselines."""

    def __init__(self, items: Sequence[str]):
        self.items = list(items)
        self.index = {it: j for j, it in enumerate(self.items)}
        self.seen: dict[str, set[int]] = {}

    def _top(self, user: str, scores: np.ndarray, k: int) -> list[str]:
        s = np.asarray(scores, dtype=np.float64).copy()
        seen = self.seen.get(user)
        if seen:
            s[list(seen)] = -np.inf
        k = min(k, len(s) - len(seen or ()))
        if k <= 0:
            return []
        top = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
        top = top[np.lexsort((top, -s[top]))]  # by score, ties by catalog order: deterministic
        return [self.items[j] for j in top]

    def _mark(self, user: str, item: str) -> int:
        j = self.index[item]
        self.seen.setdefault(user, set()).add(j)
        return j


class RecentPopularity(_Indexed):
    """Items by exponentially decayed interaction count (``half_life_s=inf``: all-time counts)."""

    def __init__(self, items: Sequence[str], half_life_s: float = POP_HALF_LIFE_S, name: str = "popularity"):
        super().__init__(items)
        self.name, self.half_life_s = name, half_life_s
        self.counts = np.zeros(len(self.items))
        self._ts: float | None = None

    def recommend(self, user: str, k: int, now: float) -> list[str]:
        return self._top(user, self.counts, k)  # decaying to ``now`` scales every count alike

    def learn(self, user: str, item: str, ts: float) -> None:
        if self._ts is not None and ts > self._ts and math.isfinite(self.half_life_s):
            self.counts *= math.exp(-(ts - self._ts) * math.log(2) / self.half_life_s)
        self._ts = ts if self._ts is None else max(self._ts, ts)
        self.counts[self._mark(user, item)] += 1.0


class ISGD(_Indexed):
    """Incremental SGD MF for positive-only feedback (Vinagre, Jorge & Gama, UMAP 2014).

    Each event pulls ``u·i`` towards 1; items are ranked by ``-|1 - u·i|``.  The defaults are
    the best of learning rate 0.01-0.3, L2 0.01/0.1 and 10/32 factors on the tuning prefix.
    """

    def __init__(self, items: Sequence[str], n_factors: int = 10, learning_rate: float = 0.1, l2: float = 0.1,
                 seed: int = 0, name: str = "ISGD"):
        super().__init__(items)
        self.name, self.learning_rate, self.l2 = name, learning_rate, l2
        self._rng = np.random.default_rng(seed)
        self.n_factors = n_factors
        self.q = self._rng.normal(0.0, 0.1, (len(self.items), n_factors))
        self.p: dict[str, np.ndarray] = {}

    def _user(self, user: str) -> np.ndarray:
        if user not in self.p:
            self.p[user] = self._rng.normal(0.0, 0.1, self.n_factors)
        return self.p[user]

    def recommend(self, user: str, k: int, now: float) -> list[str]:
        return self._top(user, -np.abs(1.0 - self.q @ self._user(user)), k)

    def learn(self, user: str, item: str, ts: float) -> None:
        j, u = self._mark(user, item), self._user(user)
        i = self.q[j].copy()
        err = 1.0 - float(u @ i)
        self.p[user] = u + self.learning_rate * (err * i - self.l2 * u)
        self.q[j] = i + self.learning_rate * (err * u - self.l2 * i)


class FactorsOnly(_Indexed):
    """A ``FactorModel`` (default ``models.factors.ImplicitMF``) scoring every item; uniform negatives."""

    def __init__(self, items: Sequence[str], factors=None, negatives: int = 3, seed: int = 7, name: str = "FunkMF"):
        super().__init__(items)
        if factors is None:
            from models.factors import ImplicitMF

            factors = ImplicitMF()
        self.name, self.factors, self.negatives = name, factors, negatives
        self._rng = np.random.default_rng(seed)

    def recommend(self, user: str, k: int, now: float) -> list[str]:
        return self._top(user, self.factors.scores(user, self.items), k)

    def learn(self, user: str, item: str, ts: float) -> None:
        self._mark(user, item)
        negs = [self.items[j] for j in self._rng.integers(0, len(self.items), self.negatives)]
        self.factors.learn(user, item, negs)
