"""Trending posts and authors: engagement decayed over a short and a long window, shared by
every worker.

A post's score in a window of ``τ`` seconds is ``Σ weight · exp(-age / τ)`` over its engagements
(the same action weights as the recommender's popularity), so an engagement counts fully when it
happens and ``1/e`` of it after one window.  An author's score is the sum of their posts'.

The state is a shared part (:class:`processors.sync_message.SharedPart`, name ``trends``): each
worker records the engagements it folds (three list appends each), and at every model-sync
interval sends each post's decayed sums as of its newest engagement; the sums add exactly, so
every worker holds the same global trends and the one that writes snapshots publishes them.

>>> a, b = Trends(), Trends()
>>> a.record("p1", 1.0, 100.0); a.record("p2", 2.0, 100.0); b.record("p1", 2.0, 100.0)
>>> for doc in b.take_docs():
...     a.apply_doc(doc)
>>> a.take_docs() and None
>>> [(p["post_id"], round(p["score"], 3)) for p in a.top("1h", 2, now=100.0)]
[('p1', 3.0), ('p2', 2.0)]
"""

from __future__ import annotations

import json
import math
from typing import Callable, Iterable, Mapping

import numpy as np

from processors.decayed_sums import decayed_sums
from processors.sync_message import MAX_MESSAGE_BYTES

#: window name → its time constant in seconds (``RIPPLE_TRENDING_WINDOWS`` chooses, default both)
WINDOWS = {"1h": 3600.0, "24h": 86_400.0}
#: a post whose long-window score has decayed below this is forgotten
FORGET_BELOW = 1e-3
FORMAT = 1


