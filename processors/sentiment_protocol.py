"""The sentiment seam: a compound polarity score per text, and what the domain does with it.

Adapters live in ``models/`` (``models.sentiment.VaderSentiment``); the domain only sees
:class:`SentimentAnalyzer`.  Scores follow the VADER convention: a compound value in
``[-1, 1]``, negative at or below ``-0.05``, positive at or above ``0.05``.

Examples
--------
>>> class Fixed:
...     version = "fixed"
...     def score(self, text: str) -> float:
...         return -0.6 if "died" in text else 0.3
>>> isinstance(Fixed(), SentimentAnalyzer)
True
>>> polarity(Fixed().score("My dog died today"))
'negative'
>>> engagement_weight("comment", -0.6), engagement_weight("comment", 0.3), engagement_weight("like", None)
(0.0, None, None)
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

NEGATIVE = -0.05
POSITIVE = 0.05


@runtime_checkable
class SentimentAnalyzer(Protocol):
    """Compound sentiment of a text, a float in ``[-1, 1]``."""

    version: str

    def score(self, text: str) -> float: ...


def polarity(score: float, *, negative: float = NEGATIVE, positive: float = POSITIVE) -> str:
    """``'negative'``, ``'neutral'`` or ``'positive'`` for a compound score."""
    if score <= negative:
        return "negative"
    if score >= positive:
        return "positive"
    return "neutral"


def engagement_weight(kind: str, sentiment: float | None, *, negative: float = NEGATIVE) -> float | None:
    """Weight override for ``Recommender.on_engagement``: ``0.0`` for a negative comment.

    A negative comment still counts as an event (and marks the post as seen) but is not a
    positive interest signal.  ``None`` means "use the default action weight".
    """
    if kind == "comment" and sentiment is not None and sentiment <= negative:
        return 0.0
    return None
