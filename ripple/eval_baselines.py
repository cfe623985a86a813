"""The baseline recommenders of the prequential replay, in numpy over a fixed item list.

* :class:`RecentPopularity` — the items with the highest exponentially decayed interaction count.
* :class:`ISGD` — incremental implicit MF (Vinagre et al. 2014: positive-only SGD, items ranked
  by ``|1 - u·i|``).
* :class:`FactorsOnly` (``FunkMF``) — ``models.factors.ImplicitMF`` alone (river FunkMF, 1
  positive + sampled negatives per event), scoring every item.
* :class:`ItemTransitions` — sequence-aware: what came right after the user's last item.
* :class:`PeriodicEASE` — the nightly batch job: EASE refit from all past events every 5 % of
  the stream.

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


class ItemTransitions(_Indexed):
    """Sequence-aware: the items that most often came right after the user's last item (a first-
    order Markov chain over every user's consecutive events); popularity fills the rest."""

    def __init__(self, items: Sequence[str], name: str = "transitions"):
        super().__init__(items)
        self.name = name
        self.next: dict[int, dict[int, float]] = {}
        self.last: dict[str, int] = {}
        self.counts = np.zeros(len(self.items))

    def recommend(self, user: str, k: int, now: float) -> list[str]:
        scores = self.counts / (self.counts.max() + 1.0)  # < 1: any transition outranks popularity
        after = self.next.get(self.last.get(user, -1))
        if after:
            scores = scores.copy()
            idx = np.fromiter(after, dtype=np.int64, count=len(after))
            scores[idx] += np.fromiter(after.values(), dtype=np.float64, count=len(after))
        return self._top(user, scores, k)

    def learn(self, user: str, item: str, ts: float) -> None:
        j = self._mark(user, item)
        prev = self.last.get(user)
        if prev is not None and prev != j:
            row = self.next.setdefault(prev, {})
            row[j] = row.get(j, 0.0) + 1.0
        self.last[user] = j
        self.counts[j] += 1.0


class PeriodicEASE(_Indexed):
    """The nightly batch job: EASE (Steck 2019), an item-item model refit from all past events
    every ``refit_every`` events (and first after ``refit_every``), scoring a user's history
    with the last fit; popularity before the first fit.  Needs an items × items matrix: catalogs
    above ``max_items`` are left out (``enabled`` is False)."""

    def __init__(self, items: Sequence[str], refit_every: int, l2: float = 200.0, max_items: int = 6000,
                 name: str = "EASE (periodic)"):
        super().__init__(items)
        self.name, self.refit_every, self.l2 = name, max(1, refit_every), l2
        self.enabled = len(self.items) <= max_items
        self.counts = np.zeros(len(self.items))
        self.B: np.ndarray | None = None
        self._events = 0

    def recommend(self, user: str, k: int, now: float) -> list[str]:
        seen = self.seen.get(user)
        if self.B is None or not seen:
            return self._top(user, self.counts, k)
        return self._top(user, self.B[list(seen)].sum(axis=0), k)

    def learn(self, user: str, item: str, ts: float) -> None:
        self.counts[self._mark(user, item)] += 1.0
        self._events += 1
        if self._events % self.refit_every == 0:
            self._refit()

    def _refit(self) -> None:
        n = len(self.items)
        X = np.zeros((len(self.seen), n), dtype=np.float32)
        for row, cols in enumerate(self.seen.values()):
            X[row, list(cols)] = 1.0
        G = (X.T @ X).astype(np.float64)
        G[np.diag_indices(n)] += self.l2
        P = np.linalg.inv(G)
        B = P / (-np.diag(P))
        B[np.diag_indices(n)] = 0.0
        self.B = B.astype(np.float32)
