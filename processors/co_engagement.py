"""Item-to-item co-engagement: posts engaged by the same users close in time.

:class:`CoEngagement` learns, one engagement at a time, which posts each post is engaged together
with, in bounded memory, and scores posts against a user's recent ones as a weighted cosine of
co-occurrence counts; :class:`CoScoreVector` is one such set of scores, read by post id or
gathered over a list of ids at once.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter, OrderedDict
from typing import Iterable, Mapping, Sequence

import numpy as np

from processors.protocols import IndexCache, index_of


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

    def add(self, other: int, count: float = 1.0) -> None:
        p = self.pos.get(other)
        if p is None:
            self.pos[other] = len(self.idx)
            self.idx.append(other)
            self.cnt.append(count)
        else:
            self.cnt[p] += count
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
    ...         _ = co.learn(post, user_history[:i])
    >>> s = co.scores(["a"], [1.0])
    >>> sorted(s, key=s.get, reverse=True), round(s["b"], 3)
    (['b', 'c'], 0.816)
    """

    def __init__(self, window: int = 20, max_neighbours: int = 200, max_posts: int = 50_000):
        self.window = window
        self.max_neighbours = max_neighbours
        self.max_posts = max_posts
        #: a neighbour list longer than this is cut to the ``max_neighbours`` strongest (amortised)
        self._prune_above = max_neighbours + max(8, max_neighbours // 4)
        self._slot_of: dict[str, int] = {}  # live post → slot
        self._post_of: list[str | None] = []  # slot → post (None: forgotten; slots are not reused until compaction)
        self._engagements = np.zeros(64, dtype=np.float64)  # engagements per slot (0: forgotten)
        self._neighbours: list[_Neighbours] = []  # slot → its neighbours' slots and co-occurrence counts
        self._lru: OrderedDict[str, None] = OrderedDict()  # least recently engaged first
        #: bumped whenever a post's slot changes (new slot, compaction): invalidates ``rows_for`` caches
        self.slot_version = 0
        self._rows_cache = IndexCache()
        self._learnt = 0  # engagements learnt: the key of ``_norms``'s cache
        self._norms_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self._columns_cache: tuple | None = None  # see ``_columns``

    def learn(self, post_id: str, previous: Sequence[str]) -> list[str]:
        """One engagement with ``post_id`` by a user whose earlier posts were ``previous`` (oldest
        first); returns the posts it was paired with (those known here, each once)."""
        me = self._slot_of.get(post_id)
        if me is None:
            me = self._new_slot(post_id)
        self._engagements[me] += 1.0
        self._lru[post_id] = None
        self._lru.move_to_end(post_id)
        neighbours, slot_of, prune_above = self._neighbours, self._slot_of, self._prune_above
        mine = neighbours[me]
        paired = []
        for other in dict.fromkeys(previous[-self.window:] if self.window > 0 else ()):
            o = slot_of.get(other)
            if o is None or o == me:
                continue
            paired.append(other)
            mine.add(o)
            theirs = neighbours[o]
            theirs.add(me)
            if len(theirs.pos) > prune_above:
                self._prune(theirs)
        if len(mine.pos) > prune_above:
            self._prune(mine)
        self._forget_beyond_bound()
        self._learnt += 1
        return paired

    def add_counts(self, engaged: Mapping[str, float], pairs: Mapping[str, Sequence[str]]) -> None:
        """Add engagement counts and co-occurrences learnt elsewhere (another worker's
        :meth:`learn` calls): ``pairs[a]`` lists the posts ``a`` was paired with, once per
        co-occurrence, each counting both directions, as ``learn`` does.

        >>> here, there = CoEngagement(), CoEngagement()
        >>> _ = there.learn("a", []), there.learn("b", ["a"])
        >>> here.add_counts({"a": 1, "b": 1}, {"b": ["a"]})
        >>> dict(here.scores(["a"], [1.0])) == dict(there.scores(["a"], [1.0]))
        True
        """
        for post, n in engaged.items():
            s = self._touch_slot(post)  # first: a new slot may grow ``_engagements``
            self._engagements[s] += n
        for a, others in pairs.items():
            sa = self._touch_slot(a, recent=False)
            for b, c in Counter(others).items():
                sb = self._touch_slot(b, recent=False)
                if sa == sb:
                    continue
                for nb, other in ((self._neighbours[sa], sb), (self._neighbours[sb], sa)):
                    nb.add(other, c)
                    if len(nb.pos) > self._prune_above:
                        self._prune(nb)
        self._forget_beyond_bound()
        self._learnt += 1

    def post_ids(self) -> list[str]:
        """Every post with co-engagement state."""
        return list(self._slot_of)

    def item_state(self, post_id: str) -> tuple[float, dict[str, float]] | None:
        """``post_id``'s engagement count and co-occurrence counts by neighbour (``None``: unknown)."""
        s = self._slot_of.get(post_id)
        if s is None:
            return None
        slots, counts = self._neighbours[s].arrays()
        post_of = self._post_of
        return float(self._engagements[s]), {post_of[o]: float(c) for o, c in zip(slots.tolist(), counts.tolist())
                                             if post_of[o] is not None}

    def set_item_state(self, post_id: str, engagements: float, neighbours: Mapping[str, float]) -> None:
        """Replace ``post_id``'s counts with a snapshot's (another worker's :meth:`item_state`)."""
        s = self._touch_slot(post_id)
        self._engagements[s] = engagements
        nb = self._neighbours[s] = _Neighbours()
        for other, c in neighbours.items():
            o = self._touch_slot(other, recent=False)
            if o != s:
                nb.add(o, c)
        if len(nb.pos) > self._prune_above:
            self._prune(nb)
        self._forget_beyond_bound()
        self._learnt += 1

    def _touch_slot(self, post_id: str, recent: bool = True) -> int:
        """``post_id``'s slot (a new one if unknown, as least recently engaged unless ``recent``)."""
        s = self._slot_of.get(post_id)
        if s is None:
            s = self._new_slot(post_id)
            self._lru[post_id] = None
            if not recent:
                self._lru.move_to_end(post_id, last=False)
        if recent:
            self._lru.move_to_end(post_id)
        return s

    def _forget_beyond_bound(self) -> None:
        """Forget the least recently engaged posts beyond ``max_posts``; compact the slots now and then."""
        while len(self._lru) > self.max_posts:
            old, _ = self._lru.popitem(last=False)
            s = self._slot_of.pop(old)
            self._post_of[s] = None
            self._engagements[s] = 0.0  # entries pointing at it elsewhere score 0 and are dropped
            self._neighbours[s] = _Neighbours()
            self.slot_version += 1
        if len(self._post_of) > 2 * self.max_posts + 64:
            self._compact()

    def scores(self, recent: Sequence[str], weights: Iterable[float]) -> "CoScoreVector":
        """Weighted co-engagement cosine of every post paired with one of ``recent``."""
        idx, cnt, scale = [], [], []
        self._entries(recent, weights, idx, cnt, scale)
        if not idx:
            return CoScoreVector(self, np.zeros(0))
        # each post's counts times its own scale: the products ``c * scale`` one post at a time would give
        vals = np.concatenate(cnt) * np.repeat(scale, list(map(len, idx)))
        # one zero past the last slot, for CoScoreVector.over to gather the unknown posts' (-1) from
        acc = np.bincount(np.concatenate(idx), weights=vals, minlength=len(self._post_of) + 1)
        sqrt_n, dead = self._norms()
        acc /= sqrt_n
        if dead.size:
            acc[dead] = 0.0
        return CoScoreVector(self, acc, padded_at=self.slot_version)

    def _entries(self, recent: Sequence[str], weights: Iterable[float], idx: list, cnt: list, scale: list) -> int:
        """Append, for each of ``recent`` that is known, weighted and has neighbours, its neighbour
        slots, their counts and its scale ``weight / sqrt(n)``; how many posts were appended."""
        slot_of, neighbours, engagements = self._slot_of, self._neighbours, self._engagements
        added = 0
        for post_id, w in zip(recent, weights.tolist() if isinstance(weights, np.ndarray) else weights):
            s = slot_of.get(post_id)
            if s is None or w == 0 or not neighbours[s].pos:
                continue
            i, c = neighbours[s].arrays()
            idx.append(i)
            cnt.append(c)
            scale.append(float(w) / math.sqrt(engagements[s]))
            added += 1
        return added

    def over_many(self, recents: Sequence[Sequence[str]], weights: Sequence[np.ndarray], ids: Sequence[str],
                  version) -> tuple[np.ndarray, np.ndarray]:
        """``scores(recents[u], weights[u]).over(ids, version)`` for every user ``u``, bit for bit,
        as its non-zero pairs: sorted keys ``u * len(ids) + position in ids`` and their scores.
        One ``bincount`` sums the users' entries together, each binned in its (user, post) pair
        in the order :meth:`scores` sums them, so the cost follows the users' neighbours, not
        ``len(ids)``."""
        n = len(ids)
        idx, cnt, scale, users = [], [], [], []
        for u, (recent, w) in enumerate(zip(recents, weights)):
            users += [u] * self._entries(recent, w, idx, cnt, scale)
        if not idx or not n:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        column, norm = self._columns(ids, version)
        sizes = list(map(len, idx))
        vals = np.concatenate(cnt) * np.repeat(scale, sizes)
        col = column[np.concatenate(idx)]
        pair = np.repeat(np.array(users, dtype=np.int64) * (n + 1), sizes) + col
        if len(recents) * (n + 1) <= 16 * pair.size:  # a dense bincount is cheap: sum there
            acc = np.bincount(pair, weights=vals, minlength=len(recents) * (n + 1))
            keys = np.flatnonzero(acc)
            acc = acc[keys]
        else:
            keys, inverse = np.unique(pair, return_inverse=True)
            acc = np.bincount(inverse.ravel(), weights=vals)
        user, col = np.divmod(keys, n + 1)
        live = (col < n) & (acc != 0)
        return user[live] * n + col[live], acc[live] / norm[col[live]]

    def _columns(self, ids: Sequence[str], version) -> tuple[np.ndarray, np.ndarray]:
        """For :meth:`over_many`: each slot's position in ``ids`` (``len(ids)`` if none, and for the
        padding slot) and each id's ``sqrt(n)`` (1 where none: those score 0 anyway); cached while
        ``version``, the slots and the counts stay the same.  Ids name live posts only (n >= 1),
        so no forgotten slot is read and none needs zeroing, unlike in :meth:`scores`."""
        key = (version, self.slot_version, self._learnt)
        if self._columns_cache is None or self._columns_cache[0] != key:
            slots = self.rows_for(ids, version)  # each id's slot (-1: none)
            have = slots >= 0
            column = np.full(len(self._post_of) + 1, len(ids), dtype=np.int64)
            column[slots[have]] = np.flatnonzero(have)
            norm = np.ones(len(ids))
            norm[have] = np.sqrt(self._engagements[slots[have]])
            self._columns_cache = (key, column, norm)
        return self._columns_cache[1:]

    def _norms(self) -> tuple[np.ndarray, np.ndarray]:
        """``sqrt(n)`` per live slot (1 for forgotten slots and the padding slot) and the forgotten
        slots (n = 0), recomputed only after something was learnt."""
        if self._norms_cache is None or self._norms_cache[0] != self._learnt:
            n = self._engagements[: len(self._post_of)]
            live = n > 0
            sqrt_n = np.ones(len(n) + 1)
            sqrt_n[:-1][live] = np.sqrt(n[live])
            self._norms_cache = (self._learnt, sqrt_n, np.flatnonzero(~live))
        return self._norms_cache[1], self._norms_cache[2]

    def rows_for(self, ids: Sequence[str], version) -> np.ndarray:
        """Slots of ``ids`` (-1: none), cached while ``version`` (the caller's name for that list
        of ids) and :attr:`slot_version` stay the same."""
        return self._rows_cache.rows(ids, self._slot_of, version=version, generation=self.slot_version)

    def _new_slot(self, post_id: str) -> int:
        s = len(self._post_of)
        self._post_of.append(post_id)
        self._neighbours.append(_Neighbours())
        self._slot_of[post_id] = s
        self.slot_version += 1
        if s >= len(self._engagements):
            self._engagements = np.concatenate([self._engagements, np.zeros_like(self._engagements)])
        return s

    def _compact(self) -> None:
        """Renumber the live posts' slots (forgotten slots otherwise accumulate forever)."""
        live = [s for s, p in enumerate(self._post_of) if p is not None]
        new_of = np.full(len(self._post_of), -1, dtype=np.int64)
        new_of[live] = np.arange(len(live))
        self._post_of = [self._post_of[s] for s in live]
        self._neighbours = [self._neighbours[s] for s in live]
        for nb in self._neighbours:
            renamed = new_of[nb.arrays()[0]]
            rows = np.flatnonzero(renamed >= 0)
            nb.keep(rows, renamed[rows])
        engagements = np.zeros(max(64, 2 * len(live)), dtype=np.float64)
        engagements[: len(live)] = self._engagements[live]
        self._engagements = engagements
        self._slot_of = {p: i for i, p in enumerate(self._post_of)}
        self.slot_version += 1

    def _prune(self, neighbours: _Neighbours) -> None:
        """Cut ``neighbours`` to its ``max_neighbours`` strongest, ties in insertion order (as
        ``heapq.nlargest``), strongest first; :meth:`learn` calls it past ``_prune_above`` (amortised)."""
        order = np.argsort(-neighbours.arrays()[1], kind="stable")[: self.max_neighbours]
        neighbours.keep(order)

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
        s = self._co._slot_of.get(post_id)
        if s is None or s >= self._acc.size or self._acc[s] <= 0:
            raise KeyError(post_id)
        return float(self._acc[s])

    def __iter__(self):
        post = self._co._post_of
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
        post = self._co._post_of
        return [post[s] for s in live.tolist()]
