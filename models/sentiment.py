"""VADER sentiment (``vaderSentiment`` package) behind ``processors.sentiment_protocol``.

The lexicon (``vader_lexicon.txt``) and emoji table ship inside the wheel, so the analyser
works offline; nothing is downloaded.  Scores are VADER's *compound* value in ``[-1, 1]``.

Examples
--------
>>> sa = VaderSentiment()
>>> sa.score("My dog died today") < -0.05 < 0.05 < sa.score("Congrats on the new job!")
True
>>> [round(s, 2) for s in sa.scores(["", "ok"])]
[0.0, 0.3]
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Sequence

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer


def _package_version() -> str:
    try:
        return version("vaderSentiment")
    except PackageNotFoundError:  # pragma: no cover - installed without metadata
        return "unknown"


class VaderSentiment:
    """Rule/lexicon-based sentiment analyser (satisfies ``SentimentAnalyzer``).

    Thread-safe for reading; one instance per process is enough.
    """

    def __init__(self) -> None:
        self._analyzer = SentimentIntensityAnalyzer()
        self.version = f"vader-{_package_version()}"

    def score(self, text: str) -> float:
        """Compound sentiment of ``text`` in ``[-1, 1]`` (0.0 for empty text)."""
        if not text or not text.strip():
            return 0.0
        return float(self._analyzer.polarity_scores(text)["compound"])

    def scores(self, texts: Sequence[str]) -> list[float]:
        """:meth:`score` of each text."""
        return [self.score(t) for t in texts]