class Trends:
    """Per post: one decayed sum per window, as of the post's newest engagement."""

    name = "trends"
    key_prefix = "\x02"  # snapshot keys: "\x02" + post id

    def __init__(self, windows: Mapping[str, float] = WINDOWS, limit: int = 100_000):
        self.windows = dict(windows)
        self._taus = np.array(list(self.windows.values()), dtype=np.float64)
        self.limit = limit
        self._sums: dict[str, tuple[np.ndarray, float]] = {}  # post → (sums per window, as of ts)
        self._posts: list[str] = []
        self._weights: list[float] = []
        self._times: list[float] = []
        self.newest = 0.0  # newest engagement time known (the clock trends are read at)
        self.changed: set[str] = set()

    def __len__(self) -> int:
        """Posts with a trend score."""
        return len(self._sums)

    # -- this worker's engagements ----------------------------------------------------------
    def record(self, post_id: str, weight: float, ts: float) -> None:
        self._posts.append(post_id)
        self._weights.append(weight)
        self._times.append(ts)

    def take_docs(self, max_bytes: int = MAX_MESSAGE_BYTES) -> list[dict]:
        """This interval's engagements as per-post sums (added here too); ``[]``: none."""
        posts, weights, times = self._posts, self._weights, self._times
        if not posts:
            return []
        self._posts, self._weights, self._times = [], [], []
        index, sums, newest = decayed_sums(posts, weights, times, 1.0 / self._taus)
        deltas = {p: (sums[i], float(newest[i])) for p, i in index.items()}
        self._add(deltas)
        per_doc = max(1, max_bytes // (40 + 24 * len(self._taus)))
        items = [(p, [*map(float, v), ts]) for p, (v, ts) in deltas.items()]
        return [{"windows": list(self.windows), "posts": dict(items[i:i + per_doc])}
                for i in range(0, len(items), per_doc)]

    # -- other workers' --------------------------------------------------------------------
    def apply_doc(self, doc: dict) -> None:
        try:
            if list(doc["windows"]) != list(self.windows):
                return  # configured with other windows: their sums do not add to these
            deltas = {str(p): (np.asarray(v[:-1], dtype=np.float64), float(v[-1])) for p, v in doc["posts"].items()}
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise ValueError(f"not trend deltas ({type(exc).__name__})") from exc
        if any(len(v) != len(self._taus) for v, _ in deltas.values()):
            raise ValueError("not trend deltas (wrong number of windows)")
        self._add(deltas)

    def _add(self, deltas: Mapping[str, tuple[np.ndarray, float]]) -> None:
        for post, (value, ts) in deltas.items():
            old = self._sums.get(post)
            if old is None:
                self._sums[post] = (np.array(value, dtype=np.float64), ts)
            else:
                sums, at = old
                newest = max(at, ts)
                self._sums[post] = (sums * np.exp(-(newest - at) / self._taus) + value * np.exp(-(newest - ts) / self._taus),
                                    newest)
            self.newest = max(self.newest, ts)
        self.changed.update(deltas)
        if len(self._sums) > self.limit:
            self.forget()

    def forget(self) -> int:
        """Drop posts whose long-window score has decayed below :data:`FORGET_BELOW`, then the
        weakest beyond ``limit``; how many were dropped."""
        now, longest = self.newest, int(np.argmax(self._taus))
        score = {p: s[longest] * math.exp(-(now - ts) / self._taus[longest]) for p, (s, ts) in self._sums.items()}
        drop = [p for p, v in score.items() if v < FORGET_BELOW]
        if len(score) - len(drop) > self.limit:
            kept = sorted((p for p in score if score[p] >= FORGET_BELOW), key=score.__getitem__)
            drop += kept[:len(kept) - self.limit]
        for p in drop:
            del self._sums[p]
        self.changed.update(drop)
        return len(drop)

    # -- reading ---------------------------------------------------------------------------
    def scores(self, window: str, now: float | None = None) -> dict[str, float]:
        """Every known post's score in ``window``, decayed to ``now`` (default: the newest event)."""
        j = list(self.windows).index(window)
        now, tau = self.newest if now is None else now, self._taus[j]
        return {p: float(s[j] * math.exp(-max(0.0, now - ts) / tau)) for p, (s, ts) in self._sums.items()}

    def top(self, window: str, n: int, *, now: float | None = None,
            author_of: Callable[[str], str | None] = lambda p: None) -> list[dict]:
        """The ``n`` highest-scoring posts of ``window``: ``{"post_id", "author_id", "score"}``."""
        scores = self.scores(window, now)
        best = sorted(scores, key=lambda p: (-scores[p], p))[:n]
        return [{"post_id": p, "author_id": author_of(p), "score": round(scores[p], 6)} for p in best]

    def top_authors(self, window: str, n: int, *, now: float | None = None,
                    author_of: Callable[[str], str | None]) -> list[dict]:
        """The ``n`` authors whose known posts score highest together: ``{"author_id", "score"}``."""
        totals: dict[str, float] = {}
        for post, score in self.scores(window, now).items():
            author = author_of(post)
            if author is not None:
                totals[author] = totals.get(author, 0.0) + score
        best = sorted(totals, key=lambda a: (-totals[a], a))[:n]
        return [{"author_id": a, "score": round(totals[a], 6)} for a in best]

    # -- snapshots -------------------------------------------------------------------------
    def all_keys(self) -> set[str]:
        return set(self._sums)

    def snapshot(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for post in keys:
            state = self._sums.get(post)
            out[post] = None if state is None else json.dumps(
                {"format": FORMAT, "windows": list(self.windows), "sums": [*map(float, state[0])], "ts": state[1]}
            ).encode()
        return out

    def restore(self, records: Mapping[str, bytes]) -> int:
        n = 0
        for post, value in records.items():
            try:
                doc = json.loads(value)
                if doc.get("format") != FORMAT or list(doc["windows"]) != list(self.windows):
                    continue
                self._sums[post] = (np.asarray(doc["sums"], dtype=np.float64), float(doc["ts"]))
                self.newest = max(self.newest, float(doc["ts"]))
                n += 1
            except (ValueError, TypeError, KeyError, AttributeError):
                continue
        return n
