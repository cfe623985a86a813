"""Item-side learned state shared by every worker: deltas to exchange, snapshots to keep.

Each worker learns from the engagements of its own users.  What it learns about *items* —
decayed popularity, co-engagement counts and the factor model's item factors — is worth the
same to every worker, so :class:`ItemState` keeps what this worker learnt since the last
:meth:`ItemState.take` as one :class:`ItemDeltas`, and adds the deltas of the other workers
with :meth:`ItemState.apply`.  The rules, per kind of state:

* **popularity** is a sum of engagement weights decayed to a reference time; the delta is this
  worker's part of that sum, decayed to its newest event, so adding it is exact.
* **co-engagement** counts (engagements per post, co-occurrences per pair) add exactly.
* **item factors**: the delta is the change this worker's SGD steps made to an item's vector
  (other workers' deltas excluded), and every worker adds every other worker's delta.  This is
  asynchronous SGD with summed updates (a parameter server's push, Hogwild-style): it equals
  sequential SGD over all workers' events when the workers touched disjoint items in an
  interval, and otherwise approximates it to first order in the learning rate, each step having
  been taken against factors up to one sync interval stale.  Every worker starts an item from
  the same seeded vector (:class:`models.factors.ItemLatents`), so the sums agree.

User-side state (profiles and user factors) stays with the user's partition.

:meth:`ItemState.snapshot` gives an item's whole state as bytes, and :meth:`ItemState.restore`
puts one back: the durable copy a restarted or new worker starts from
(:mod:`streams.model_sync`).

Examples
--------
>>> import numpy as np
>>> from models.factors import ImplicitMF
>>> from processors.events import Engagement, Post
>>> from processors.profiles import UserProfile
>>> def worker():
...     rec = Recommender(dim=2, factors=ImplicitMF(n_factors=4), clock=lambda: 10.0)
...     rec.on_posts([Post("p1", "a", "", 0.0), Post("p2", "b", "", 0.0)], np.eye(2, dtype=np.float32))
...     return rec, ItemState(rec)
>>> (w1, s1), (w2, s2) = worker(), worker()
>>> u = UserProfile("u1")
>>> _ = w1.on_engagement(Engagement("like", "u1", "p1", ts=5.0), u)
>>> _ = w1.on_engagement(Engagement("like", "u1", "p2", ts=6.0), u)
>>> s2.apply(ItemDeltas.from_doc(s1.take().to_doc()))
>>> w2.coengagement.item_state("p2") == w1.coengagement.item_state("p2")
True
>>> round(w2.catalog.popularity_of("p1", 6.0), 6) == round(w1.catalog.popularity_of("p1", 6.0), 6)
True
"""

from __future__ import annotations

import base64
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from processors.decayed_sums import decayed_sums
from processors.recommender import Recommender
from processors.sync_message import MAX_MESSAGE_BYTES

FORMAT = 1  # of a snapshot record


def _vector(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64, validate=True), dtype="<f4").astype(np.float64)


def _strings(values) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise TypeError("expected a list of post ids")
    return values


