"""Candidate retrieval: the catalog rows each user's ranking scores, and the sparse figures it
looks up for them, as flat sorted *keys*.

A block of ``b`` users over a catalog view of ``n`` rows names the pair (user ``u``, row ``r``)
by the key ``u * n + r``; sorted keys list user 0's rows in row order, then user 1's, and so
on.  Every pool but the nearest is found from what it needs only, its cost following the
pools' sizes rather than the catalog's:

- the ``m`` nearest rows by embedding cosine (:class:`ExactSimilarity`: one product over the
  whole catalog, the one step whose cost follows the catalog's size);
- the ``m`` most popular and ``m`` freshest rows (once per batch, :class:`Pools`);
- the ``m`` newest rows by authors the user engaged with or follows (each author's rows sorted
  once per batch);
- the ``m`` best co-engaged rows (:class:`SparseRows` from the co-engagement index).

>>> import numpy as np
>>> SparseRows.from_dense(np.array([[0.0, 0.5, 0.0], [0.2, 0.0, 0.0]])).keys.tolist()
[1, 3]
"""

from __future__ import annotations

from itertools import chain, repeat
from typing import Sequence

import numpy as np

from processors.selection import top, top_set

EMPTY = np.zeros(0, dtype=np.int64)


def union_of_keys(parts: Sequence[np.ndarray], removed: np.ndarray, size: int) -> np.ndarray:
    """The sorted union of the key arrays ``parts`` less ``removed`` (keys below ``size``): a
    mask over all ``size`` keys while that is cheap next to the parts, else a sort."""
    total = sum(map(len, parts))
    if size <= 16 * total:
        keep = np.zeros(size, dtype=bool)
        for part in parts:
            keep[part] = True
        keep[removed] = False
        return np.flatnonzero(keep)
    keys = np.sort(np.concatenate(parts))
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if keys.size else keys
    if removed.size and keys.size:
        removed = np.sort(removed)
        pos = np.minimum(np.searchsorted(removed, keys), removed.size - 1)
        keys = keys[removed[pos] != keys]
    return keys


