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
from itertools import chain, islice, repeat
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from processors.catalog import PostCatalog
from processors.profiles import UserProfile
from processors.protocols import CandidateIds
from processors.selection import best_first, top, top_set

MfScores = Callable[[str, Sequence[str]], np.ndarray]
#: ``(recent post ids newest first, their weights) → {post_id: score}`` for co-engaged posts only
CoScores = Callable[[Sequence[str], np.ndarray], Mapping[str, float]]


class CoIndex(Protocol):
    """Co-engagement scores of many users over a list of post ids at once (``CoEngagement``)."""

    def over_many(self, recents: Sequence[Sequence[str]], weights: Sequence[np.ndarray], ids: Sequence[str],
                  version) -> np.ndarray: ...


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


#: catalog rows × users of co-engagement scores computed together (1 MiB of float64)
CO_BLOCK_CELLS = 1 << 17


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
            self._tops[m] = [top(self.pop, m), top(self.fresh, m)]
        return self._tops[m]


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
    the popularity and freshness columns and their candidate pools are computed once, and the
    users' similarities are one matrix product instead of a matrix-vector product each.  Each
    result equals that user's :func:`recommend_detailed` at ``now``; with ``as_dicts`` its items
    are the ``Recommendation.to_dict()`` of those items, built column-wise for all users at once.
    With ``co_index`` (in place of ``co_scores=co_index.scores``) every user's co-engagement over
    the catalog comes from one :meth:`CoIndex.over_many` call, with the same figures."""
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
    co_rows: Sequence[np.ndarray | None] = [None] * len(profiles)
    scored = []
    # with ``co_index``, users in blocks whose co-engagement rows stay in cache until scored
    block = max(1, CO_BLOCK_CELLS // len(view) if co_index is not None else len(profiles))
    for start in range(0, len(profiles), block):
        users = profiles[start:start + block]
        if co_index is not None:
            recents = [_recent(p, config) for p in users]
            co_rows = co_index.over_many(recents, [config.co_decay ** np.arange(len(r), dtype=np.float64) for r in recents],
                                         view.ids, view.version)
        scored += [_score_one(p, shared, sims.get(j, zero), mf_scores, config, None if co_index else co_scores,
                              co_rows[j - start]) for j, p in enumerate(users, start)]
    ranked = [x for x in scored if x is not None]  # (candidates, features, scores): MMR for all at once
    picks = _diversify([x[2] for x in ranked], view.embeddings, [x[0] for x in ranked], view.authors, k, config)
    chosen = iter(_item_dicts(view, ranked, picks) if as_dicts else [_items(view, *x, c) for x, c in zip(ranked, picks)])
    return [RecResult(next(chosen) if x else [], m) for x, (_, m) in zip(scored, interests)]


def _score_one(profile: UserProfile, shared: _Shared, sim: np.ndarray, mf_scores: MfScores | None,
               config: RankConfig, co_scores: CoScores | None,
               co_rows: np.ndarray | None = None) -> tuple[np.ndarray, dict, np.ndarray] | None:
    """The user's candidate rows, their features and blended scores (``None``: no candidates).
    ``co_rows``: the user's co-engagement of every catalog row, when already known."""
    view, pop, fresh = shared.view, shared.pop, shared.fresh
    co_by_id: Mapping[str, float] = {}
    if co_rows is None:
        co_by_id = _coengaged(profile, co_scores, config)
        # co-engagement over every catalog row at once, when the scores can say so (CoScoreVector)
        co_rows = co_by_id.over(view.ids, view.version) if co_by_id and hasattr(co_by_id, "over") else None

    liked, liked_aff = _liked_rows(profile, view)
    cand, ids = _candidates(profile, view, sim, shared, co_by_id, config, co_rows, liked)
    if cand.size == 0:
        return None
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
        best = co.max()
        if best > 0:
            co /= best
    feats = {"similarity": sim[cand].astype(np.float64), "factors": mf, "coengagement": co,
             "freshness": fresh[cand], "popularity": pop[cand], "affinity": aff}
    score = (config.w_similarity * feats["similarity"] + config.w_factors * mf + config.w_coengagement * co
             + config.w_freshness * feats["freshness"] + config.w_popularity * feats["popularity"]
             + config.w_affinity * aff)
    return cand, feats, score


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
    # every user has _score_one's features, in its order; the dicts are spelt out (a dict display is
    # built in one step, ``dict(zip(names, ...))`` is not); tests compare them with ``to_dict``
    cols = [Recommendation._round(np.concatenate([f[name][at] for (_, f, _), at in zip(ranked, ats)]).tolist(), 4)
            for name in ("similarity", "factors", "coengagement", "freshness", "popularity", "affinity")]
    ids, authors = view.ids, view.authors
    flat = iter([{"post_id": ids[r], "author_id": authors[r], "score": s,
                  "reasons": {"similarity": a, "factors": b, "coengagement": c, "freshness": d, "popularity": e,
                              "affinity": f}}
                 for r, s, a, b, c, d, e, f in zip(rows, scores, *cols)])
    return [list(islice(flat, len(at))) for at in ats]


def _coengaged(profile: UserProfile, co_scores: CoScores | None, config: RankConfig) -> Mapping[str, float]:
    """Co-engagement scores of posts for the user's ``co_recent`` newest distinct history posts."""
    if co_scores is None:
        return {}
    recent = _recent(profile, config)
    return co_scores(recent, config.co_decay ** np.arange(len(recent), dtype=np.float64)) if recent else {}


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


