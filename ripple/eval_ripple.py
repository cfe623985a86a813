"""Ripple under test in the prequential replay: the real :class:`processors.recommender.Recommender`
(profile, catalog, factor model, ranking blend, diversity) with every item a post of its own author,
the clock at event time, and the replay configuration :func:`eval_config`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from processors.events import Engagement, Post
from processors.profiles import UserProfile
from processors.ranking import RankConfig
from processors.recommender import Recommender, RecommenderConfig

ITEM_AUTHOR_PREFIX = "item:"  # every item is its own "author": no author cap, never the user's own post


#: learned-blend feature → the ``RankConfig`` weight it sets
BLEND_WEIGHTS = {"similarity": "w_similarity", "factors": "w_factors", "coengagement": "w_coengagement",
                 "freshness": "w_freshness", "popularity": "w_popularity", "affinity": "w_affinity"}


class RippleSystem:
    """The real ``Recommender`` with items as posts (each its own author) created at ``t0``.

    ``learn_blend``: the ranking blend is learnt online (:class:`processors.learned_blend.LearnedBlend`)
    from each user's shown list and the item they engaged next, the configured blend as its prior."""

    def __init__(self, items: Sequence[str], embeddings: np.ndarray, config: RecommenderConfig, factors=None,
                 t0: float = 0.0, name: str = "Ripple", popularity_half_life_s: float | None = None,
                 learn_blend: bool = False):
        self.name, self.now = name, t0
        self.blend = None
        if learn_blend:
            from processors.learned_blend import LearnedBlend

            self.blend = LearnedBlend({f: getattr(config.rank, w) for f, w in BLEND_WEIGHTS.items()})
        self.shown: dict[str, list[dict]] = {}
        self.svc = Recommender(embeddings.shape[1], factors=factors, config=config, clock=lambda: self.now)
        if popularity_half_life_s is not None:
            self.svc.catalog.popularity_half_life_s = popularity_half_life_s
        self.svc.on_posts([Post(it, ITEM_AUTHOR_PREFIX + it, "", t0) for it in items], embeddings)
        self.profiles: dict[str, UserProfile] = {}

    def _profile(self, user: str) -> UserProfile:
        p = self.profiles.get(user)
        if p is None:
            p = self.profiles[user] = UserProfile(user)
        return p

    def recommend(self, user: str, k: int, now: float) -> list[str]:
        self.now = now
        items = self.svc.recommendation(self._profile(user))["items"][:k]
        if self.blend is not None:
            self.shown[user] = items
        return [it["post_id"] for it in items]

    def learn(self, user: str, item: str, ts: float) -> None:
        self.now = ts
        shown = self.shown.pop(user, None) if self.blend is not None else None
        if shown:
            ids = [it["post_id"] for it in shown]
            self.blend.learn([it["reasons"] for it in shown], ids.index(item) if item in ids else None)
            if self.blend.ready and self.blend.examples % 100 == 0:
                rank = replace(self.svc.config.rank, **{BLEND_WEIGHTS[f]: w for f, w in self.blend.weights().items()})
                self.svc.config = replace(self.svc.config, rank=rank)
        self.svc.on_engagement(Engagement("like", user, item, ts), self._profile(user))


def eval_config(n_items: int, k: int = 10, *, tuned: bool = True) -> RecommenderConfig:
    """Ripple's configuration for a replay of a static catalog.

    Always (the protocol): no rate limit, the whole catalog, every seen item remembered.
    ``tuned`` (the default) also applies the blend chosen on the first 20,000 MovieLens-100K events
    (docs/benchmarks.md; the rest of the stream was never looked at while tuning): a 7-day
    popularity half-life instead of the live feed's 6 h, less weight on text similarity (titles and
    genres say little about taste; co-engagement says more), more on popularity, and no MMR
    diversity (a replay rewards only the one item the user picked next).  With ``tuned=False``
    the live ranking defaults are kept.
    """
    protocol = RecommenderConfig(k=k, min_interval_s=0.0, seen_limit=max(n_items, 500), catalog_limit=max(n_items, 1))
    if not tuned:
        return protocol
    return replace(protocol, popularity_half_life_s=7 * 86400.0,
                   rank=RankConfig(w_similarity=0.3, w_popularity=0.5, mmr_lambda=1.0))