def _b64(vec: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")


@dataclass
class ItemDeltas:
    """What one worker learnt about items in one interval (see the module docstring)."""

    popularity: dict[str, tuple[float, float]] = field(default_factory=dict)  # post → (decayed sum, as of ts)
    engaged: Counter = field(default_factory=Counter)  # post → engagements (co-engagement counts)
    pairs: dict[str, list[str]] = field(default_factory=dict)  # post → earlier posts paired with it, per co-occurrence
    factors: dict[str, np.ndarray] = field(default_factory=dict)  # post → change of its factors
    events: int = 0  # engagements folded into these deltas

    def __bool__(self) -> bool:
        return bool(self.popularity or self.engaged or self.factors)

    def approx_bytes(self) -> int:
        """About how long :meth:`to_doc`'s JSON is."""
        return (48 * len(self.popularity) + 20 * len(self.engaged) + 8 * sum(map(len, self.pairs.values()))
                + 110 * len(self.factors))

    def split(self, max_bytes: int) -> list["ItemDeltas"]:
        """Pieces of about ``max_bytes`` at most (a post's pairs may be cut over several);
        applying every piece equals applying the whole.

        >>> d = ItemDeltas(engaged=Counter({f"p{i}": 1 for i in range(100)}), events=100)
        >>> pieces = d.split(max_bytes=500)
        >>> len(pieces), sum(len(p.engaged) for p in pieces), sum(p.events for p in pieces)
        (4, 100, 100)
        """
        if self.approx_bytes() <= max_bytes:
            return [self]
        pieces, size = [ItemDeltas(events=self.events)], 0
        room = max(1, max_bytes // 8)  # pair entries that fit one piece

        def piece(cost: int) -> "ItemDeltas":
            nonlocal size
            if size and size + cost > max_bytes:
                pieces.append(ItemDeltas())
                size = 0
            size += cost
            return pieces[-1]

        for post in dict.fromkeys([*self.popularity, *self.engaged, *self.factors, *self.pairs]):
            cost = 48 * (post in self.popularity) + 20 * (post in self.engaged) + 110 * (post in self.factors)
            if cost:
                d = piece(cost)
                if post in self.popularity:
                    d.popularity[post] = self.popularity[post]
                if post in self.engaged:
                    d.engaged[post] = self.engaged[post]
                if post in self.factors:
                    d.factors[post] = self.factors[post]
            others = self.pairs.get(post, [])
            for i in range(0, len(others), room):
                chunk = others[i:i + room]
                piece(8 * len(chunk)).pairs.setdefault(post, []).extend(chunk)
        return pieces

    def to_doc(self) -> dict:
        """JSON-able form (``client/ripple_client/schemas/model_sync.json``, ``items``): factors as base64 little-endian float32."""
        return {"events": self.events,
                "popularity": {p: [v, t] for p, (v, t) in self.popularity.items()},
                "engaged": dict(self.engaged),
                "pairs": self.pairs,
                "factors": {p: _b64(v) for p, v in self.factors.items()}}

    @classmethod
    def from_doc(cls, doc: dict) -> "ItemDeltas":
        """What :meth:`to_doc` gave; ``ValueError`` if ``doc`` is not that."""
        try:
            return cls(popularity={str(p): (float(v), float(t)) for p, (v, t) in doc["popularity"].items()},
                       engaged=Counter({str(p): float(n) for p, n in doc["engaged"].items()}),
                       pairs={str(a): _strings(others) for a, others in doc["pairs"].items()},
                       factors={str(p): _vector(v) for p, v in doc["factors"].items()},
                       events=int(doc["events"]))
        except (TypeError, KeyError, AttributeError, base64.binascii.Error) as exc:
            raise ValueError(f"not item deltas ({type(exc).__name__})") from exc


class ItemState:
    """A shared part (:class:`processors.sync_message.SharedPart`, name ``items``): the item-side state of ``recommender`` (its catalog's popularity, its co-engagement index
    and its factor model's item factors), as deltas to share and snapshots to keep.

    Attaches itself: ``recommender.item_state`` is this object, and the recommender reports each
    engagement it learns from (:meth:`record`).  ``changed`` holds the items whose state changed
    (here or by :meth:`apply`) since the caller last cleared it: the snapshot's to-do list.
    """

    name = "items"
    key_prefix = ""  # snapshot keys are post ids

    def __init__(self, recommender: Recommender):
        self.rec = recommender
        # this interval's engagements, as they were learnt: aggregated by :meth:`take` (appending
        # here is all the per-event work, off the engagement engine's hot path)
        self._posts: list[str] = []
        self._weights: list[float] = []
        self._times: list[float] = []
        self._paired: list[tuple[str, list[str]]] = []
        self.changed: set[str] = set()
        recommender.item_state = self
        if recommender.factors is not None and hasattr(recommender.factors, "track_item_deltas"):
            recommender.factors.track_item_deltas()

    # -- this worker's deltas -----------------------------------------------------------
    def record(self, post_id: str, weight: float, ts: float, paired: Sequence[str]) -> None:
        """One engagement learnt here: ``weight`` added to ``post_id``'s popularity at ``ts``,
        paired (co-engagement) with ``paired``."""
        self._posts.append(post_id)
        self._weights.append(weight)
        self._times.append(ts)
        if paired:
            self._paired.append((post_id, paired))

    def take(self) -> ItemDeltas:
        """What was learnt here since the last call (factor deltas included); resets it."""
        posts, weights, times, paired = self._posts, self._weights, self._times, self._paired
        self._posts, self._weights, self._times, self._paired = [], [], [], []
        deltas = ItemDeltas(events=len(posts))
        if posts:
            # per post, the sum of its weights decayed to its newest event (PostCatalog.engage's sum)
            rate = math.log(2) / self.rec.catalog.popularity_half_life_s
            index, sums, newest = decayed_sums(posts, weights, times, [rate])
            deltas.popularity = {p: (float(sums[i, 0]), float(newest[i])) for p, i in index.items()}
            if self.rec.coengagement is not None:
                deltas.engaged = Counter(posts)
                pairs: dict[str, list[str]] = {}
                for post, others in paired:
                    pairs.setdefault(post, []).extend(others)
                deltas.pairs = pairs
            self.changed.update(index)
        factors = self.rec.factors
        if factors is not None and hasattr(factors, "take_item_deltas"):
            deltas.factors = factors.take_item_deltas()
            self.changed.update(deltas.factors)
        return deltas

    def take_docs(self, max_bytes: int = MAX_MESSAGE_BYTES) -> list[dict]:
        deltas = self.take()
        return [piece.to_doc() for piece in deltas.split(max_bytes)] if deltas else []

    # -- other workers' deltas ----------------------------------------------------------
    def apply_doc(self, doc: dict) -> None:
        self.apply(ItemDeltas.from_doc(doc))

    def apply(self, deltas: ItemDeltas) -> None:
        """Add another worker's deltas to this worker's state."""
        catalog = self.rec.catalog
        for post, (value, ts) in deltas.popularity.items():
            catalog.engage(post, value, ts)
        if self.rec.coengagement is not None and (deltas.engaged or deltas.pairs):
            self.rec.coengagement.add_counts(deltas.engaged, deltas.pairs)
        if deltas.factors and self.rec.factors is not None and hasattr(self.rec.factors, "add_item_deltas"):
            self.rec.factors.add_item_deltas(deltas.factors)
        self.changed.update(deltas.popularity, deltas.engaged, deltas.factors)

    # -- snapshots ----------------------------------------------------------------------
    def all_keys(self) -> set[str]:
        """Every item this worker holds any state of (a full snapshot's keys)."""
        keys = set(self.rec.catalog.post_ids())
        if self.rec.coengagement is not None:
            keys.update(self.rec.coengagement.post_ids())
        if self.rec.factors is not None and hasattr(self.rec.factors, "item_ids"):
            keys.update(self.rec.factors.item_ids())
        return keys

    def snapshot(self, items: Iterable[str]) -> dict[str, bytes | None]:
        """Each item's whole state as bytes (``None``: nothing is known of it any more)."""
        items = list(items)
        factors = self.rec.factors
        vectors = factors.item_factors(items) if factors is not None and hasattr(factors, "item_factors") else {}
        co, catalog = self.rec.coengagement, self.rec.catalog
        out: dict[str, bytes | None] = {}
        for item in items:
            doc: dict = {"format": FORMAT}
            pop = catalog.popularity_state(item)
            if pop is not None and pop[0] > 0:
                doc["popularity"] = list(pop)
            counts = co.item_state(item) if co is not None else None
            if counts is not None:
                doc["engaged"], doc["neighbours"] = counts
            if item in vectors:
                doc["factors"] = _b64(vectors[item])
            out[item] = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() if len(doc) > 1 else None
        return out

    def restore(self, records: Mapping[str, bytes]) -> int:
        """Put back item states of :meth:`snapshot` (oldest engagement first, so bounded state
        keeps the newest); returns how many were readable (others raise nothing, and count out)."""
        docs = []
        for item, data in records.items():
            try:
                doc = json.loads(data)
                if doc.get("format") == FORMAT:
                    docs.append((float(doc.get("popularity", (0.0, 0.0))[1]), item, doc))
            except (ValueError, TypeError, AttributeError, IndexError):
                continue
        docs.sort(key=lambda d: d[0])
        co, catalog, factors = self.rec.coengagement, self.rec.catalog, self.rec.factors
        vectors = {}
        restored = 0
        for _, item, doc in docs:
            try:
                if "popularity" in doc:
                    value, ts = doc["popularity"]
                    catalog.set_popularity(item, float(value), float(ts))
                if co is not None and "engaged" in doc:
                    co.set_item_state(item, float(doc["engaged"]), {str(k): float(v) for k, v in doc["neighbours"].items()})
                if "factors" in doc:
                    vectors[item] = _vector(doc["factors"])
                restored += 1
            except (ValueError, TypeError, AttributeError, KeyError, base64.binascii.Error):
                continue
        if vectors and factors is not None and hasattr(factors, "set_item_factors"):
            n = getattr(factors, "n_factors", None)
            factors.set_item_factors({k: v for k, v in vectors.items() if n is None or len(v) == n})
        return restored
