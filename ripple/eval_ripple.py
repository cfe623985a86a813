"""Ripple under test in the prequential replay: the real :class:`processors.recommender.Recommender`
(profile, catalog, factor model, ranking blend, diversity) with every item a post of its own author,
the clock at event time, and the replay configuration :func:`eval_config`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np

from processors.events import Engagement, Post
from processors.profiles import UserProfile
from processors.ranking import RankConfig
from processors.recommender import Recommender, RecommenderConfig

ITEM_AUTHOR_PREFIX = "item:"  # every item is its own "author": no author cap, never the user's own post


class RippleSystem:
    """The real ``Recommender`` with items as posts (each its own author) created at ``t0``.

    ``learn_blend``: the ranking blend is learnt online as the worker learns it
    (:mod:`processors.blend_learning`), each shown list labelled by the item the user engaged
    next, whenever that came (the replay's clock is the data's)."""

    def __init__(self, items: Sequence[str], embeddings: np.ndarray, config: RecommenderConfig, factors=None,
                 t0: float = 0.0, name: str = "Ripple", popularity_half_life_s: float | None = None,
                 learn_blend: bool = False):
        self.name, self.now = name, t0
        self.svc = Recommender(embeddings.shape[1], factors=factors, config=config, clock=lambda: self.now)
        if learn_blend:
            self.svc.learn_blend(window_s=math.inf, max_users=1 << 30)
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
        return [it["post_id"] for it in self.svc.recommendation(self._profile(user))["items"][:k]]

    def learn(self, user: str, item: str, ts: float) -> None:
        self.now = ts
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
