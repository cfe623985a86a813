"""The ranking blend, learnt online from which item of a shown list a user engaged.

Ranking scores an item ``Σ w_f · x_f`` over its features (the ``reasons`` of a recommendation:
similarity, factors, co-engagement, freshness, popularity, affinity).  A list in which the user
engaged item ``j`` is one observation of a conditional logit (a softmax over the list):
``P(j | list) = exp(s_j) / Σ_i exp(s_i)``.  Each such list takes one SGD step on its
log-likelihood, ``w += rate · (x_j − Σ_i P(i) x_i) − rate · l2 · (w − prior)``: the weights move
towards what the engaged item had more of than the list's average, and are pulled back towards
the hand blend (:class:`processors.ranking.RankConfig`'s weights), where they start.  Only
differences within a list count, so the weights keep ranking's scale and need no intercept; a
list whose user engaged none of its items has no likelihood under this model and teaches
nothing.  Ranking uses the weights, clipped at 0, once ``min_examples`` lists were learnt.

>>> blend = LearnedBlend({"similarity": 1.0, "popularity": 0.2}, learning_rate=0.5, min_examples=1)
>>> for _ in range(50):
...     blend.learn([{"similarity": 0.9, "popularity": 0.1}, {"similarity": 0.1, "popularity": 0.9}], 1)
>>> w = blend.weights()
>>> w["popularity"] > 0.2, w["similarity"] < 1.0
(True, True)
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

FEATURES = ("similarity", "factors", "coengagement", "freshness", "popularity", "affinity")
#: feature → the :class:`processors.ranking.RankConfig` weight it sets
RANK_WEIGHTS = {f: f"w_{f}" for f in FEATURES}


class LearnedBlend:
    def __init__(self, prior: Mapping[str, float], learning_rate: float = 0.05, l2: float = 1e-3,
                 min_examples: int = 200):
        self.prior = dict(prior)
        self.coef = dict(prior)
        self.learning_rate, self.l2, self.min_examples = learning_rate, l2, min_examples
        self.examples = 0

    def features(self, shown: Sequence[Mapping[str, float]]) -> np.ndarray:
        """The shown items' features as a (items × features) array, in :attr:`coef`'s order."""
        return np.array([[feats.get(f, 0.0) for f in self.coef] for feats in shown], dtype=np.float64)

    def learn(self, shown: Sequence[Mapping[str, float]] | np.ndarray, engaged: int) -> None:
        """One list: the features of each shown item (dicts, or :meth:`features`' array) and the
        index of the one the user engaged."""
        x = np.asarray(shown, dtype=np.float64) if isinstance(shown, np.ndarray) else self.features(shown)
        w = np.fromiter(self.coef.values(), dtype=np.float64, count=len(self.coef))
        prior = np.fromiter((self.prior[f] for f in self.coef), dtype=np.float64, count=len(self.coef))
        s = x @ w
        p = np.exp(s - s.max())
        p /= p.sum()
        w += self.learning_rate * (x[engaged] - p @ x - self.l2 * (w - prior))
        self.coef = dict(zip(self.coef, w.tolist()))
        self.examples += 1

    @property
    def ready(self) -> bool:
        return self.examples >= self.min_examples

    def weights(self) -> dict[str, float]:
        """Blend weights: the learnt coefficients clipped at 0 once ready, the prior before."""
        return {f: max(0.0, c) for f, c in self.coef.items()} if self.ready else dict(self.prior)
