"""Recommendation: candidates → features → hybrid score → diversity → filters.

Pure numpy over a :class:`~processors.catalog.CatalogView`; the factor model and the
co-engagement index enter only through scoring callables, so this module runs in a unit test
with no model at all.

Features per candidate, each in [0, 1] (cosine may be negative): ``similarity`` (embedding
cosine to the interest vector), ``factors`` (MF score), ``coengagement`` (posts engaged by the
same users close in time to the user's most recent posts, scaled by the best candidate),
``freshness``, ``popularity`` (log, scaled by the most popular post) and ``affinity``.

Examples
--------
>>> import numpy as np
>>> from processors.catalog import PostCatalog
>>> from processors.profiles import UserProfile
>>> cat = PostCatalog(dim=2, capacity=10)
>>> cat.add("run", "alice", 0.0, np.array([1.0, 0.0], dtype=np.float32))
>>> cat.add("jog", "bob", 0.0, np.array([0.99, 0.14], dtype=np.float32))
>>> cat.add("cake", "carol", 0.0, np.array([0.0, 1.0], dtype=np.float32))
>>> u = UserProfile("u1"); u.apply_engagement("like", "run", "alice", ts=0.0)
>>> [r.post_id for r in recommend(u, cat, now=0.0, k=2)]
['jog', 'cake']
"""

from __future__ import annotations

import math
from itertools import chain, repeat
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from processors.catalog import PostCatalog
from processors.profiles import UserProfile
from processors.protocols import CandidateIds

MfScores = Callable[[str, Sequence[str]], np.ndarray]
#: ``(recent post ids newest first, their weights) → {post_id: score}`` for co-engaged posts only
CoScores = Callable[[Sequence[str], np.ndarray], Mapping[str, float]]


@dataclass(frozen=True)
class RankConfig:
    """Blend weights and candidate/diversity knobs (all stored as given)."""

    w_similarity: float = 1.0
    w_factors: float = 0.3
    w_freshness: float = 0.15
    w_popularity: float = 0.2
    w_affinity: float = 0.3
    w_coengagement: float = 1.0
    #: co-engagement looks at the user's ``co_recent`` newest posts, weighted ``co_decay ** age_rank``
    co_recent: int = 10
    co_decay: float = 0.8
    freshness_half_life_s: float = 24 * 3600.0
    max_candidates: int = 1000
    per_source: int = 250
    mmr_lambda: float = 0.8
    author_cap: int = 2


@dataclass(frozen=True)
class Recommendation:
    post_id: str
    author_id: str
    score: float
    reasons: dict[str, float]

    def to_dict(self) -> dict:
        return {"post_id": self.post_id, "author_id": self.author_id, "score": round(self.score, 5),
                "reasons": {k: round(v, 4) for k, v in self.reasons.items()}}

    @staticmethod
    def to_dicts(items: Sequence[Recommendation]) -> list[dict]:
        """``[r.to_dict() for r in items]``, the figures of all rounded at once (see :meth:`_round`).

        >>> r = Recommendation("p", "a", 0.123456, {"similarity": 0.03125, "factors": -1e-9})
        >>> Recommendation.to_dicts([r]) == [r.to_dict()]
        True
        """
        reasons = [r.reasons for r in items]
        figures = list(chain.from_iterable(map(dict.values, reasons)))
        scores = [r.score for r in items]
        if {*map(type, figures), *map(type, scores)} != {float}:  # ints, numpy scalars, nothing: as to_dict
            return [r.to_dict() for r in items]
        rounded = iter(Recommendation._round(figures, 4))  # each zip below takes its own item's figures
        return [{"post_id": r.post_id, "author_id": r.author_id, "score": s, "reasons": dict(zip(k, rounded))}
                for r, s, k in zip(items, Recommendation._round(scores, 5), reasons)]

    @staticmethod
    def _round(values: list[float], ndigits: int) -> list[float]:
        """``[round(v, ndigits) for v in values]``, bit for bit, with a few numpy calls.

        ``round`` answers the double nearest ``N / 10**ndigits``, ``N`` the integer nearest the
        exact ``v * 10**ndigits`` (ties to even).  The product rounded to a double lies on the same
        side of every half-integer as the exact one (rounding is monotonic; halves under 2**52 are
        doubles), so its ``rint`` is ``N`` unless it is a half itself; and ``N / 10**ndigits`` is
        one correctly rounded division.  Values within 1e-6 of a half (a safety margin), large or
        not finite go through ``round`` itself.
        """
        scale = 10.0 ** ndigits
        with np.errstate(over="ignore", invalid="ignore"):  # huge values overflow, inf - inf is nan: doubtful
            t = np.array(values, dtype=np.float64) * scale
            doubt = ~((np.abs(t - np.floor(t) - 0.5) > 1e-6) & (np.abs(t) < 2.0 ** 30))
        out = (np.rint(t) / scale).tolist()
        for i in np.flatnonzero(doubt).tolist():
            out[i] = round(values[i], ndigits)
        return out


