"""Cosine calibration: the same behaviour from sentence models whose cosines sit on different scales.

all-MiniLM-L6-v2 gives unrelated short texts cosines near 0.1 and a comment with a fitting reply
near 0.4; multilingual-e5-small gives the same pairs about 0.75 and 0.85.  A threshold chosen on
one model means nothing on the other.  Every cosine constant in Ripple (the reply threshold, the
echo and near-duplicate rules, the weight of similarity in ranking) is therefore stated on the
*reference* scale, all-MiniLM-L6-v2's, and carried to the running model by an affine map fitted on
a calibration set: two texts of one intent of the English seed bank (example comments and
replies; true pairs), and two texts of different intents (random pairs).  The map is piecewise linear through three points: the model's median random-pair cosine goes to
the reference's, its median true-pair cosine to the reference's, and 1 (the same text) to 1.
For the reference model itself it is the identity.

>>> cal = Calibration(random=0.75, true=0.85)
>>> [round(cal.to_model(c), 4) for c in (REFERENCE.random, REFERENCE.true, 1.0)]
[0.75, 0.85, 1.0]
>>> round(cal.to_reference(cal.to_model(0.6)), 6)
0.6
>>> REFERENCE.to_model(0.42) == 0.42
True
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

CALIBRATION_VERSION = 1


@dataclass(frozen=True)
class Calibration:
    """Median cosines of random and of true (comment, reply) pairs under one model."""

    random: float
    true: float
    pairs: int = 0  # how many of each were measured

    @property
    def scale(self) -> float:
        """Model cosine units per reference unit between the random and true medians."""
        return (self.true - self.random) / (REFERENCE.true - REFERENCE.random)

    def slope_at(self, reference_cosine: float) -> float:
        """Model units per reference unit around ``reference_cosine`` (a margin maps by it)."""
        if reference_cosine <= REFERENCE.true:
            return self.scale
        return (1.0 - self.true) / (1.0 - REFERENCE.true)

    def to_model(self, reference_cosine: float) -> float:
        """A cosine constant on the reference scale, as the same point on this model's scale."""
        if (self.random, self.true) == (REFERENCE.random, REFERENCE.true):
            return reference_cosine
        if reference_cosine <= REFERENCE.true:
            return self.random + (reference_cosine - REFERENCE.random) * self.scale
        return self.true + (reference_cosine - REFERENCE.true) * self.slope_at(reference_cosine)

    def to_reference(self, cosine):
        """This model's cosine(s) on the reference scale (a number or a numpy array)."""
        c = np.asarray(cosine, dtype=np.float64)
        low = REFERENCE.random + (c - self.random) / self.scale
        high = REFERENCE.true + (c - self.true) * (1.0 - REFERENCE.true) / (1.0 - self.true)
        out = np.where(c <= self.true, low, high)
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict:
        return {"version": CALIBRATION_VERSION, "random": self.random, "true": self.true, "pairs": self.pairs}

    @classmethod
    def from_dict(cls, doc: dict) -> "Calibration":
        if doc.get("version") != CALIBRATION_VERSION:
            raise ValueError(f"calibration version {doc.get('version')!r}, expected {CALIBRATION_VERSION}")
        return cls(float(doc["random"]), float(doc["true"]), int(doc.get("pairs", 0)))


#: all-MiniLM-L6-v2 on the calibration set (``measure`` with the shipped seed bank); a unit test
#: checks that measuring it again gives these
REFERENCE = Calibration(random=0.1335, true=0.2494)


def calibration_pairs(contexts: dict[str, list[str]], replies: dict[str, list[str]], *,
                      per_intent: int = 120, seed: int = 0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(true pairs, random pairs): two different texts of one intent (example comments and
    replies alike), and a text of the intent with one of another intent; deterministic for a
    ``seed``."""
    rng = _random.Random(seed)
    texts = {i: sorted(set(contexts.get(i, [])) | set(replies.get(i, []))) for i in set(contexts) | set(replies)}
    intents = sorted(i for i, t in texts.items() if len(t) >= 2)
    true, other = [], []
    for intent in intents:
        for _ in range(per_intent):
            a, b = rng.sample(texts[intent], 2)
            true.append((a, b))
            elsewhere = rng.choice([i for i in intents if i != intent])
            other.append((a, rng.choice(texts[elsewhere])))
    return true, other


def measure(embed: Callable[[Sequence[str]], np.ndarray], contexts: dict[str, list[str]],
            replies: dict[str, list[str]]) -> Calibration:
    """The calibration of the model behind ``embed`` on the pairs of :func:`calibration_pairs`."""
    true, other = calibration_pairs(contexts, replies)
    texts = sorted({t for pair in true + other for t in pair})
    vectors = dict(zip(texts, embed(texts)))

    def median(pairs) -> float:
        return float(np.median([float(vectors[a] @ vectors[b]) for a, b in pairs]))

    return Calibration(random=round(median(other), 4), true=round(median(true), 4), pairs=len(true))
