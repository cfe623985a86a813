"""The recommendation service: what an agent calls for each event, with no broker in sight.

It owns the in-memory catalog, the factor model (through the ``FactorModel`` protocol), the
co-engagement index (:class:`processors.co_engagement.CoEngagement`) and the per-user
throttle.  Profiles are passed in and out so the stream layer can keep them in a
changelog-backed table.

Examples
--------
>>> import numpy as np
>>> from processors.events import Engagement, Post
>>> svc = Recommender(dim=2, clock=lambda: 100.0)
>>> svc.on_posts([Post("p1", "alice", "running", 0.0), Post("p2", "bob", "jogging", 0.0)],
...              np.array([[1, 0], [0.9, 0.1]], dtype=np.float32))  # evicted nothing
[]
>>> profile = UserProfile("u1")
>>> svc.on_engagement(Engagement("like", "u1", "p1", ts=1.0), profile)
True
>>> doc = svc.recommendation(profile)
>>> [item["post_id"] for item in doc["items"]], doc["based_on_events"]
(['p2'], 1)
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from processors.catalog import POPULARITY_HALF_LIFE_S, PostCatalog
from processors.co_engagement import CoEngagement
from processors.events import SCHEMA_VERSION, Engagement, Follow, Post
from processors.profiles import ACTION_WEIGHTS, UserProfile
from processors.protocols import FactorModel
from processors.ranking import RankConfig, recommend_many
from processors.throttle import Throttle

if TYPE_CHECKING:
    from processors.blend_learning import BlendLearner

MODEL_VERSION = "ripple-hybrid-1"
#: users scored together by :meth:`Recommender.recommendations` (bounds the similarity matrix:
#: this many rows × catalog size); callers that score in steps use the same chunk
SCORING_CHUNK = 64


@dataclass(frozen=True)
class RecommenderConfig:
    k: int = 10
    min_interval_s: float = 1.0
    negatives: int = 3
    seen_limit: int = 500
    history_limit: int = 200
    catalog_limit: int = 50_000
    rank: RankConfig = field(default_factory=RankConfig)
    seed: int = 7
    #: half-life of the catalog's decayed popularity
    popularity_half_life_s: float = POPULARITY_HALF_LIFE_S
    #: each engagement is paired with the user's ``co_window`` previous posts (0: no co-engagement)
    co_window: int = 20
    #: co-engaged posts remembered per post (the strongest are kept)
    co_neighbours: int = 200


class Recommender:
    """Catalog + factor model + throttle, driven one event at a time."""

    def __init__(
        self,
        dim: int,
        factors: FactorModel | None = None,
        config: RecommenderConfig = RecommenderConfig(),
        clock: Callable[[], float] = time.time,
    ):
        self.config = config
        self.catalog = PostCatalog(dim, capacity=config.catalog_limit, popularity_half_life_s=config.popularity_half_life_s)
        self.factors = factors
        self.coengagement = CoEngagement(config.co_window, config.co_neighbours, config.catalog_limit) if config.co_window > 0 else None
        self.throttle = Throttle(config.min_interval_s)
        self.clock = clock
        self._rng = random.Random(config.seed)
        self.model_version = MODEL_VERSION + (f"+{factors.version}" if factors is not None else "")
        #: the item-side state shared with other workers (:class:`processors.item_state.ItemState`
        #: sets it); ``None``: this recommender learns alone
        self.item_state = None
        #: :class:`processors.trends.Trends` that learns every engagement (the worker sets it)
        self.trends = None
        #: :class:`processors.blend_learning.BlendLearner` that learns the ranking blend from the
        #: lists sent (:meth:`learn_blend` sets it); ``None``: the configured blend, always
        self.blend = None

    # -- inputs -------------------------------------------------------------------------
    def on_posts(self, posts: Sequence[Post], embeddings: np.ndarray) -> list[str]:
        """Add embedded posts to the catalog; the ids of the posts they evicted (oldest first)."""
        evicted = (self.catalog.add(post.post_id, post.author_id, post.ts, emb) for post, emb in zip(posts, embeddings))
        return [old for old in evicted if old is not None]

    def on_engagement(self, ev: Engagement, profile: UserProfile, weight: float | None = None) -> bool:
        """Fold ``ev`` into ``profile`` and the shared models; True when a recommendation is due now.

        ``weight`` overrides the action weight (e.g. 0 for a negative comment: counted, not liked).
        """
        w = ACTION_WEIGHTS.get(ev.kind, 1.0) if weight is None else weight
        author = self.catalog.author_of(ev.post_id)
        cfg = self.config
        previous = [h[0] for h in profile.history[-cfg.co_window:]] if self.coengagement is not None and w > 0 else []
        profile.apply_engagement(ev.kind, ev.post_id, author, ev.ts, weight=w,
                                 history_limit=cfg.history_limit, seen_limit=cfg.seen_limit)
        if w > 0 and self.catalog.engage(ev.post_id, w, ev.ts):
            paired = self.coengagement.learn(ev.post_id, previous) if self.coengagement is not None else ()
            if self.factors is not None:
                self.factors.learn(ev.user_id, ev.post_id, self.catalog.sample_ids(cfg.negatives, self._rng))
            if self.item_state is not None:
                self.item_state.record(ev.post_id, w, ev.ts, paired)
            if self.trends is not None:
                self.trends.record(ev.post_id, w, ev.ts)
        if w > 0 and self.blend is not None:
            self.blend.engaged(ev.user_id, ev.post_id, ev.ts)
        return self.throttle.offer(ev.user_id, self.clock())

    def learn_blend(self, **options) -> "BlendLearner":
        """Learn the ranking blend from the lists this recommender sends, the configured blend as
        its prior (``options``: :class:`processors.blend_learning.BlendLearner`'s)."""
        from processors.blend_learning import BlendLearner
        from processors.learned_blend import RANK_WEIGHTS

        self.blend = BlendLearner({f: getattr(self.config.rank, w) for f, w in RANK_WEIGHTS.items()}, **options)
        return self.blend

    def on_follow(self, ev: Follow, profile: UserProfile) -> bool:
        profile.apply_follow(ev.followee_id, ev.ts)
        return self.throttle.offer(ev.user_id, self.clock())

    def save_user_state(self, profile: UserProfile) -> UserProfile:
        """Copy the user's side of the factor model into ``profile`` (saved with it)."""
        if self.factors is not None and hasattr(self.factors, "user_factors"):
            vec = self.factors.user_factors(profile.user_id)
            profile.factors = None if vec is None else np.round(vec, 6).tolist()
        return profile

    def resume(self, profiles: Iterable[UserProfile]) -> int:
        """After a restart or rebalance: put the users' factors saved with their profiles back, and
        owe a message to every profile whose newest state was never published (the crash came
        inside its throttle interval).  Returns how many are owed."""
        owed = 0
        restore_factors = self.factors is not None and hasattr(self.factors, "set_user_factors")
        for profile in profiles:
            if restore_factors and profile.factors is not None:
                self.factors.set_user_factors(profile.user_id, profile.factors)
            if profile.unpublished():
                self.throttle.defer(profile.user_id)
                owed += 1
        return owed

    # -- outputs ------------------------------------------------------------------------
    def due(self, limit: int | None = None) -> list[str]:
        """Users whose deferred recommendation may be sent now, owed longest first (at most ``limit``)."""
        return self.throttle.due(self.clock(), limit)

    def recommendation(self, profile: UserProfile) -> dict:
        """The recommendations message for ``profile`` (``schemas/recommendation.json``)."""
        return self.recommendations([profile])[0]

    def recommendations(self, profiles: Sequence[UserProfile]) -> list[dict]:
        """The messages for several users at once (one catalog snapshot, one similarity matrix
        product; see :func:`processors.ranking.recommend_many`)."""
        now = self.clock()
        scorer = self.factors.scores if self.factors is not None else None
        rank = self.config.rank if self.blend is None else self.blend.rank_config(self.config.rank)
        out = []
        for i in range(0, len(profiles), SCORING_CHUNK):
            chunk = profiles[i:i + SCORING_CHUNK]
            results = recommend_many(chunk, self.catalog, now, self.config.k, scorer, rank, as_dicts=True,
                                     co_index=self.coengagement)
            out += [self._message(p, r, now) for p, r in zip(chunk, results)]
        if self.blend is not None:
            for doc in out:
                self.blend.shown(doc["user_id"], doc["items"], now)
        return out

    def _message(self, profile: UserProfile, result, now: float) -> dict:
        """The message for ``result``, whose items are already ``Recommendation.to_dict``'s."""
        if result.missing:
            self.throttle.retry(profile.user_id)
        return {
            "schema_version": SCHEMA_VERSION,
            "rec_id": uuid.uuid4().hex,
            "user_id": profile.user_id,
            "generated_at": now,
            "model_version": self.model_version,
            "based_on_events": profile.events,
            "items": result.items,
        }