@dataclass(frozen=True)
class RecResult:
    items: list[Recommendation]
    missing: int  # history posts not embedded yet (a later retry will see them)


def recommend(
    profile: UserProfile,
    catalog: PostCatalog,
    now: float,
    k: int = 10,
    mf_scores: MfScores | None = None,
    config: RankConfig = RankConfig(),
    co_scores: CoScores | None = None,
) -> list[Recommendation]:
    """Top-``k`` unseen posts by others for ``profile`` (see :func:`recommend_detailed`)."""
    return recommend_detailed(profile, catalog, now, k, mf_scores, config, co_scores).items


def recommend_detailed(
    profile: UserProfile,
    catalog: PostCatalog,
    now: float,
    k: int = 10,
    mf_scores: MfScores | None = None,
    config: RankConfig = RankConfig(),
    co_scores: CoScores | None = None,
) -> RecResult:
    """Top-``k`` for one user, with how many of the user's history posts are not embedded yet."""
    return recommend_many([profile], catalog, now, k, mf_scores, config, co_scores)[0]


class _Shared:
    """The columns every user's ranking at one instant shares: computed once per batch."""

    __slots__ = ("view", "pop", "fresh", "_tops")

    def __init__(self, catalog: PostCatalog, now: float, config: RankConfig):
        self.view = view = catalog.snapshot(now)
        pop = np.log1p(view.popularity)
        self.pop = pop / pop.max() if pop.size and pop.max() > 0 else pop
        self.fresh = np.exp(-np.maximum(0.0, now - view.created_at) * (math.log(2) / config.freshness_half_life_s))
        self._tops: dict[int, list[np.ndarray]] = {}

    def top_pools(self, m: int) -> list[np.ndarray]:
        """The ``m`` most popular and the ``m`` freshest rows."""
        if m not in self._tops:
            self._tops[m] = [_top(self.pop, m), _top(self.fresh, m)]
        return self._tops[m]


def recommend_many(
    profiles: Sequence[UserProfile],
    catalog: PostCatalog,
    now: float,
    k: int = 10,
    mf_scores: MfScores | None = None,
    config: RankConfig = RankConfig(),
    co_scores: CoScores | None = None,
) -> list[RecResult]:
    """:func:`recommend_detailed` for several users at the same instant: the catalog snapshot,
    the popularity and freshness columns and their candidate pools are computed once, and the
    users' similarities are one matrix product instead of a matrix-vector product each.  Each
    result equals that user's :func:`recommend_detailed` at ``now``."""
    shared = _Shared(catalog, now, config)
    view = shared.view
    interests = [p.interest(catalog.lookup, now) for p in profiles]
    if len(view) == 0:
        return [RecResult([], missing) for _, missing in interests]
    known = [j for j, (vec, _) in enumerate(interests) if vec is not None]
    sims = {}
    if len(known) == 1:
        sims[known[0]] = view.embeddings @ interests[known[0]][0]
    elif known:
        rows = np.stack([interests[j][0] for j in known]) @ view.embeddings.T  # (users, posts), rows contiguous
        sims = {j: rows[i] for i, j in enumerate(known)}
    zero = np.zeros(len(view), dtype=np.float32)
    return [_rank_one(p, shared, sims.get(j, zero), missing, k, mf_scores, config, co_scores)
            for j, (p, (_, missing)) in enumerate(zip(profiles, interests))]