def _candidates(profile: UserProfile, view, sim, shared: _Shared, co_by_id: Mapping[str, float],
                config: RankConfig, co_rows: np.ndarray | None, liked: np.ndarray) -> tuple[np.ndarray, CandidateIds]:
    """Rows worth scoring (nearest, trending, fresh, co-engaged and affinity-author posts, minus
    seen/own) with their post ids (read from the view when asked for).  ``co_rows``: the
    co-engagement score of every row, when known; ``liked``: the rows of the user's liked and
    followed authors (:func:`_liked_rows`)."""
    n = len(view)
    if n <= config.max_candidates:
        keep = np.ones(n, dtype=bool)
    else:
        m = config.per_source
        pools = [top_set(sim, m), *shared.top_pools(m)]
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


def _diversify(scores: Sequence[np.ndarray], emb: np.ndarray, cands: Sequence[np.ndarray],
               authors: Sequence[str], k: int, config: RankConfig) -> list[list[int]]:
    """Greedy MMR for several users at once: trade score against similarity to what is already
    picked; cap posts per author.  User ``u``'s candidate ``j`` is catalog row ``cands[u][j]``
    (``emb`` and ``authors`` per catalog row) with score ``scores[u][j]``.  Returns each user's
    picked candidates (indices into ``scores[u]``) in order, as the user's own MMR would."""
    orders = [best_first(s, max(k * 5, 50)) for s in scores]
    picked: list[list[int]] = [[] for _ in orders]
    for length in {order.size for order in orders} - {0}:  # one call per shortlist length (see _greedy_mmr)
        users = [u for u, order in enumerate(orders) if order.size == length]
        _greedy_mmr(*([x[u] for u in users] for x in (scores, cands, orders, picked)), emb, authors, k, config)
    return picked


def _greedy_mmr(scores: list[np.ndarray], cands: list[np.ndarray], orders: list[np.ndarray],
                picked: list[list[int]], emb: np.ndarray, authors: Sequence[str], k: int, config: RankConfig) -> None:
    """:func:`_diversify` for users whose shortlists ``orders`` have one length; fills ``picked``.

    Plain greedy MMR (each user takes the first maximum of ``base - (1 - lam) * penalty`` over
    its live entries; a pick raises the penalties to its similarities where higher; ``lam >= 1``:
    score order), one step for all users: one argmax, an author-cap check per user (a candidate
    over the cap just dies, no penalty moves), one stacked matrix-vector product.  A dead entry
    is -inf in ``mmr`` and skipped by the update.  Per user, the arithmetic is the textbook loop's
    (tests/unit/test_ranking.py): ``np.matmul`` on a stack calls gemv per user as ``sub @ v``
    does, and gemv's sums depend on the row count (padding shortlists would change last bits).
    """
    lam, cap, c = config.mmr_lambda, config.author_cap, max(0.0, 1 - config.mmr_lambda)
    rows = np.stack([cand[order] for cand, order in zip(cands, orders)])
    sub = emb.take(rows, axis=0) if c else None  # (users, shortlist, dim): the shortlists' rows only
    base = lam * np.stack([s[order] for s, order in zip(scores, orders)])
    penalty = np.zeros_like(base)  # max(0, highest similarity to a picked post)
    mmr = base - c * penalty
    alive = np.ones(base.shape, dtype=bool)
    short, rows = [order.tolist() for order in orders], rows.tolist()
    per_author: list[dict[str, int]] = [{} for _ in orders]
    going, left = list(range(len(orders))), len(short[0])  # users (array rows) not done; live entries each
    while going and left:
        best = mmr.argmax(axis=1)
        at = np.array(going)
        mmr[at, best[at]], alive[at, best[at]] = -np.inf, False
        left -= 1
        moved = []  # the users whose pick was taken and who go on
        for i, b in zip(going, best[at].tolist()):
            author = authors[rows[i][b]]
            if per_author[i].get(author, 0) < cap:
                per_author[i][author] = per_author[i].get(author, 0) + 1
                picked[i].append(short[i][b])
                if len(picked[i]) < k:
                    moved.append(i)
        going = [i for i in going if len(picked[i]) < k]
        if not moved or not left or not c:
            continue
        if 2 * len(going) <= len(short):  # drop the finished users' rows
            keep, new = np.array(going), {i: n for n, i in enumerate(going)}
            sub, base, penalty, mmr, alive, best = (x[keep] for x in (sub, base, penalty, mmr, alive, best))
            short, rows, per_author, picked = ([x[i] for i in going] for x in (short, rows, per_author, picked))
            moved, going = [new[i] for i in moved], list(range(len(going)))
        sim = np.matmul(sub, sub[np.arange(len(short)), best][:, :, None])[:, :, 0]  # all users' rows
        if len(moved) == len(short):
            np.maximum(penalty, sim, out=penalty)
        else:  # rows whose pick died (author cap) or whose user is done keep their penalties
            taken = np.zeros((len(short), 1), dtype=bool)
            taken[moved] = True
            np.maximum(penalty, sim, out=penalty, where=taken)
        np.subtract(base, c * penalty, out=mmr, where=alive)  # dead entries stay -inf
