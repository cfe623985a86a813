"""The recommendation service: what an agent calls for each event, with no broker in sight.

It owns the in-memory catalog, the factor model (through the ``FactorModel`` protocol), the
co-engagement index (:class:`CoEngagement`) and the per-user throttle.  Profiles are passed in and out so the stream layer can keep them in a
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

import math
import random
import time
import uuid
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from processors.catalog import POPULARITY_HALF_LIFE_S, PostCatalog
from processors.events import SCHEMA_VERSION, Engagement, Follow, Post
from processors.profiles import ACTION_WEIGHTS, UserProfile
from processors.protocols import FactorModel, IndexCache, index_of
from processors.ranking import RankConfig, recommend_many
from processors.throttle import Throttle

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


class _Neighbours:
    """One post's co-engaged posts: slots and counts in typed arrays (``array.array``: an increment
    or an append costs no numpy call) plus a ``slot → position`` dict; :meth:`arrays` copies them
    into numpy for scoring, once per change."""

    __slots__ = ("idx", "cnt", "pos", "_view")

    def __init__(self):
        self.idx = array("q")
        self.cnt = array("d")
        self.pos: dict[int, int] = {}
        self._view: tuple[np.ndarray, np.ndarray] | None = None  # ``arrays()``, until the next change

    def __len__(self) -> int:
        return len(self.pos)

    def add(self, other: int) -> None:
        p = self.pos.get(other)
        if p is None:
            self.pos[other] = len(self.idx)
            self.idx.append(other)
            self.cnt.append(1.0)
        else:
            self.cnt[p] += 1.0
        self._view = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Slots and counts as numpy arrays (copies: later changes do not show through)."""
        if self._view is None:
            self._view = np.array(self.idx, dtype=np.int64), np.array(self.cnt, dtype=np.float64)
        return self._view

    def keep(self, rows: np.ndarray, idx: np.ndarray | None = None) -> None:
        """Keep only positions ``rows`` (in that order), with slots renumbered to ``idx`` if given."""
        slots, counts = self.arrays()
        self.idx = array("q", np.asarray(slots[rows] if idx is None else idx, dtype=np.int64).tobytes())
        self.cnt = array("d", np.asarray(counts[rows], dtype=np.float64).tobytes())
        self.pos = {o: i for i, o in enumerate(self.idx)}
        self._view = None