def _rank_one(profile: UserProfile, shared: _Shared, sim: np.ndarray, missing: int, k: int,
              mf_scores: MfScores | None, config: RankConfig, co_scores: CoScores | None) -> RecResult:
    view, pop, fresh = shared.view, shared.pop, shared.fresh
    co_by_id = _coengaged(profile, co_scores, config)
    # co-engagement over every catalog row at once, when the scores can say so (CoScoreVector)
    co_rows = co_by_id.over(view.ids, view.version) if co_by_id and hasattr(co_by_id, "over") else None

    liked, liked_aff = _liked_rows(profile, view)
    cand, ids = _candidates(profile, view, sim, shared, co_by_id, config, co_rows, liked)
    if cand.size == 0:
        return RecResult([], missing)
    mf = np.zeros(cand.size) if mf_scores is None else np.asarray(mf_scores(profile.user_id, ids), dtype=np.float64).clip(0, 1)
    aff = np.zeros(len(view))
    aff[liked] = liked_aff
    aff = aff[cand]
    if co_rows is not None:
        co = co_rows[cand]
    elif not co_by_id:
        co = np.zeros(cand.size)
    else:  # a plain mapping (CoScoreVector answers ``over`` above)
        co = np.array([co_by_id.get(i, 0.0) for i in ids])
    if co.size:
        top = co.max()
        if top > 0:
            co /= top
    feats = {"similarity": sim[cand].astype(np.float64), "factors": mf, "coengagement": co,
             "freshness": fresh[cand], "popularity": pop[cand], "affinity": aff}
    score = (config.w_similarity * feats["similarity"] + config.w_factors * mf + config.w_coengagement * co
             + config.w_freshness * feats["freshness"] + config.w_popularity * feats["popularity"]
             + config.w_affinity * aff)
    chosen = _diversify(score, view.embeddings, cand, view.authors, k, config)
    # the chosen few's figures: one gather per column (``tolist`` gives the floats ``float(f[j])`` would)
    at = np.array(chosen, dtype=np.intp)
    names, cols = tuple(feats), [f[at].tolist() for f in feats.values()]
    items = [Recommendation(view.ids[r], view.authors[r], float(s), dict(zip(names, map(float, vals))))
             for r, s, *vals in zip(cand[at].tolist(), score[at].tolist(), *cols)]
    return RecResult(items, missing)


def _coengaged(profile: UserProfile, co_scores: CoScores | None, config: RankConfig) -> Mapping[str, float]:
    """Co-engagement scores of posts for the user's ``co_recent`` newest distinct history posts."""
    if co_scores is None or config.w_coengagement == 0 or config.co_recent <= 0 or not profile.history:
        return {}
    recent: list[str] = []
    for post_id, w, _ in reversed(profile.history):
        if w > 0 and post_id not in recent:
            recent.append(post_id)
            if len(recent) == config.co_recent:
                break
    return co_scores(recent, config.co_decay ** np.arange(len(recent), dtype=np.float64))


def _candidates(profile: UserProfile, view, sim, shared: _Shared, co_by_id: Mapping[str, float],
                config: RankConfig, co_rows: np.ndarray | None = None,
                liked: np.ndarray | None = None) -> tuple[np.ndarray, CandidateIds]:
    """Rows worth scoring (nearest, trending, fresh, co-engaged and affinity-author posts, minus
    seen/own) with their post ids (read from the view when asked for).  ``liked``: the rows of
    the user's liked and followed authors (:func:`_liked_rows`), if already known."""
    n = len(view)
    if n <= config.max_candidates:
        keep = np.ones(n, dtype=bool)
    else:
        m = config.per_source
        pools = [_top_set(sim, m), *shared.top_pools(m)]
        if liked is None:
            liked = _liked_rows(profile, view)[0]
        if liked.size:  # the newest rows of liked authors (from the catalog's author index, not a scan)
            pools.append(np.sort(liked)[-m:])
        if co_rows is not None:  # the best co-engaged catalog rows
            positive = np.flatnonzero(co_rows > 0)
            pools.append(positive if positive.size <= m else positive[np.argpartition(-co_rows[positive], m)[:m]])
        elif co_by_id:  # a plain mapping
            best = sorted(co_by_id, key=co_by_id.__getitem__, reverse=True)[:m]
            row_of = view.row_of
            pools.append(np.array(sorted(row_of[p] for p in best if p in row_of and row_of[p] < n), dtype=np.int64))
        keep = np.zeros(n, dtype=bool)
        for pool in pools:
            keep[pool] = True
    # minus seen posts and the user's own (dict lookups in C: ``map`` over ``row_of.get(p, n)``)
    seen = np.fromiter(map(view.row_of.get, profile.seen, repeat(n)), dtype=np.int64, count=len(profile.seen))
    keep[seen[seen < n]] = False
    own = view.rows_of_author.get(profile.user_id)
    if own:
        own = np.fromiter(own, dtype=np.int64, count=len(own))
        keep[own[own < n]] = False
    cand = np.flatnonzero(keep).astype(np.int64, copy=False)
    return cand, CandidateIds(None, view.ids, view.version, cand)


