"""Ripple sharded over several workers in the prequential replay: users split by a hash of their
id over ``workers`` real recommenders, each holding the whole catalog (the global catalog) and
learning from its own users' events, exchanging item-side deltas through the model-sync wire
format (:mod:`processors.sync_message`) exactly as workers do.

The sync interval is in seconds of a live stream of ``stream_rate`` events/s (all workers
together): every ``interval × stream_rate`` events, each worker takes its deltas and every other
worker applies them.  ``interval=None``: no sync (each worker learns from its users alone).

>>> workers_name(4, 2.0), workers_name(4, None), workers_name(1, 2.0)
('Ripple x4 sync 2s', 'Ripple x4 no sync', 'Ripple')
"""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

from processors import sync_message
from processors.item_state import ItemState
from processors.recommender import RecommenderConfig
from ripple.eval_ripple import RippleSystem

#: events/s of the live stream a replayed sync interval stands for (order of one worker's drain)
STREAM_RATE = 1000.0


def workers_name(workers: int, interval: float | None) -> str:
    """The name of a sharded Ripple in the tables and plots (``Ripple`` for one worker)."""
    if workers == 1:
        return "Ripple"
    return f"Ripple x{workers} " + ("no sync" if interval is None else f"sync {interval:g}s")


class ShardedRipple:
    """``workers`` Ripple recommenders, users sharded over them, item-side deltas exchanged every
    ``interval`` seconds of a ``stream_rate`` events/s stream (``None``: never)."""

    def __init__(self, items: Sequence[str], embeddings: np.ndarray, config: RecommenderConfig, workers: int,
                 interval: float | None, *, factors=None, t0: float = 0.0, stream_rate: float = STREAM_RATE):
        from models.factors import ImplicitMF

        self.name = workers_name(workers, interval)
        factors = factors or (lambda: ImplicitMF())
        self.shards = [RippleSystem(items, embeddings, config, factors=factors(), t0=t0) for _ in range(workers)]
        self.states = [ItemState(s.svc) for s in self.shards] if interval is not None and workers > 1 else []
        self.every = max(1, round(interval * stream_rate)) if interval is not None else 0
        self.stream_rate, self.interval = stream_rate, interval
        self.events = 0
        self.messages = 0  # model-sync messages sent, all workers together
        self.bytes = 0

    def _shard(self, user: str) -> RippleSystem:
        return self.shards[zlib.crc32(user.encode()) % len(self.shards)]

    def recommend(self, user: str, k: int, now: float) -> list[str]:
        return self._shard(user).recommend(user, k, now)

    def learn(self, user: str, item: str, ts: float) -> None:
        self._shard(user).learn(user, item, ts)
        self.events += 1
        if self.states and self.events % self.every == 0:
            self.sync()

    def sync(self) -> None:
        """Every worker sends its deltas; every other worker applies them (through the wire format)."""
        for i, state in enumerate(self.states):
            for doc in state.take_docs():
                data = sync_message.encode(f"w{i}", self.events, {state.name: doc})
                self.messages += 1
                self.bytes += len(data)
                received = sync_message.decode(data)[2][state.name]
                for other in self.states:
                    if other is not state:
                        other.apply_doc(received)

    def traffic(self) -> dict:
        """Model-sync traffic per worker, per second of the stream the replay stands for."""
        seconds = max(self.events / self.stream_rate, 1e-9)
        n = len(self.shards)
        return {"workers": n, "stream_rate": self.stream_rate, "messages": self.messages, "bytes": self.bytes,
                "messages_per_s": self.messages / n / seconds, "kb_per_s": self.bytes / n / seconds / 1e3}
