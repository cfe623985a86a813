"""The post catalog: recent posts with their embeddings and decayed popularity, as numpy arrays.

It is the candidate pool of the recommender.  Rows live in preallocated arrays so scoring a
profile against every post is one matrix-vector product; the oldest posts are evicted once
``capacity`` is reached.

Examples
--------
>>> import numpy as np
>>> cat = PostCatalog(dim=2, capacity=2)
>>> cat.add("p1", "alice", 1.0, np.array([1.0, 0.0], dtype=np.float32))
>>> cat.add("p2", "bob", 2.0, np.array([0.0, 1.0], dtype=np.float32))
>>> cat.add("p3", "carol", 3.0, np.array([0.6, 0.8], dtype=np.float32))  # evicts the oldest
'p1'
>>> len(cat), "p1" in cat, cat.author_of("p3")
(2, False, 'carol')
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

POPULARITY_HALF_LIFE_S = 6 * 3600.0


class PostCatalog:
    """Bounded, array-backed store of recent posts (a ring buffer over rows)."""

    def __init__(self, dim: int, capacity: int = 50_000, popularity_half_life_s: float = POPULARITY_HALF_LIFE_S):
        self.dim = dim
        self.capacity = capacity
        self.popularity_half_life_s = popularity_half_life_s
        self._emb = np.zeros((capacity, dim), dtype=np.float32)
        self._created = np.zeros(capacity, dtype=np.float64)
        self._pop = np.zeros(capacity, dtype=np.float64)  # decayed count as of _pop_ts
        self._pop_ts = np.zeros(capacity, dtype=np.float64)
        self._ids: list[str | None] = [None] * capacity
        self._authors: list[str | None] = [None] * capacity
        self._row: dict[str, int] = {}
        self._rows_of_author: dict[str, set[int]] = {}  # live rows per author (candidate pools read it)
        #: a number per live author and each row's author's number: ranking looks authors up as arrays
        self._code_of_author: dict[str, int] = {}
        self._author_code = np.zeros(capacity, dtype=np.int64)
        self._next_code = 0
        self._next = 0  # next row to write (ring)
        self._filled = 0  # rows [0, _filled) are live: the ring fills in order, then wraps
        #: bumped whenever a row gets a new post id: scorers cache per-row lookups by it
        self.version = 0

    # -- writes -------------------------------------------------------------------------
    def add(self, post_id: str, author_id: str, created_at: float, embedding: np.ndarray) -> str | None:
        """Insert or replace a post (replacing keeps its popularity); the id of the post it evicted, if any."""
        row = self._row.get(post_id)
        old = None
        if row is None:
            row = self._next
            self._next = (self._next + 1) % self.capacity
            self._filled = min(self._filled + 1, self.capacity)
            old = self._ids[row]
            if old is not None:
                del self._row[old]
            self._forget_author_row(row)
            self._row[post_id] = row
            self.version += 1
            self._pop[row] = 0.0
            self._pop_ts[row] = created_at
        else:
            self._forget_author_row(row)  # a replaced post may name another author
        self._ids[row] = post_id
        self._authors[row] = author_id
        self._rows_of_author.setdefault(author_id, set()).add(row)
        code = self._code_of_author.get(author_id)
        if code is None:
            code = self._code_of_author[author_id] = self._next_code
            self._next_code += 1
        self._author_code[row] = code
        self._created[row] = created_at
        self._emb[row] = embedding
        return old

    def engage(self, post_id: str, weight: float, ts: float) -> bool:
        """Add ``weight`` to the post's decayed popularity; False if the post is unknown."""
        row = self._row.get(post_id)
        if row is None:
            return False
        if ts >= self._pop_ts[row]:
            self._pop[row] = self._decayed(row, ts) + weight
            self._pop_ts[row] = ts
        else:  # out-of-order event: discount it to the reference time instead of moving it back
            self._pop[row] += weight * math.exp(-(self._pop_ts[row] - ts) * self._decay_rate)
        return True

    def set_popularity(self, post_id: str, value: float, ts: float) -> bool:
        """Replace the post's decayed popularity with ``value`` as of ``ts`` (a snapshot read back)."""
        row = self._row.get(post_id)
        if row is None:
            return False
        self._pop[row], self._pop_ts[row] = value, ts
        return True

    # -- reads --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, post_id: str) -> bool:
        return post_id in self._row

    def claimed_by_another(self, post_id: str, author_id: str) -> bool:
        """True if the catalog holds ``post_id`` under another author (a re-publication of someone
        else's post id, which would make its author the recipient of replies meant for them).

        >>> import numpy as np
        >>> cat = PostCatalog(dim=2, capacity=4)
        >>> cat.add("p1", "alice", 1.0, np.ones(2, dtype=np.float32))
        >>> cat.claimed_by_another("p1", "mallory"), cat.claimed_by_another("p1", "alice"), cat.claimed_by_another("p2", "x")
        (True, False, False)
        """
        known = self.author_of(post_id)
        return known is not None and known != author_id

    def author_of(self, post_id: str) -> str | None:
        row = self._row.get(post_id)
        return None if row is None else self._authors[row]

    def post_ids(self) -> list[str]:
        """Every post in the catalog."""
        return list(self._row)

    def popularity_state(self, post_id: str) -> tuple[float, float] | None:
        """``(decayed popularity, as of this time)`` of the post, as stored (``None``: unknown)."""
        row = self._row.get(post_id)
        return None if row is None else (float(self._pop[row]), float(self._pop_ts[row]))

    def popularity_of(self, post_id: str, now: float) -> float:
        """The post's popularity decayed to ``now`` (0 for an unknown post)."""
        row = self._row.get(post_id)
        return 0.0 if row is None else self._decayed(row, now)

    def embedding(self, post_id: str) -> np.ndarray | None:
        row = self._row.get(post_id)
        return None if row is None else self._emb[row]

    def sample_ids(self, n: int, rng) -> list[str]:
        """``n`` post ids drawn uniformly (with replacement) with ``rng.randrange``."""
        if self._filled == 0:
            return []
        return [self._ids[rng.randrange(self._filled)] for _ in range(n)]

    def lookup(self, post_ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(found_mask, embeddings_of_found)`` for ``post_ids`` in order."""
        rows = [self._row.get(p, -1) for p in post_ids]
        mask = np.array([r >= 0 for r in rows], dtype=bool)
        return mask, self._emb[[r for r in rows if r >= 0]]

    def snapshot(self, now: float) -> "CatalogView":
        """Column arrays of the live rows for scoring (array views, no embedding copy)."""
        n = self._filled
        age = np.maximum(0.0, now - self._pop_ts[:n])
        return CatalogView(
            version=(id(self), self.version),
            row_of=self._row,
            rows_of_author=self._rows_of_author,
            code_of_author=self._code_of_author,
            author_codes=self._author_code[:n],
            ids=self._ids[:n],
            authors=self._authors[:n],
            embeddings=self._emb[:n],
            created_at=self._created[:n],
            popularity=self._pop[:n] * np.exp(-age * self._decay_rate),
        )

    # -- internals ----------------------------------------------------------------------
    def _forget_author_row(self, row: int) -> None:
        author = self._authors[row]
        rows = self._rows_of_author.get(author) if author is not None else None
        if rows is not None:
            rows.discard(row)
            if not rows:
                del self._rows_of_author[author]
                del self._code_of_author[author]

    @property
    def _decay_rate(self) -> float:
        return math.log(2) / self.popularity_half_life_s

    def _decayed(self, row: int, now: float) -> float:
        return float(self._pop[row] * math.exp(-max(0.0, now - self._pop_ts[row]) * self._decay_rate))


class CatalogView:
    """Column arrays of the catalog at one instant (row ``i`` is post ``ids[i]``)."""

    __slots__ = ("ids", "authors", "embeddings", "created_at", "popularity", "version", "row_of", "rows_of_author",
                 "code_of_author", "author_codes")

    def __init__(self, ids, authors, embeddings, created_at, popularity, version=None, row_of=None,
                 rows_of_author=None, code_of_author=None, author_codes=None):
        #: the same value for views whose ``ids`` are equal (``None``: unknown)
        self.version = version
        #: ``post_id → row`` and ``author_id → rows`` of the catalog (live, not copies: read them at once)
        self.row_of: dict[str, int] = row_of if row_of is not None else {p: i for i, p in enumerate(ids)}
        self.rows_of_author: dict[str, set[int]] = rows_of_author if rows_of_author is not None else {}
        if rows_of_author is None:
            for i, a in enumerate(authors):
                self.rows_of_author.setdefault(a, set()).add(i)
        #: ``author_id → number`` (live) and each row's author's number
        self.code_of_author: dict[str, int] = code_of_author if code_of_author is not None else {}
        if code_of_author is None:
            for a in authors:
                self.code_of_author.setdefault(a, len(self.code_of_author))
        self.author_codes: np.ndarray = (author_codes if author_codes is not None else
                                         np.array([self.code_of_author[a] for a in authors], dtype=np.int64))
        self.ids: list[str] = ids
        self.authors: list[str] = authors
        self.embeddings: np.ndarray = embeddings
        self.created_at: np.ndarray = created_at
        self.popularity: np.ndarray = popularity

    def __len__(self) -> int:
        return len(self.ids)
