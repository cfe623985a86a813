"""Beyond accuracy: what the recommended lists of a prequential replay look like, per system.

* **coverage** — the share of the catalog recommended at least once;
* **novelty** — the mean popularity rank of recommended items (1: the most interacted-with item
  of the whole stream; higher is more novel);
* **diversity** — intra-list diversity: 1 − the mean cosine between the item embeddings of a
  list's pairs, averaged over lists (every ``stride``-th list).

>>> import numpy as np
>>> lists = np.array([[0, 1], [0, 2]])
>>> coverage(lists, 4), novelty(lists, np.array([1, 2, 3, 4]))
(0.75, 1.75)
>>> diversity(lists, np.eye(3, dtype=np.float32))
1.0
"""

from __future__ import annotations

import numpy as np


def coverage(lists: np.ndarray, n_items: int) -> float:
    recommended = np.unique(lists[lists >= 0])
    return float(len(recommended) / max(n_items, 1))


def novelty(lists: np.ndarray, popularity_rank: np.ndarray) -> float:
    shown = lists[lists >= 0]
    return float(popularity_rank[shown].mean()) if shown.size else 0.0


def diversity(lists: np.ndarray, embeddings: np.ndarray, stride: int = 1) -> float:
    values = []
    for row in lists[::stride]:
        idx = row[row >= 0]
        if len(idx) < 2:
            continue
        v = embeddings[idx]
        sims = v @ v.T
        n = len(idx)
        values.append(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))
    return float(np.mean(values)) if values else 0.0


def popularity_ranks(item_index: dict[str, int], items_in_events) -> np.ndarray:
    """1-based rank of every item by its interaction count over ``items_in_events`` (ties: catalog order)."""
    counts = np.zeros(len(item_index))
    for item in items_in_events:
        counts[item_index[item]] += 1
    order = np.lexsort((np.arange(len(counts)), -counts))
    ranks = np.empty(len(counts), dtype=np.float64)
    ranks[order] = np.arange(1, len(counts) + 1)
    return ranks


def beyond_accuracy(traces: dict, n_items: int, popularity_rank: np.ndarray, embeddings: np.ndarray | None,
                    stride: int = 10) -> dict[str, dict[str, float]]:
    out = {}
    for name, t in traces.items():
        if t.lists is None:
            continue
        out[name] = {"coverage": coverage(t.lists, n_items), "novelty": novelty(t.lists, popularity_rank)}
        if embeddings is not None:
            out[name]["diversity"] = diversity(t.lists, embeddings, stride)
    return out
