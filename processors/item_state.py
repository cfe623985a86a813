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
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from processors.recommender import Recommender
from processors.sync_message import MAX_MESSAGE_BYTES

FORMAT = 1  # of a snapshot record


def _vector(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64, validate=True), dtype="<f4").astype(np.float64)


def _b64(vec: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")


@dataclass
class ItemDeltas:
    """What one worker learnt about items in one interval (see the module docstring)."""

    popularity: dict[str, tuple[float, float]] = field(default_factory=dict)  # post → (decayed sum, as of ts)
    engaged: Counter = field(default_factory=Counter)  # post → engagements (co-engagement counts)
    pairs: Counter = field(default_factory=Counter)  # (post, earlier post) → co-occurrences
    factors: dict[str, np.ndarray] = field(default_factory=dict)  # post → change of its factors
    events: int = 0  # engagements folded into these deltas

    def __bool__(self) -> bool:
        return bool(self.popularity or self.engaged or self.factors)

    def approx_bytes(self) -> int:
        """About how long :meth:`to_doc`'s JSON is."""
        return 48 * len(self.popularity) + 20 * len(self.engaged) + 28 * len(self.pairs) + 110 * len(self.factors)

    def split(self, max_bytes: int) -> list["ItemDeltas"]:
        """Pieces of about ``max_bytes`` at most, split by post (a pair goes with its first post);
        applying every piece equals applying the whole.

        >>> d = ItemDeltas(engaged=Counter({f"p{i}": 1 for i in range(100)}), events=100)
        >>> pieces = d.split(max_bytes=500)
        >>> len(pieces), sum(len(p.engaged) for p in pieces), sum(p.events for p in pieces)
        (4, 100, 100)
        """
        n = -(-self.approx_bytes() // max(max_bytes, 1))
        if n <= 1:
            return [self]
        pieces = [ItemDeltas() for _ in range(n)]
        at = lambda post: pieces[zlib.crc32(post.encode()) % n]  # noqa: E731
        for post, pop in self.popularity.items():
            at(post).popularity[post] = pop
        for post, c in self.engaged.items():
            at(post).engaged[post] = c
        for pair, c in self.pairs.items():
            at(pair[0]).pairs[pair] = c
        for post, vec in self.factors.items():
            at(post).factors[post] = vec
        pieces[0].events = self.events
        return [p for p in pieces if p or p.pairs or p.events]

    def to_doc(self) -> dict:
        """JSON-able form (``processors/schemas/model_sync.json``, ``items``): factors as base64 little-endian float32."""
        return {"events": self.events,
                "popularity": {p: [v, t] for p, (v, t) in self.popularity.items()},
                "engaged": dict(self.engaged),
                "pairs": [[a, b, c] for (a, b), c in self.pairs.items()],
                "factors": {p: _b64(v) for p, v in self.factors.items()}}

    @classmethod
    def from_doc(cls, doc: dict) -> "ItemDeltas":
        """What :meth:`to_doc` gave; ``ValueError`` if ``doc`` is not that."""
        try:
            return cls(popularity={str(p): (float(v), float(t)) for p, (v, t) in doc["popularity"].items()},
                       engaged=Counter({str(p): float(n) for p, n in doc["engaged"].items()}),
                       pairs=Counter({(str(a), str(b)): float(c) for a, b, c in doc["pairs"]}),
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
        self.pending = ItemDeltas()
        self.changed: set[str] = set()
        recommender.item_state = self
        if recommender.factors is not None and hasattr(recommender.factors, "track_item_deltas"):
            recommender.factors.track_item_deltas()

    # -- this worker's deltas -----------------------------------------------------------
    def record(self, post_id: str, weight: float, ts: float, paired: Iterable[str]) -> None:
        """One engagement learnt here: ``weight`` added to ``post_id``'s popularity at ``ts``,
        paired (co-engagement) with ``paired``."""
        d = self.pending
        rate = math.log(2) / self.rec.catalog.popularity_half_life_s
        value, ref = d.popularity.get(post_id, (0.0, ts))
        if ts >= ref:  # the same decayed sum as PostCatalog.engage keeps
            value = value * math.exp(-(ts - ref) * rate) + weight
            ref = ts
        else:
            value += weight * math.exp(-(ref - ts) * rate)
        d.popularity[post_id] = (value, ref)
        if self.rec.coengagement is not None:
            d.engaged[post_id] += 1
            for other in paired:
                d.pairs[(post_id, other)] += 1
        d.events += 1
        self.changed.add(post_id)

    def take(self) -> ItemDeltas:
        """What was learnt here since the last call (factor deltas included); resets it."""
        deltas, self.pending = self.pending, ItemDeltas()
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
