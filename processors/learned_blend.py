"""The ranking blend, learned online from what users did with the lists they were shown.

Every shown item is an example: its features (the ``reasons`` of the recommendation: similarity,
factors, co-engagement, freshness, popularity, affinity) with label 1 when the user then engaged
it, 0 when they engaged something else.  A logistic regression on them is trained by SGD, one
list at a time, starting from the hand blend (:class:`processors.ranking.RankConfig`'s weights as
its coefficients), so it ranks exactly as the hand blend until feedback moves it; ranking uses its
coefficients, clipped at 0, as the blend weights once ``min_examples`` lists were learnt.

>>> blend = LearnedBlend({"similarity": 1.0, "popularity": 0.2}, learning_rate=0.5, min_examples=1)
>>> for _ in range(50):
...     blend.learn([{"similarity": 0.9, "popularity": 0.1}, {"similarity": 0.1, "popularity": 0.9}], 1)
>>> w = blend.weights()
>>> w["popularity"] > 0.2
True
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

FEATURES = ("similarity", "factors", "coengagement", "freshness", "popularity", "affinity")
#: feature → the :class:`processors.ranking.RankConfig` weight it sets
RANK_WEIGHTS = {f: f"w_{f}" for f in FEATURES}


class LearnedBlend:
    def __init__(self, prior: Mapping[str, float], learning_rate: float = 0.05, l2: float = 1e-4,
                 min_examples: int = 200):
        self.prior = dict(prior)
        self.coef = dict(prior)
        self.bias = 0.0
        self.learning_rate, self.l2, self.min_examples = learning_rate, l2, min_examples
        self.examples = 0

    def learn(self, shown: Sequence[Mapping[str, float]], engaged: int | None) -> None:
        """One list: the features of each shown item, and the index of the one engaged (``None``:
        none of them)."""
        for i, feats in enumerate(shown):
            z = self.bias + sum(self.coef[f] * feats.get(f, 0.0) for f in self.coef)
            p = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
            g = p - (1.0 if i == engaged else 0.0)
            for f in self.coef:
                self.coef[f] -= self.learning_rate * (g * feats.get(f, 0.0) + self.l2 * (self.coef[f] - self.prior[f]))
            self.bias -= self.learning_rate * g
        self.examples += 1

    @property
    def ready(self) -> bool:
        return self.examples >= self.min_examples

    def weights(self) -> dict[str, float]:
        """Blend weights: the learnt coefficients clipped at 0 once ready, the prior before."""
        return {f: max(0.0, c) for f, c in self.coef.items()} if self.ready else dict(self.prior)
