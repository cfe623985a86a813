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
from itertools import chain
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

    cand, ids, authors = _candidates(profile, view, sim, shared, co_by_id, config, co_rows)
    if cand.size == 0:
        return RecResult([], missing)
    mf = np.zeros(cand.size) if mf_scores is None else np.clip(np.asarray(mf_scores(profile.user_id, ids), dtype=np.float64), 0, 1)
    aff = _affinity(profile, view)[cand]
    if co_rows is not None:
        co = co_rows[cand]
    elif not co_by_id:
        co = np.zeros(cand.size)
    else:  # a plain mapping (CoScoreVector answers ``over`` above)
        co = np.array([co_by_id.get(i, 0.0) for i in ids])
    if co.size and co.max() > 0:
        co /= co.max()
    feats = {"similarity": sim[cand].astype(np.float64), "factors": mf, "coengagement": co,
             "freshness": fresh[cand], "popularity": pop[cand], "affinity": aff}
    score = (config.w_similarity * feats["similarity"] + config.w_factors * mf + config.w_coengagement * co
             + config.w_freshness * feats["freshness"] + config.w_popularity * feats["popularity"]
             + config.w_affinity * aff)
    chosen = _diversify(score, view.embeddings, cand, authors, k, config)
    items = [Recommendation(ids[j], authors[j], float(score[j]),
                            {name: float(f[j]) for name, f in feats.items()}) for j in chosen]
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
                config: RankConfig, co_rows: np.ndarray | None = None) -> tuple[np.ndarray, CandidateIds, CandidateIds]:
    """Rows worth scoring (nearest, trending, fresh, co-engaged and affinity-author posts, minus
    seen/own) with their post ids and authors (read from the view when asked for)."""
    n = len(view)
    if n <= config.max_candidates:
        rows = np.arange(n)
    else:
        m = config.per_source
        pools = [_top(sim, m), *shared.top_pools(m)]
        liked = set(profile.authors) | set(profile.follows)
        if liked:  # the newest rows of liked authors (from the catalog's author index, not a scan)
            by_author = view.rows_of_author
            rows_liked = np.fromiter(chain.from_iterable(by_author.get(a, ()) for a in liked), dtype=np.int64)
            pools.append(np.sort(rows_liked[rows_liked < n])[-m:])
        if co_rows is not None:  # the best co-engaged catalog rows
            positive = np.flatnonzero(co_rows > 0)
            pools.append(positive if positive.size <= m else positive[np.argpartition(-co_rows[positive], m)[:m]])
        elif co_by_id:  # a plain mapping
            best = sorted(co_by_id, key=co_by_id.__getitem__, reverse=True)[:m]
            row_of = view.row_of
            pools.append(np.array(sorted(row_of[p] for p in best if p in row_of and row_of[p] < n), dtype=np.int64))
        chosen = np.zeros(n, dtype=bool)
        for pool in pools:
            chosen[pool] = True
        rows = np.flatnonzero(chosen)
    drop = np.zeros(n, dtype=bool)  # seen posts and the user's own
    row_of = view.row_of
    drop[[r for r in (row_of.get(p, n) for p in profile.seen) if r < n]] = True
    drop[[r for r in view.rows_of_author.get(profile.user_id, ()) if r < n]] = True
    cand = rows[~drop[rows]].astype(np.int64)
    return cand, CandidateIds(None, view.ids, view.version, cand), CandidateIds(None, view.authors, None, cand)


def _affinity(profile: UserProfile, view) -> np.ndarray:
    """The user's affinity to each row's author (0 for authors never engaged or followed)."""
    aff = np.zeros(len(view))
    by_author, n = view.rows_of_author, len(view)
    for author in dict.fromkeys((*profile.authors, *profile.follows)):
        rows = by_author.get(author)
        if rows:
            rows = np.fromiter(rows, dtype=np.int64, count=len(rows))
            aff[rows[rows < n]] = profile.affinity(author)
    return aff


def _top(x: np.ndarray, m: int) -> np.ndarray:
    if x.size <= m:
        return np.arange(x.size)
    return np.argpartition(-x, m)[:m]


def _diversify(score: np.ndarray, emb: np.ndarray, cand: np.ndarray, authors: Sequence[str], k: int,
               config: RankConfig) -> list[int]:
    """Greedy MMR: trade score against similarity to what is already picked; cap posts per author.
    ``score`` and ``authors`` are per candidate; candidate ``j``'s embedding is ``emb[cand[j]]``."""
    order = np.argsort(-score)[: max(k * 5, 50)]
    picked: list[int] = []
    per_author: dict[str, int] = {}
    lam = config.mmr_lambda
    if lam >= 1.0:  # no similarity term: score order under the author cap
        for j in order.tolist():
            if per_author.get(authors[j], 0) < config.author_cap:
                per_author[authors[j]] = per_author.get(authors[j], 0) + 1
                picked.append(j)
                if len(picked) == k:
                    break
        return picked
    sub = emb[cand[order]]  # only the shortlist's rows are copied
    base = lam * score[order]
    penalty = np.zeros(len(order))  # max(0, highest similarity to a picked post)
    alive = np.ones(len(order), dtype=bool)
    while alive.any() and len(picked) < k:
        best = int(np.argmax(np.where(alive, base - (1 - lam) * penalty, -np.inf)))
        alive[best] = False
        j = int(order[best])
        if per_author.get(authors[j], 0) >= config.author_cap:
            continue
        per_author[authors[j]] = per_author.get(authors[j], 0) + 1
        picked.append(j)
        penalty = np.maximum(penalty, sub @ sub[best])
    return picked
