"""Prequential (test-then-learn) replay of interaction events and its metrics.

Events are replayed in time order.  For every event ``(user, item, ts)`` each system is first
asked for the user's top-``k`` (the clock reads ``ts``); a *hit* is counted when ``item`` is in
it; only then does the system learn the event.  Nothing is ever known before it happened, so
the figures are what a live deployment would have seen.

An event whose ``(user, item)`` pair was seen before is learnt but not scored (it could never
hit).  Per system: HR@k, NDCG@k (one relevant item: ``1 / log2(rank + 2)``) and the cost per
event (recommend + learn, µs).

Examples
--------
>>> ndcg_at(rank=0), round(ndcg_at(rank=2), 4), ndcg_at(rank=None)
(1.0, 0.5, 0.0)
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
from tqdm import tqdm

from ripple.eval_data import Interaction


class System(Protocol):
    """What the replay needs from a recommender: rank for a user, then learn one event."""

    name: str

    def recommend(self, user: str, k: int, now: float) -> list[str]: ...

    def learn(self, user: str, item: str, ts: float) -> None: ...


def ndcg_at(rank: int | None) -> float:
    """NDCG of a list with one relevant item at 0-based ``rank`` (``None``: not in the list)."""
    return 0.0 if rank is None or rank < 0 else 1.0 / math.log2(rank + 2)


@dataclass
class Trace:
    """Per scored event: 0-based rank of the true item in the top-k (-1 = miss), its position in
    the stream and the recommend cost (ns); per event (scored or not): the learn cost (ns)."""

    ranks: np.ndarray
    recommend_ns: np.ndarray
    learn_ns: np.ndarray
    scored_at: np.ndarray | None = None  # 0-based event index of each scored event
    lists: np.ndarray | None = None  # per scored event the top-k as item indices (-1: shorter list)


def replay(events: Sequence[Interaction], systems: Sequence[System], k: int = 10, progress: bool = True,
           item_index: dict[str, int] | None = None) -> dict[str, Trace]:
    """Test-then-learn over ``events``: every system ranks, a hit is scored, then every system learns.

    With ``item_index`` (item → row) every top-k list is kept too (``Trace.lists``), for the
    beyond-accuracy metrics (:mod:`ripple.eval_beyond`)."""
    n = len(events)
    lists = {s.name: np.full((n, k), -1, dtype=np.int32) for s in systems} if item_index is not None else None
    ranks = {s.name: np.full(n, -1, dtype=np.int32) for s in systems}
    rec_ns = {s.name: np.zeros(n, dtype=np.int64) for s in systems}
    learn_ns = {s.name: np.zeros(n, dtype=np.int64) for s in systems}
    scored = np.zeros(n, dtype=bool)
    seen: set[tuple[str, str]] = set()
    clock = time.perf_counter_ns
    for e, ev in enumerate(tqdm(events, desc="replay", unit="ev", disable=not progress, file=sys.stderr, mininterval=0.5)):
        pair = (ev.user, ev.item)
        scored[e] = pair not in seen  # a repeat could never hit: seen items are excluded
        seen.add(pair)
        for s in systems:
            if scored[e]:
                t0 = clock()
                top = s.recommend(ev.user, k, ev.ts)
                rec_ns[s.name][e] = clock() - t0
                if ev.item in top[:k]:
                    ranks[s.name][e] = top.index(ev.item)
                if lists is not None:
                    lists[s.name][e, :min(k, len(top))] = [item_index[i] for i in top[:k]]
            t0 = clock()
            s.learn(ev.user, ev.item, ev.ts)
            learn_ns[s.name][e] = clock() - t0
    at = np.flatnonzero(scored)
    return {s.name: Trace(ranks[s.name][scored], rec_ns[s.name][scored], learn_ns[s.name], at,
                          lists[s.name][scored] if lists is not None else None) for s in systems}


def summarize(traces: dict[str, Trace], k: int, after: int = 0) -> dict[str, dict]:
    """HR@k, NDCG@k (over the scored events from event index ``after`` on) and costs (all events)."""
    out = {}
    for name, t in traces.items():
        ranks = t.ranks if not after or t.scored_at is None else t.ranks[t.scored_at >= after]
        hit = ranks >= 0
        ndcg = np.where(hit, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
        n = max(len(ranks), 1)
        out[name] = {
            f"HR@{k}": float(hit.sum() / n),
            f"NDCG@{k}": float(ndcg.sum() / n),
            "us_per_event": float((t.recommend_ns.sum() + t.learn_ns.sum()) / max(len(t.learn_ns), 1) / 1e3),
            "recommend_us": float(t.recommend_ns.mean() / 1e3) if len(t.recommend_ns) else 0.0,
            "learn_us": float(t.learn_ns.mean() / 1e3) if len(t.learn_ns) else 0.0,
        }
    return out