def _liked_rows(profile: UserProfile, view) -> tuple[np.ndarray, np.ndarray]:
    """The rows by authors the user engaged with or follows, and the user's affinity to each
    row's author (every other row's affinity is 0).  Rows of different authors are distinct."""
    liked = [a for a in dict.fromkeys((*profile.authors, *profile.follows)) if a in view.rows_of_author]
    if not liked:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    groups = list(map(view.rows_of_author.__getitem__, liked))
    sizes = list(map(len, groups))
    rows = np.fromiter(chain.from_iterable(groups), dtype=np.int64, count=sum(sizes))
    aff = np.repeat(np.array([profile.affinity(a) for a in liked], dtype=np.float64), sizes)
    ok = rows < len(view)
    return (rows, aff) if ok.all() else (rows[ok], aff[ok])


def _top(x: np.ndarray, m: int) -> np.ndarray:
    if x.size <= m:
        return np.arange(x.size)
    return np.argpartition(-x, m)[:m]


# Cheaper equals of ``_top`` and of ``argsort(-x)[:m]``.  Both look only at the entries at or
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


def _top_set(x: np.ndarray, m: int) -> np.ndarray:
    """The same rows as :func:`_top` (in another order)."""
    top = _above_sampled_threshold(x, m)
    if top is not None and top.size > m:
        values = x[top]
        part = np.argpartition(-values, m)
        if values[part[:m]].min() > values[part[m]]:
            return top[part[:m]]
    return _top(x, m)


def _best_first(x: np.ndarray, m: int) -> np.ndarray:
    """``np.argsort(-x)[:m]``.

    >>> s = np.random.default_rng(0).random(1000); bool((_best_first(s, 50) == np.argsort(-s)[:50]).all())
    True
    """
    top = _above_sampled_threshold(x, m)
    if top is not None and top.size > m:
        values = x[top]
        order = np.argsort(-values)[: m + 1]
        head = values[order]
        if (head[:-1] > head[1:]).all():
            return top[order[:m]]
    return np.argsort(-x)[:m]


def _diversify(score: np.ndarray, emb: np.ndarray, cand: np.ndarray, authors: Sequence[str], k: int,
               config: RankConfig) -> list[int]:
    """Greedy MMR: trade score against similarity to what is already picked; cap posts per author.
    ``score`` is per candidate, ``emb`` and ``authors`` per catalog row: candidate ``j`` is row
    ``cand[j]``.  Returns the picked candidates (indices into ``score``) in order."""
    order = _best_first(score, max(k * 5, 50))
    rows = cand[order]
    picked: list[int] = []
    per_author: dict[str, int] = {}
    lam = config.mmr_lambda
    if lam >= 1.0:  # no similarity term: score order under the author cap
        for j, r in zip(order.tolist(), rows.tolist()):
            if per_author.get(authors[r], 0) < config.author_cap:
                per_author[authors[r]] = per_author.get(authors[r], 0) + 1
                picked.append(j)
                if len(picked) == k:
                    break
        return picked
    # Plain greedy MMR (take the first maximum of ``base - (1 - lam) * penalty`` over the live
    # entries; raise the penalties by the pick's similarities) with few numpy calls a step: a dead
    # entry is set to -inf in ``mmr`` once and skipped by the update, a candidate over the author
    # cap just dies (no penalty moves), and the arithmetic is that of the textbook loop, so the
    # picks are bit-for-bit the same (tests/unit/test_ranking.py checks against one).
    sub = emb[rows]  # only the shortlist's rows are copied
    base = lam * score[order]
    c = 1 - lam
    penalty = np.zeros(len(order))  # max(0, highest similarity to a picked post)
    mmr = base - c * penalty
    scaled = np.empty_like(base)
    alive = np.ones(len(order), dtype=bool)
    short, short_authors = order.tolist(), [authors[r] for r in rows.tolist()]
    cap, left = config.author_cap, len(order)
    while left and len(picked) < k:
        best = int(mmr.argmax())
        left -= 1
        alive[best] = False
        mmr[best] = -np.inf
        author = short_authors[best]
        if per_author.get(author, 0) >= cap:
            continue
        per_author[author] = per_author.get(author, 0) + 1
        picked.append(short[best])
        if len(picked) == k:
            break
        np.maximum(penalty, sub @ sub[best], out=penalty)
        np.multiply(c, penalty, out=scaled)
        np.subtract(base, scaled, out=mmr, where=alive)  # dead entries stay -inf
    return picked