class CoEngagement:
    """Item-to-item co-engagement: posts engaged by the same users close in time.

    ``learn(post, previous)`` pairs a post with the user's previous posts (both directions);
    ``scores(recent, weights)`` is, for every post co-engaged with one of ``recent``,
    ``sum_r weight_r * c(r, q) / sqrt(n(r) * n(q))`` — a weighted cosine of co-occurrence counts
    ``c`` over engagement counts ``n``.  Memory is bounded: ``max_neighbours`` per post (the
    strongest kept) and ``max_posts`` posts (the least recently engaged forgotten first).

    Posts get integer slots, and each post's neighbours live in typed arrays (:class:`_Neighbours`),
    read as numpy arrays, so scoring is one ``np.bincount`` over slices, with no per-neighbour
    Python work; the figures equal a plain-Python sum.

    Examples
    --------
    >>> co = CoEngagement()
    >>> for user_history in (["a", "b"], ["a", "b"], ["a", "c"]):
    ...     for i, post in enumerate(user_history):
    ...         co.learn(post, user_history[:i])
    >>> s = co.scores(["a"], [1.0])
    >>> sorted(s, key=s.get, reverse=True), round(s["b"], 3)
    (['b', 'c'], 0.816)
    """

    def __init__(self, window: int = 20, max_neighbours: int = 200, max_posts: int = 50_000):
        self.window = window
        self.max_neighbours = max_neighbours
        self.max_posts = max_posts
        #: a neighbour list longer than this is cut to the ``max_neighbours`` strongest (amortised)
        self._limit = max_neighbours + max(8, max_neighbours // 4)
        self._slot: dict[str, int] = {}  # live post → slot
        self._post: list[str | None] = []  # slot → post (None: forgotten; slots are not reused until compaction)
        self._n = np.zeros(64, dtype=np.float64)  # engagements per slot (0: forgotten)
        self._pairs: list[_Neighbours] = []  # slot → its neighbours' slots and co-occurrence counts
        self._lru: OrderedDict[str, None] = OrderedDict()  # least recently engaged first
        #: bumped whenever a post's slot changes (new slot, compaction): invalidates ``rows_for`` caches
        self.slot_version = 0
        self._rows_cache = IndexCache()
        self._learnt = 0  # engagements learnt: the key of ``_norms``'s cache
        self._norms_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self._columns_cache: tuple | None = None  # see ``_columns``

    def learn(self, post_id: str, previous: Sequence[str]) -> None:
        """One engagement with ``post_id`` by a user whose earlier posts were ``previous`` (oldest first)."""
        me = self._slot.get(post_id)
        if me is None:
            me = self._new_slot(post_id)
        self._n[me] += 1.0
        self._lru[post_id] = None
        self._lru.move_to_end(post_id)
        mine, slot, pairs, limit = self._pairs[me], self._slot, self._pairs, self._limit
        for other in dict.fromkeys(previous[-self.window:] if self.window > 0 else ()):
            o = slot.get(other)
            if o is None or o == me:
                continue
            mine.add(o)
            theirs = pairs[o]
            theirs.add(me)
            if len(theirs.pos) > limit:
                self._prune(theirs)
        if len(mine.pos) > limit:
            self._prune(mine)
        while len(self._lru) > self.max_posts:
            old, _ = self._lru.popitem(last=False)
            s = self._slot.pop(old)
            self._post[s] = None
            self._n[s] = 0.0  # entries pointing at it elsewhere score 0 and are dropped
            self._pairs[s] = _Neighbours()
            self.slot_version += 1
        if len(self._post) > 2 * self.max_posts + 64:
            self._compact()
        self._learnt += 1

    def scores(self, recent: Sequence[str], weights: Iterable[float]) -> "CoScoreVector":
        """Weighted co-engagement cosine of every post paired with one of ``recent``."""
        idx, cnt, scale = [], [], []
        self._entries(recent, weights, idx, cnt, scale)
        if not idx:
            return CoScoreVector(self, np.zeros(0))
        # each post's counts times its own scale: the products ``c * scale`` one post at a time would give
        vals = np.concatenate(cnt) * np.repeat(scale, list(map(len, idx)))
        # one zero past the last slot, for CoScoreVector.over to gather the unknown posts' (-1) from
        acc = np.bincount(np.concatenate(idx), weights=vals, minlength=len(self._post) + 1)
        sqrt_n, dead = self._norms()
        acc /= sqrt_n
        if dead.size:
            acc[dead] = 0.0
        return CoScoreVector(self, acc, padded_at=self.slot_version)

    def _entries(self, recent: Sequence[str], weights: Iterable[float], idx: list, cnt: list, scale: list) -> int:
        """Append, for each of ``recent`` that is known, weighted and has neighbours, its neighbour
        slots, their counts and its scale ``weight / sqrt(n)``; how many posts were appended."""
        slot, pairs, n = self._slot, self._pairs, self._n
        added = 0
        for post_id, w in zip(recent, weights.tolist() if isinstance(weights, np.ndarray) else weights):
            s = slot.get(post_id)
            if s is None or w == 0 or not pairs[s].pos:
                continue
            i, c = pairs[s].arrays()
            idx.append(i)
            cnt.append(c)
            scale.append(float(w) / math.sqrt(n[s]))
            added += 1
        return added

    def over_many(self, recents: Sequence[Sequence[str]], weights: Sequence[np.ndarray], ids: Sequence[str],
                  version) -> np.ndarray:
        """``scores(recents[u], weights[u]).over(ids, version)`` for every user ``u``, bit for bit,
        as one (users × ``len(ids)``) array: one ``bincount`` for the users' entries together,
        each entry binned in its user's row, so every score sums the same products in the same
        order as :meth:`scores`."""
        n = len(ids)
        idx, cnt, scale, users = [], [], [], []
        for u, (recent, w) in enumerate(zip(recents, weights)):
            users += [u] * self._entries(recent, w, idx, cnt, scale)
        if not idx or not n:
            return np.zeros((len(recents), n))
        column, norm = self._columns(ids, version)
        sizes = list(map(len, idx))
        vals = np.concatenate(cnt) * np.repeat(scale, sizes)
        at = np.repeat(np.array(users, dtype=np.int64) * (n + 1), sizes) + column[np.concatenate(idx)]
        acc = np.bincount(at, weights=vals, minlength=len(recents) * (n + 1)).reshape(len(recents), n + 1)
        return acc[:, :n] / norm

    def _columns(self, ids: Sequence[str], version) -> tuple[np.ndarray, np.ndarray]:
        """For :meth:`over_many`: each slot's position in ``ids`` (``len(ids)`` if none, and for the
        padding slot) and each id's ``sqrt(n)`` (1 where none: those score 0 anyway); cached while
        ``version``, the slots and the counts stay the same.  Ids name live posts only (n >= 1),
        so no forgotten slot is read and none needs zeroing, unlike in :meth:`scores`."""
        key = (version, self.slot_version, self._learnt)
        if self._columns_cache is None or self._columns_cache[0] != key:
            slots = self.rows_for(ids, version)  # each id's slot (-1: none)
            have = slots >= 0
            column = np.full(len(self._post) + 1, len(ids), dtype=np.int64)
            column[slots[have]] = np.flatnonzero(have)
            norm = np.ones(len(ids))
            norm[have] = np.sqrt(self._n[slots[have]])
            self._columns_cache = (key, column, norm)
        return self._columns_cache[1:]

    def _norms(self) -> tuple[np.ndarray, np.ndarray]:
        """``sqrt(n)`` per live slot (1 for forgotten slots and the padding slot) and the forgotten
        slots (n = 0), recomputed only after something was learnt."""
        if self._norms_cache is None or self._norms_cache[0] != self._learnt:
            n = self._n[: len(self._post)]
            live = n > 0
            sqrt_n = np.ones(len(n) + 1)
            sqrt_n[:-1][live] = np.sqrt(n[live])
            self._norms_cache = (self._learnt, sqrt_n, np.flatnonzero(~live))
        return self._norms_cache[1], self._norms_cache[2]

    def rows_for(self, ids: Sequence[str], version) -> np.ndarray:
        """Slots of ``ids`` (-1: none), cached while ``version`` (the caller's name for that list
        of ids) and :attr:`slot_version` stay the same."""
        return self._rows_cache.rows(ids, self._slot, version=version, generation=self.slot_version)

    def _new_slot(self, post_id: str) -> int:
        s = len(self._post)
        self._post.append(post_id)
        self._pairs.append(_Neighbours())
        self._slot[post_id] = s
        self.slot_version += 1
        if s >= len(self._n):
            self._n = np.concatenate([self._n, np.zeros_like(self._n)])
        return s

    def _compact(self) -> None:
        """Renumber the live posts' slots (forgotten slots otherwise accumulate forever)."""
        live = [s for s, p in enumerate(self._post) if p is not None]
        new_of = np.full(len(self._post), -1, dtype=np.int64)
        new_of[live] = np.arange(len(live))
        self._post = [self._post[s] for s in live]
        self._pairs = [self._pairs[s] for s in live]
        for nb in self._pairs:
            renamed = new_of[nb.arrays()[0]]
            rows = np.flatnonzero(renamed >= 0)
            nb.keep(rows, renamed[rows])
        n = np.zeros(max(64, 2 * len(live)), dtype=np.float64)
        n[: len(live)] = self._n[live]
        self._n = n
        self._slot = {p: i for i, p in enumerate(self._post)}
        self.slot_version += 1

    def _prune(self, pairs: _Neighbours) -> None:
        """Cut ``pairs`` to its ``max_neighbours`` strongest, ties in insertion order (as
        ``heapq.nlargest``), strongest first; :meth:`learn` calls it past ``_limit`` (amortised)."""
        order = np.argsort(-pairs.arrays()[1], kind="stable")[: self.max_neighbours]
        pairs.keep(order)

    def __len__(self) -> int:
        return len(self._lru)


class CoScoreVector(Mapping[str, float]):
    """Read-only ``post_id → co-engagement score`` over a dense score vector (only posts with a
    positive score are keys); :meth:`take` gathers many at once."""

    __slots__ = ("_co", "_acc", "_padded_at")

    def __init__(self, co: CoEngagement, acc: np.ndarray, padded_at: int | None = None):
        #: ``padded_at``: ``co.slot_version`` when ``acc`` was made, one zero past every slot
        self._co, self._acc, self._padded_at = co, acc, padded_at

    def __getitem__(self, post_id: str) -> float:
        s = self._co._slot.get(post_id)
        if s is None or s >= self._acc.size or self._acc[s] <= 0:
            raise KeyError(post_id)
        return float(self._acc[s])

    def __iter__(self):
        post = self._co._post
        return (post[s] for s in np.flatnonzero(self._acc > 0).tolist())

    def __len__(self) -> int:
        return int(np.count_nonzero(self._acc > 0))

    def __bool__(self) -> bool:
        return bool(self._acc.size) and bool((self._acc > 0).any())

    def take(self, post_ids: Sequence[str]) -> np.ndarray:
        """Scores of ``post_ids`` (0 where none), as one array."""
        if not self._acc.size:
            return np.zeros(len(post_ids))
        rows = index_of(post_ids, self._co.rows_for)  # a fresh array: safe to modify
        rows[rows >= self._acc.size] = -1
        out = self._acc[rows]
        out[rows < 0] = 0.0
        return out

    def over(self, ids: Sequence[str], version) -> np.ndarray:
        """Scores of every post of the list ``ids`` (0 where none), e.g. a catalog view's ids;
        the id → slot mapping is cached per ``version`` (see :meth:`CoEngagement.rows_for`)."""
        if not self._acc.size:
            return np.zeros(len(ids))
        slots = self._co.rows_for(ids, version)  # cached: read only
        if self._padded_at == self._co.slot_version:  # every slot is below the padding zero, read for -1
            return self._acc.take(slots)
        out = np.zeros(len(ids))
        ok = (slots >= 0) & (slots < self._acc.size)
        out[ok] = self._acc[slots[ok]]
        return out

    def top(self, m: int) -> list[str]:
        """The ``m`` highest-scoring posts."""
        live = np.flatnonzero(self._acc > 0)
        if live.size > m:
            live = live[np.argpartition(-self._acc[live], m)[:m]]
        post = self._co._post
        return [post[s] for s in live.tolist()]


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
            if self.coengagement is not None:
                self.coengagement.learn(ev.post_id, previous)
            if self.factors is not None:
                self.factors.learn(ev.user_id, ev.post_id, self.catalog.sample_ids(cfg.negatives, self._rng))
        return self.throttle.offer(ev.user_id, self.clock())

    def on_follow(self, ev: Follow, profile: UserProfile) -> bool:
        profile.apply_follow(ev.followee_id, ev.ts)
        return self.throttle.offer(ev.user_id, self.clock())

    def resume(self, profiles: Iterable[UserProfile]) -> int:
        """After a restart or rebalance: owe a message to every profile whose newest state was
        never published (the crash came inside its throttle interval).  Returns how many."""
        owed = 0
        for profile in profiles:
            if profile.unpublished():
                self.throttle.defer(profile.user_id)
                owed += 1
        return owed

    # -- outputs ------------------------------------------------------------------------
    def due(self) -> list[str]:
        """Users whose deferred recommendation may be sent now."""
        return self.throttle.due(self.clock())

    def recommendation(self, profile: UserProfile) -> dict:
        """The recommendations message for ``profile`` (``schemas/recommendation.json``)."""
        return self.recommendations([profile])[0]

    def recommendations(self, profiles: Sequence[UserProfile]) -> list[dict]:
        """The messages for several users at once (one catalog snapshot, one similarity matrix
        product; see :func:`processors.ranking.recommend_many`)."""
        now = self.clock()
        scorer = self.factors.scores if self.factors is not None else None
        out = []
        for i in range(0, len(profiles), SCORING_CHUNK):
            chunk = profiles[i:i + SCORING_CHUNK]
            results = recommend_many(chunk, self.catalog, now, self.config.k, scorer, self.config.rank, as_dicts=True,
                                     co_index=self.coengagement)
            out += [self._message(p, r, now) for p, r in zip(chunk, results)]
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
