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
from itertools import islice
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, Sequence

import numpy as np

from processors.candidates import ExactSimilarity, Pools, SparseRows, union_of_keys
from processors.catalog import PostCatalog
from processors.diversity import diversify
from processors.profiles import UserProfile
from processors.protocols import CandidateIds

if TYPE_CHECKING:
    from processors.calibration import Calibration

MfScores = Callable[[str, Sequence[str]], np.ndarray]
#: ``(recent post ids newest first, their weights) → {post_id: score}`` for co-engaged posts only
CoScores = Callable[[Sequence[str], np.ndarray], Mapping[str, float]]


class CoIndex(Protocol):
    """Co-engagement scores of many users over a list of post ids at once (``CoEngagement``):
    the non-zero (user, position in ``ids``) pairs as sorted keys ``u * len(ids) + position``
    and their scores."""

    def over_many(self, recents: Sequence[Sequence[str]], weights: Sequence[np.ndarray], ids: Sequence[str],
                  version) -> tuple[np.ndarray, np.ndarray]: ...


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

    def calibrated(self, cal: "Calibration") -> "RankConfig":
        """These weights, stated for the reference model's cosines, for the model ``cal`` was
        measured on: a cosine difference there is ``cal.scale`` reference units, so similarity
        weighs ``1 / cal.scale`` as much per unit (:mod:`processors.calibration`)."""
        return replace(self, w_similarity=self.w_similarity / cal.scale)


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
    def _round(values: list[float], ndigits: int) -> list[float]:
        """``[round(v, ndigits) for v in values]``, bit for bit, with a few numpy calls (the
        messages' figures of a whole chunk of users at once, see :func:`_item_dicts`).

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
    items: list  # Recommendation objects, or their ``to_dict()`` (``recommend_many(..., as_dicts=True)``)
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


#: (user, candidate) pairs scored together: co-engagement (one ``over_many``), candidates,
#: features and scores (:func:`_score_block`), sized so that the arrays stay in cache
BLOCK_CELLS = 1 << 15


class _Shared:
    """The columns every user's ranking at one instant shares: computed once per batch."""

    __slots__ = ("view", "pop", "fresh", "pools")

    def __init__(self, catalog: PostCatalog, now: float, config: RankConfig):
        self.view = view = catalog.snapshot(now)
        pop = np.log1p(view.popularity)
        self.pop = pop / pop.max() if pop.size and pop.max() > 0 else pop
        self.fresh = np.exp(-np.maximum(0.0, now - view.created_at) * (math.log(2) / config.freshness_half_life_s))
        self.pools = Pools(view, self.pop, self.fresh)


