"""Small protocols at every seam between the pure domain and its adapters."""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of shape ``(len(texts), dim)``."""

    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class FactorModel(Protocol):
    """Online implicit-feedback factor model (user × item)."""

    def learn(self, user: str, item: str, negatives: Sequence[str] = ()) -> None:
        """Learn one positive (user, item) and the given sampled negatives."""

    def scores(self, user: str, items: Sequence[str]) -> np.ndarray:
        """Preference scores for ``items`` (higher is better), shape ``(len(items),)``."""

    version: str


class Clock(Protocol):
    def __call__(self) -> float:
        """Seconds (monotonic or wall; callers only compare differences)."""


class CandidateIds(Sequence[str]):
    """Post ids to score that also say where they come from: positions ``rows`` of the id list
    ``source`` (a catalog view's ids) at catalog ``version``.

    A scorer that keeps its own index per post can map ``source`` to that index once per version
    and gather ``rows``, instead of a dict lookup per id per call (see :func:`index_of`).  With
    ``ids=None`` the ids are read from ``source`` only when asked for (a ranking reads a handful
    of its ~1,000 candidates' ids).

    >>> c = CandidateIds(None, source=["a", "b", "c"], version=1, rows=np.array([2, 0]))
    >>> len(c), c[0], list(c), c == ["c", "a"]
    (2, 'c', ['c', 'a'], True)
    """

    __slots__ = ("source", "version", "rows", "_ids")

    def __init__(self, ids, source: Sequence[str], version, rows: np.ndarray):
        self._ids = list(ids) if ids is not None else None
        self.source, self.version, self.rows = source, version, rows

    def __len__(self) -> int:
        return len(self._ids) if self._ids is not None else len(self.rows)

    def __getitem__(self, j):
        if isinstance(j, slice):
            return [self[i] for i in range(*j.indices(len(self)))]
        return self._ids[j] if self._ids is not None else self.source[self.rows[j]]

    def __iter__(self):
        return iter(self._ids) if self._ids is not None else (self.source[r] for r in self.rows.tolist())

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None


class IndexCache:
    """One remembered ``id list → index array`` mapping, reused while the list's ``version`` and
    the owner's ``generation`` (bumped when its own index changes) are the same as last time.

    >>> cache, lookup = IndexCache(), {"a": 0, "b": 1}
    >>> cache.rows(["b", "x"], lookup, version=1, generation=0).tolist()
    [1, -1]
    >>> lookup["x"] = 2  # a new index without a new generation: the cached rows are served
    >>> cache.rows(["b", "x"], lookup, version=1, generation=0).tolist()
    [1, -1]
    >>> cache.rows(["b", "x"], lookup, version=1, generation=1).tolist()
    [1, 2]
    """

    __slots__ = ("_key", "_rows")

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._rows: np.ndarray | None = None

    def rows(self, ids: Sequence[str], lookup: dict, *, version, generation: int) -> np.ndarray:
        """Index of each of ``ids`` in ``lookup`` (-1: absent); ``version=None``: not cached."""
        key = (version, generation)
        if version is not None and self._key == key:
            return self._rows
        rows = np.fromiter((lookup.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        if version is not None:
            self._key, self._rows = key, rows
        return rows


def index_of(ids: Sequence[str], rows_for: Callable[[Sequence[str], object], np.ndarray]) -> np.ndarray:
    """A scorer's own index of each of ``ids`` (-1: unknown). ``rows_for(id_list, version)`` maps a
    whole id list, and may cache the result per ``version`` (``None``: do not cache).

    >>> lookup = {"a": 0, "b": 1}
    >>> rows_for = lambda ids, version: np.array([lookup.get(i, -1) for i in ids])
    >>> index_of(["b", "x"], rows_for).tolist()
    [1, -1]
    >>> index_of(CandidateIds(["b"], source=["a", "b", "c"], version=1, rows=np.array([1])), rows_for).tolist()
    [1]
    """
    if isinstance(ids, CandidateIds):
        return rows_for(ids.source, ids.version)[ids.rows]
    return rows_for(ids, None)