class SparseRows:
    """Figures of a few (user, row) pairs of a block: sorted unique ``keys`` and their ``values``;
    every other pair's figure is 0."""

    __slots__ = ("keys", "values")

    def __init__(self, keys: np.ndarray, values: np.ndarray):
        self.keys, self.values = keys, values

    @classmethod
    def from_dense(cls, rows: np.ndarray) -> "SparseRows":
        """The non-zero entries of a (users × catalog) array."""
        flat = rows.ravel()
        keys = np.flatnonzero(flat)
        return cls(keys, flat[keys].astype(np.float64))

    def at(self, keys: np.ndarray, size: int) -> np.ndarray:
        """The figures of ``keys`` (below ``size``; 0 where none): through a dense array of
        ``size`` while that is cheap next to the lookups, else by binary search."""
        if size <= 16 * (keys.size + self.keys.size):
            dense = np.zeros(size)
            dense[self.keys] = self.values
            return dense.take(keys)
        out = np.zeros(keys.size)
        if self.keys.size and keys.size:
            pos = np.minimum(np.searchsorted(self.keys, keys), self.keys.size - 1)
            hit = self.keys[pos] == keys
            out[hit] = self.values[pos[hit]]
        return out

    def best(self, b: int, n: int, m: int) -> np.ndarray:
        """The keys of each user's ``m`` best positive figures."""
        positive = self.values > 0
        keys, values = self.keys[positive], self.values[positive]
        counts = np.bincount(keys // n, minlength=b)
        if counts.max(initial=0) <= m:
            return keys
        ends = np.cumsum(counts)
        parts = [keys]
        keep = np.ones(keys.size, dtype=bool)
        for u in np.flatnonzero(counts > m).tolist():
            s, e = ends[u] - counts[u], ends[u]
            keep[s:e] = False
            parts.append(keys[s + np.argpartition(-values[s:e], m)[:m]])
        parts[0] = keys[keep]
        return np.concatenate(parts)


class ExactSimilarity:
    """A block's cosines to every catalog row, as one (users × catalog) float32 array (a user
    with no interest vector has a row of zeros and no nearest rows)."""

    def __init__(self, sim: np.ndarray, known: np.ndarray):
        self.sim, self.known = sim, known

    def nearest(self, m: int) -> np.ndarray:
        n = self.sim.shape[1]
        return np.concatenate([u * n + top_set(self.sim[u], m) for u in np.flatnonzero(self.known).tolist()]
                              or [EMPTY])

    def at(self, keys: np.ndarray) -> np.ndarray:
        return self.sim.take(keys)


class Pools:
    """The pools one batch shares: the most popular and freshest rows, each author's rows."""

    def __init__(self, view, pop: np.ndarray, fresh: np.ndarray):
        self.view, self.pop, self.fresh = view, pop, fresh
        self._top: dict[int, np.ndarray] = {}
        self._of_author: dict[str, np.ndarray] = {}
        self._newest: dict[int, dict[str, np.ndarray]] = {}  # m → author → the author's m highest rows

    def top_rows(self, m: int) -> np.ndarray:
        """The ``m`` most popular and the ``m`` freshest rows, sorted, once."""
        if m not in self._top:
            self._top[m] = np.union1d(top(self.pop, m), top(self.fresh, m))
        return self._top[m]

    def of_author(self, author: str) -> np.ndarray:
        """The author's rows in this view, ascending (read once per batch per author)."""
        rows = self._of_author.get(author)
        if rows is None:
            live = self.view.rows_of_author.get(author, ())
            rows = np.sort(np.fromiter(live, dtype=np.int64, count=len(live)))
            self._of_author[author] = rows = rows[: np.searchsorted(rows, len(self.view))]
        return rows

    def liked_authors(self, users: Sequence) -> tuple[np.ndarray, np.ndarray, int, list[list[str]]]:
        """The authors each user engaged with or follows that have rows here, as sorted keys
        ``u * width + author code``, the user's affinity to each, ``width``, and each user's
        authors by name."""
        code_of = self.view.code_of_author
        users_of, codes, aff, per_user = [], [], [], []
        for u, p in enumerate(users):
            liked = [a for a in dict.fromkeys((*p.authors, *p.follows)) if a in self.view.rows_of_author]
            per_user.append(liked)
            users_of += [u] * len(liked)
            codes += [code_of[a] for a in liked]
            aff += map(p.affinity, liked)
        codes_a = np.array(codes, dtype=np.int64)
        width = int(max(self.view.author_codes.max(initial=-1), codes_a.max(initial=-1))) + 1
        keys = np.array(users_of, dtype=np.int64) * width + codes_a
        order = np.argsort(keys, kind="stable")
        return keys[order], np.array(aff, dtype=np.float64)[order], width, per_user

    def newest_of(self, authors: list[list[str]], m: int) -> np.ndarray:
        """Keys of each user's ``m`` newest (highest) rows by ``authors[u]``: from each author's
        ``m`` highest rows only."""
        n, newest = len(self.view), self._newest.setdefault(m, {})
        rows = [newest[a] if a in newest else newest.setdefault(a, self.of_author(a)[-m:])
                for liked in authors for a in liked]
        if not rows:
            return EMPTY
        per_user = np.bincount(np.repeat(np.arange(len(authors)), [len(liked) for liked in authors]),
                               weights=list(map(len, rows)), minlength=len(authors)).astype(np.int64)
        keys = np.repeat(np.arange(len(authors), dtype=np.int64) * n, per_user) + np.concatenate(rows)
        ends = np.cumsum(per_user)
        many = np.flatnonzero(per_user > m).tolist()
        if not many:
            return keys
        keep = np.ones(keys.size, dtype=bool)
        for u in many:  # the m highest of the user's rows (distinct: authors' rows are disjoint)
            s, e = ends[u] - per_user[u], ends[u]
            keep[s:e] = False
            keep[s + np.argpartition(keys[s:e], e - s - m)[e - s - m:]] = True
        return keys[keep]

    def removed(self, users: Sequence) -> np.ndarray:
        """Keys of each user's seen posts and own posts (never recommended)."""
        n, row_of = len(self.view), self.view.row_of
        lens = [len(p.seen) for p in users]
        rows = np.fromiter(map(row_of.get, chain.from_iterable(p.seen for p in users), repeat(n)),
                           dtype=np.int64, count=sum(lens))  # dict lookups in C; n: not in this view
        ok = rows < n
        seen = (np.repeat(np.arange(len(users), dtype=np.int64) * n, lens) + rows)[ok]
        return np.concatenate([seen, *(u * n + self.of_author(p.user_id) for u, p in enumerate(users))])
