"""The ranking blend learnt from what users did with the lists they were sent, shared by every
worker.

Every list the recommender sends is taken as *shown* to its user at the time it was made, with
each item's features (its ``reasons``), and waits for the user's next engagements:

- an engagement of one of its items, made after the list and within ``window_s`` of it, labels
  the list *engaged*: a step of :class:`processors.learned_blend.LearnedBlend` (that item
  against the rest of the list), and the list is done;
- the user's next list, or an engagement past ``window_s``, labels it *ignored*: counted, not
  learnt (no item was chosen, so the list says nothing about which features make one chosen).

Waiting lists are kept for the ``max_users`` most recently served users, as float32 arrays.
Ranking reads :meth:`BlendLearner.rank_config`: the configured blend, with the learnt weights
once ``min_lists`` engaged lists were learnt, refreshed every ``refresh_every`` lists.

It is a shared part (:class:`processors.sync_message.SharedPart`, name ``blend``): each worker
sends what its own lists changed in the weights since its last message and adds the other
workers' changes, so every worker ranks with one blend learnt from every worker's users; the
weights are kept in snapshots (one key).

>>> learner = BlendLearner({"similarity": 1.0, "popularity": 0.2}, min_lists=1)
>>> learner.shown("u1", [{"post_id": "a", "reasons": {"similarity": 0.9, "popularity": 0.1}},
...                      {"post_id": "b", "reasons": {"similarity": 0.1, "popularity": 0.9}}], now=0.0)
>>> learner.engaged("u1", "b", ts=5.0)
>>> learner.lists, learner.labels["engaged"]
(1, 1)
>>> other = BlendLearner({"similarity": 1.0, "popularity": 0.2}, min_lists=1)
>>> for doc in learner.take_docs():
...     other.apply_doc(doc)
>>> all(math.isclose(other.model.coef[f], learner.model.coef[f]) for f in other.model.coef)
True
"""

from __future__ import annotations

import json
import math
from collections import Counter, OrderedDict
from dataclasses import replace
from typing import Iterable, Mapping, Sequence

import numpy as np

from processors.learned_blend import FEATURES, RANK_WEIGHTS, LearnedBlend
from processors.sync_message import MAX_MESSAGE_BYTES

FORMAT = 1
KEY = "blend"  # its one snapshot key (after the part's prefix)


class BlendLearner:
    name = "blend"
    key_prefix = "\x03"  # never a post id (control characters are refused in ids)

    def __init__(self, prior: Mapping[str, float], *, window_s: float = 3600.0, min_lists: int = 200,
                 max_users: int = 50_000, refresh_every: int = 100, learning_rate: float = 0.05):
        self.model = LearnedBlend(prior, learning_rate=learning_rate, min_examples=min_lists)
        self.window_s, self.max_users, self.refresh_every = window_s, max_users, refresh_every
        #: user → (when the list was made, its post ids, its items' features)
        self._waiting: OrderedDict[str, tuple[float, tuple[str, ...], np.ndarray]] = OrderedDict()
        self._own = {f: 0.0 for f in self.model.coef}  # what this worker's lists changed since its last message
        self._own_lists = 0
        #: lists labelled here, by label: "engaged" (learnt) or "ignored"
        self.labels: Counter = Counter()
        self.changed: set[str] = set()
        self._weights_at = -1  # lists learnt when rank_config last took the weights
        self._config = None

    @property
    def lists(self) -> int:
        """Engaged lists learnt, here and by every worker whose messages were applied."""
        return self.model.examples

    # -- this worker's users ---------------------------------------------------------------------
    def shown(self, user: str, items: Sequence[Mapping], now: float) -> None:
        """``user`` was sent ``items`` (``{"post_id", "reasons"}`` each), made at ``now``; the list
        it replaces, if still waiting, is labelled ignored."""
        if self._waiting.pop(user, None) is not None:
            self.labels["ignored"] += 1
        if items:
            features = self.model.features([it["reasons"] for it in items]).astype(np.float32)
            self._waiting[user] = (now, tuple(it["post_id"] for it in items), features)
            while len(self._waiting) > self.max_users:
                self._waiting.popitem(last=False)

    def engaged(self, user: str, post_id: str, ts: float) -> None:
        """``user`` engaged ``post_id`` (a positive action) at ``ts``."""
        waiting = self._waiting.get(user)
        if waiting is None or ts < waiting[0]:  # nothing waits, or made before the list was
            return
        at, ids, features = waiting
        if ts - at > self.window_s:
            del self._waiting[user]
            self.labels["ignored"] += 1
        elif post_id in ids:
            del self._waiting[user]
            self._learn(features, ids.index(post_id))

    def _learn(self, features: np.ndarray, engaged: int) -> None:
        before = dict(self.model.coef)
        self.model.learn(features, engaged)
        for f, c in self.model.coef.items():
            self._own[f] += c - before[f]
        self._own_lists += 1
        self.labels["engaged"] += 1
        self.changed.add(KEY)

    # -- ranking ---------------------------------------------------------------------------------
    def rank_config(self, config):
        """``config`` (a :class:`processors.ranking.RankConfig`) with the learnt blend weights once
        ready; the same object until ``refresh_every`` more lists were learnt."""
        if not self.model.ready:
            return config
        if self._config is None or self._config[0] is not config or self.lists - self._weights_at >= self.refresh_every:
            weights = self.model.weights()
            self._config = (config, replace(config, **{RANK_WEIGHTS[f]: w for f, w in weights.items()}))
            self._weights_at = self.lists
        return self._config[1]

    # -- other workers' (model sync) -------------------------------------------------------------
    def take_docs(self, max_bytes: int = MAX_MESSAGE_BYTES) -> list[dict]:
        if not self._own_lists:
            return []
        doc = {"coef": dict(self._own), "lists": self._own_lists}
        self._own = {f: 0.0 for f in self._own}
        self._own_lists = 0
        return [doc]

    def apply_doc(self, doc: dict) -> None:
        coef, lists = _read(doc)
        for f, v in coef.items():
            if f in self.model.coef:
                self.model.coef[f] += v
        self.model.examples += lists
        self.changed.add(KEY)

    # -- snapshots -------------------------------------------------------------------------------
    def all_keys(self) -> set[str]:
        return {KEY} if self.lists else set()

    def snapshot(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        return {k: json.dumps({"format": FORMAT, "coef": self.model.coef, "lists": self.lists}).encode()
                for k in keys if k == KEY}

    def restore(self, records: Mapping[str, bytes]) -> int:
        value = records.get(KEY)
        if value is None:
            return 0
        try:
            doc = json.loads(value)
            if doc.get("format") != FORMAT:
                return 0
            coef, lists = _read(doc)
        except ValueError:  # json's errors included
            return 0
        self.model.coef.update({f: v for f, v in coef.items() if f in self.model.coef})
        self.model.examples = lists
        return 1


def _read(doc: dict) -> tuple[dict[str, float], int]:
    """``(coef, lists)`` of a blend document; ``ValueError`` if it is not one."""
    try:
        coef = {str(f): float(v) for f, v in doc["coef"].items()}
        lists = int(doc["lists"])
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise ValueError(f"not a blend document ({type(exc).__name__})") from exc
    if set(coef) - set(FEATURES) or not all(map(math.isfinite, coef.values())) or lists < 0:
        raise ValueError("not a blend document (unknown feature, or a value that is not finite)")
    return coef, lists