def recommend_many(
    profiles: Sequence[UserProfile],
    catalog: PostCatalog,
    now: float,
    k: int = 10,
    mf_scores: MfScores | None = None,
    config: RankConfig = RankConfig(),
    co_scores: CoScores | None = None,
    as_dicts: bool = False,
    co_index: CoIndex | None = None,
) -> list[RecResult]:
    """:func:`recommend_detailed` for several users at the same instant: the catalog snapshot,
    the popularity and freshness columns and their candidate pools are computed once, the
    users' cosines to the catalog are one matrix product, and candidates, features and scores
    are array operations over the (user, candidate) pairs of a block of users
    (:func:`_score_block`).  Each result equals that user's :func:`recommend_detailed` at
    ``now``; with ``as_dicts`` its items are the ``Recommendation.to_dict()`` of those items,
    built column-wise for all users at once.  With ``co_index`` (in place of
    ``co_scores=co_index.scores``) every block's co-engagement comes from one
    :meth:`CoIndex.over_many` call, with the same figures."""
    shared = _Shared(catalog, now, config)
    view = shared.view
    interests = [p.interest(catalog.lookup, now) for p in profiles]
    n = len(view)
    if n == 0:
        return [RecResult([], missing) for _, missing in interests]
    similarity = _similarity(view, [vec for vec, _ in interests])
    scored = []
    block = max(1, BLOCK_CELLS // max(1, min(n, 2 * config.max_candidates)))
    for start in range(0, len(profiles), block):
        users = profiles[start:start + block]
        recents = [_recent(p, config) for p in users]
        weights = [config.co_decay ** np.arange(len(r), dtype=np.float64) for r in recents]
        if co_index is not None:
            co = SparseRows(*co_index.over_many(recents, weights, view.ids, view.version))
        elif co_scores is not None and any(recents):
            co = SparseRows.from_dense(np.stack([_co_row(co_scores(r, w), view) if r else np.zeros(n)
                                                 for r, w in zip(recents, weights)]))
        else:
            co = None
        scored += _score_block(users, shared, similarity(start, len(users)), co, mf_scores, config)
    ranked = [x for x in scored if x is not None]  # (candidates, features, scores): MMR for all at once
    picks = diversify([x[2] for x in ranked], view.embeddings, [x[0] for x in ranked], view.authors, k, config)
    chosen = iter(_item_dicts(view, ranked, picks) if as_dicts else [_items(view, *x, c) for x, c in zip(ranked, picks)])
    return [RecResult(next(chosen) if x else [], m) for x, (_, m) in zip(scored, interests)]


def _similarity(view, vectors: list):
    """``(start, size) →`` the exact similarity of users ``start .. start + size`` to every
    catalog row (:class:`processors.candidates.ExactSimilarity`): one matrix product for all
    the users.  Approximate nearest-neighbour indexes were measured slower than this product
    at the nearest pool's size (``python -m devtools.bench_ann``)."""
    known = np.array([v is not None for v in vectors], dtype=bool)
    stacked = np.zeros((len(vectors), view.embeddings.shape[1]), dtype=np.float32)
    if known.any():
        stacked[known] = np.stack([v for v in vectors if v is not None])
    sim = stacked @ view.embeddings.T  # a user with no interest vector has a zero vector: zero cosines
    return lambda start, size: ExactSimilarity(sim[start:start + size], known[start:start + size])


def _co_row(scores: Mapping[str, float], view) -> np.ndarray:
    """Co-engagement ``scores`` of posts as one figure per catalog row (0: none)."""
    if hasattr(scores, "over"):  # a CoScoreVector says so at once
        return scores.over(view.ids, view.version)
    row, n = np.zeros(len(view)), len(view)
    for post_id, value in scores.items():
        r = view.row_of.get(post_id, n)
        if r < n:
            row[r] = value
    return row


def _score_block(users: Sequence[UserProfile], shared: _Shared, sim, co: SparseRows | None,
                 mf_scores: MfScores | None, config: RankConfig) -> list[tuple[np.ndarray, dict, np.ndarray] | None]:
    """Each user's candidate rows, their features and blended scores (``None``: no candidates).
    ``sim`` gives the users' cosines (:mod:`processors.candidates`) and ``co`` their
    co-engagement figures (``None``: none at all).  The candidates are every row while the
    catalog is at most ``max_candidates``, else the union of the pools; less seen and own posts.
    Features and scores are computed over the (user, row) pairs as one flat list of sorted keys
    (a user's candidates are consecutive, in row order); only the factor scores are found user
    by user."""
    view, pools = shared.view, shared.pools
    n, b, m = len(view), len(users), config.per_source
    base = np.arange(b, dtype=np.int64) * n
    liked_keys, liked_aff, width, liked = pools.liked_authors(users)
    if n <= config.max_candidates:
        at = union_of_keys([(base[:, None] + np.arange(n)).ravel()], pools.removed(users), b * n)
    else:  # pools: nearest, trending, fresh, newest by liked authors, best co-engaged
        parts = [(base[:, None] + pools.top_rows(m)).ravel(), sim.nearest(m), pools.newest_of(liked, m)]
        if co is not None:
            parts.append(co.best(b, n, m))
        at = union_of_keys(parts, pools.removed(users), b * n)
    if not at.size:
        return [None] * b
    user = at // n
    cf = at - user * n
    counts = np.bincount(user, minlength=b)
    ends = np.cumsum(counts).tolist()
    starts = [e - c for e, c in zip(ends, counts.tolist())]
    if co is None:
        co_f = np.zeros(at.size)
    else:  # scaled by each user's best candidate (x / 1.0 is x: users with none stay as they are)
        co_f = co.at(at, b * n)
        live = counts > 0
        best = np.maximum.reduceat(co_f, np.array(starts)[live])
        co_f /= np.repeat(np.where(best > 0, best, 1.0), counts[live])
    mf = np.zeros(at.size)
    if mf_scores is not None:
        for p, s, e in zip(users, starts, ends):
            if e > s:
                ids = CandidateIds(None, view.ids, view.version, cf[s:e])
                mf[s:e] = np.asarray(mf_scores(p.user_id, ids), dtype=np.float64).clip(0, 1)
    aff = SparseRows(liked_keys, liked_aff).at(user * width + view.author_codes.take(cf), b * width)
    feats = {"similarity": sim.at(at).astype(np.float64), "factors": mf, "coengagement": co_f,
             "freshness": shared.fresh.take(cf), "popularity": shared.pop.take(cf), "affinity": aff}
    score = (config.w_similarity * feats["similarity"] + config.w_factors * mf + config.w_coengagement * co_f
             + config.w_freshness * feats["freshness"] + config.w_popularity * feats["popularity"]
             + config.w_affinity * feats["affinity"])
    return [(cf[s:e], {name: f[s:e] for name, f in feats.items()}, score[s:e]) if e > s else None
            for s, e in zip(starts, ends)]


def _items(view, cand: np.ndarray, feats: dict, score: np.ndarray, chosen: list[int]) -> list[Recommendation]:
    """The chosen candidates' items: one gather per column (``tolist`` gives ``float(f[j])``'s floats)."""
    at = np.array(chosen, dtype=np.intp)
    names, cols = tuple(feats), [f[at].tolist() for f in feats.values()]
    return [Recommendation(view.ids[r], view.authors[r], float(s), dict(zip(names, map(float, vals))))
            for r, s, *vals in zip(cand[at].tolist(), score[at].tolist(), *cols)]


def _item_dicts(view, ranked: list, picks: list[list[int]]) -> list[list[dict]]:
    """Each ranked user's chosen items as ``Recommendation.to_dict()`` gives them, without the
    objects: every figure column is gathered and rounded once for all users."""
    ats = [np.array(c, dtype=np.intp) for c in picks]
    if not ats or not sum(map(len, ats)):
        return [[] for _ in ats]
    rows = np.concatenate([cand[at] for (cand, _, _), at in zip(ranked, ats)]).tolist()
    scores = Recommendation._round(np.concatenate([s[at] for (_, _, s), at in zip(ranked, ats)]).tolist(), 5)
    # every user has _score_block's features, in its order; the dicts are spelt out (a dict display is
    # built in one step, ``dict(zip(names, ...))`` is not); tests compare them with ``to_dict``
    cols = [Recommendation._round(np.concatenate([f[name][at] for (_, f, _), at in zip(ranked, ats)]).tolist(), 4)
            for name in ("similarity", "factors", "coengagement", "freshness", "popularity", "affinity")]
    ids, authors = view.ids, view.authors
    flat = iter([{"post_id": ids[r], "author_id": authors[r], "score": s,
                  "reasons": {"similarity": a, "factors": b, "coengagement": c, "freshness": d, "popularity": e,
                              "affinity": f}}
                 for r, s, a, b, c, d, e, f in zip(rows, scores, *cols)])
    return [list(islice(flat, len(at))) for at in ats]


def _recent(profile: UserProfile, config: RankConfig) -> list[str]:
    """The user's ``co_recent`` newest distinct positively engaged posts, newest first (none when
    co-engagement is off)."""
    recent: list[str] = []
    if config.w_coengagement == 0 or config.co_recent <= 0:
        return recent
    for post_id, w, _ in reversed(profile.history):
        if w > 0 and post_id not in recent:
            recent.append(post_id)
            if len(recent) == config.co_recent:
                break
    return recent
