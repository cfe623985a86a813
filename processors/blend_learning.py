"""The ranking blend learnt from what users did with the lists they were shown, shared by every
worker.

Every list the recommender publishes is taken as *shown* to its user, with each item's features
(its ``reasons``).  A list becomes one training example of :class:`LearnedBlend` once:

- the user engages (a positive action) one of its items within ``window_s``: that item is
  labelled 1, the others 0, and the list is done;
- the user's next list replaces it, or the user engages after ``window_s``: every item is
  labelled 0 (the user engaged something else, or nothing in time).

A list whose user does nothing more is never learnt; the lists waiting for a label are kept for
the ``max_users`` most recently served users.  Ranking reads :meth:`BlendLearner.rank_config`:
the configured blend, with the learnt coefficients (clipped at 0) once ``min_lists`` lists
were learnt, refreshed every ``refresh_every`` lists.

It is a shared part (:class:`processors.sync_message.SharedPart`, name ``blend``): each worker
sends what its own lists changed in the coefficients since its last message and adds the other
workers' changes, so every worker ranks with one blend learnt from every worker's users; the
coefficients are kept in snapshots (one key).

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

from processors.learned_blend import FEATURES, RANK_WEIGHTS, LearnedBlend
from processors.sync_message import MAX_MESSAGE_BYTES

FORMAT = 1
KEY = "blend"  # its one snapshot key (after the part's prefix)


class BlendLearner:
    name = "blend"
    key_prefix = "\x03"  # never a post id (control characters are refused in ids)

    def __init__(self, prior: Mapping[str, float], *, window_s: float = 3600.0, min_lists: int = 200,
                 max_users: int = 100_000, refresh_every: int = 100, learning_rate: float = 0.05):
        self.model = LearnedBlend(prior, learning_rate=learning_rate, min_examples=min_lists)
        self.window_s, self.max_users, self.refresh_every = window_s, max_users, refresh_every
        self._waiting: OrderedDict[str, tuple[float, list[str], list[dict]]] = OrderedDict()
        self._own = {f: 0.0 for f in self.model.coef}  # what this worker's lists changed since its last message
        self._own_bias = 0.0
        self._own_lists = 0
        #: lists learnt, by label: "engaged" (an item was engaged in time) or "ignored"
        self.labels: Counter = Counter()
        self.changed: set[str] = set()
        self._weights_at = -1  # lists learnt when rank_config last took the weights
        self._config = None

    @property
    def lists(self) -> int:
        """Lists learnt, here and by every worker whose messages were applied."""
        return self.model.examples

    # -- this worker's users ---------------------------------------------------------------------
    def shown(self, user: str, items: Sequence[Mapping], now: float) -> None:
        """``user`` was sent ``items`` (``{"post_id", "reasons"}`` each) at ``now``; the list it
        replaces, if still waiting, is learnt as ignored."""
        old = self._waiting.pop(user, None)
        if old is not None:
            self._learn(old[2], None)
        if items:
            self._waiting[user] = (now, [it["post_id"] for it in items], [it["reasons"] for it in items])
            while len(self._waiting) > self.max_users:
                self._waiting.popitem(last=False)

    def engaged(self, user: str, post_id: str, ts: float) -> None:
        """``user`` engaged ``post_id`` (a positive action) at ``ts``."""
        waiting = self._waiting.get(user)
        if waiting is None:
            return
        at, ids, reasons = waiting
        if ts - at > self.window_s:
            del self._waiting[user]
            self._learn(reasons, None)
        elif post_id in ids:
            del self._waiting[user]
            self._learn(reasons, ids.index(post_id))

    def forget(self, users: Iterable[str]) -> None:
        """Drop the users' waiting lists (their newest list was sent from elsewhere)."""
        for user in users:
            self._waiting.pop(user, None)

    def _learn(self, reasons: list[dict], engaged: int | None) -> None:
        before, bias = dict(self.model.coef), self.model.bias
        self.model.learn(reasons, engaged)
        for f, c in self.model.coef.items():
            self._own[f] += c - before[f]
        self._own_bias += self.model.bias - bias
        self._own_lists += 1
        self.labels["ignored" if engaged is None else "engaged"] += 1
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
        doc = {"coef": dict(self._own), "bias": self._own_bias, "lists": self._own_lists}
        self._own = {f: 0.0 for f in self._own}
        self._own_bias, self._own_lists = 0.0, 0
        return [doc]

    def apply_doc(self, doc: dict) -> None:
        try:
            coef = {str(f): float(v) for f, v in doc["coef"].items()}
            bias, lists = float(doc["bias"]), int(doc["lists"])
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise ValueError(f"not blend deltas ({type(exc).__name__})") from exc
        if set(coef) - set(FEATURES) or not all(map(math.isfinite, [*coef.values(), bias])) or lists < 0:
            raise ValueError("not blend deltas (unknown feature or value)")
        for f, v in coef.items():
            if f in self.model.coef:
                self.model.coef[f] += v
        self.model.bias += bias
        self.model.examples += lists
        self.changed.add(KEY)

    # -- snapshots -------------------------------------------------------------------------------
    def all_keys(self) -> set[str]:
        return {KEY} if self.lists else set()

    def snapshot(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        return {k: json.dumps({"format": FORMAT, "coef": self.model.coef, "bias": self.model.bias,
                               "lists": self.lists}).encode() for k in keys if k == KEY}

    def restore(self, records: Mapping[str, bytes]) -> int:
        value = records.get(KEY)
        if value is None:
            return 0
        try:
            doc = json.loads(value)
            if doc.get("format") != FORMAT:
                return 0
            coef = {str(f): float(v) for f, v in doc["coef"].items() if f in self.model.coef}
            bias, lists = float(doc["bias"]), int(doc["lists"])
        except (ValueError, TypeError, KeyError, AttributeError):
            return 0
        self.model.coef.update(coef)
        self.model.bias, self.model.examples = bias, lists
        return 1
