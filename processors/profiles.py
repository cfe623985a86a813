"""User profiles: what a user engaged with, how much, and with whom.

A profile is small, JSON-serialisable state (it lives in a changelog-backed table):
counts per action, a bounded recent history of ``(post_id, weight, ts)``, a bounded seen set,
decayed author affinities and followees.  The *interest vector* is not stored: it is derived
on demand as the time-decayed, action-weighted mean of the embeddings of the history's posts
(:meth:`UserProfile.interest`), so a late-arriving post embedding is picked up automatically
and the changelog stays a few hundred bytes per user.

Examples
--------
>>> p = UserProfile("u1")
>>> p.apply_engagement("like", "p1", "alice", ts=10.0)
>>> p.apply_engagement("share", "p2", "bob", ts=20.0)
>>> p.events, p.counts, p.has_seen("p1")
(2, {'like': 1, 'share': 1}, True)
>>> UserProfile.from_dict(p.to_dict()) == p
True

Replays after a crash are recognised by source position, also when the consumer delivers a
partition's events out of order around a rebalance (a prefetched later offset first, then the
earlier ones after the seek back to the committed offset; faust-streaming issue #221):

>>> p.mark("likes:0", 41); p.applied("likes:0", 41), p.applied("likes:0", 42)
(True, False)
>>> p.mark("likes:0", 45); p.applied("likes:0", 43), p.applied("likes:0", 45)
(False, True)

and producer retries (a new offset, the same ``event_id``) by the user's recent event ids:

>>> p.admit("likes:0", 42, "e1"), p.admit("likes:0", 43, "e1"), p.admit("likes:0", 43, "e2")
(None, 'duplicate', 'replay')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

#: how much each action says about interest (a share says more than a like)
ACTION_WEIGHTS = {"like": 1.0, "comment": 2.0, "share": 3.0}
HALF_LIFE_S = 7 * 24 * 3600.0
#: applied offsets remembered per source (the largest ones): an earlier offset delivered after a
#: later one is recognised as new, not as a replay, as long as it is within this window
RECENT_POSITIONS = 16


@dataclass
class UserProfile:
    user_id: str
    events: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    history: list[tuple[str, float, float]] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    authors: dict[str, float] = field(default_factory=dict)
    follows: list[str] = field(default_factory=list)
    last_ts: float = 0.0
    #: moving average of the user's comment sentiment (VADER compound, [-1, 1]) and comments scored
    sentiment: float = 0.0
    sentiment_n: int = 0
    #: highest applied position per input source (e.g. "likes:3" → offset); makes replays idempotent
    positions: dict[str, int] = field(default_factory=dict)
    #: the ``RECENT_POSITIONS`` largest applied offsets per source, ascending (see :meth:`applied`)
    recent: dict[str, list[int]] = field(default_factory=dict)
    #: the user's most recent producer ``event_id``s (bounded), so a producer retry is applied once
    event_ids: list[str] = field(default_factory=list)
    #: ``events`` as of the last recommendation published for this profile; a profile with
    #: ``events > published_events`` owes its user a message (e.g. after a crash inside a throttle
    #: interval) and is offered again when the worker recovers the table
    published_events: int = 0
    #: the user's factors in the shared factor model, saved with the profile (``None``: none learnt)
    factors: list[float] | None = None

    # -- idempotency --------------------------------------------------------------------
    def applied(self, source: str, position: int) -> bool:
        """True if the event at ``position`` of ``source`` was already folded in (a replay).

        Every applied offset among the source's ``RECENT_POSITIONS`` largest is remembered, so an
        offset below the highest one that is not among them was skipped over, not applied; only
        offsets older than the whole window are assumed applied.  Profiles written before the
        window existed fall back to the high-water mark.
        """
        top = self.positions.get(source, -1)
        if position > top:
            return False
        recent = self.recent.get(source)
        if recent is None:
            return True
        return position in recent or (len(recent) >= RECENT_POSITIONS and position < recent[0])

    def mark(self, source: str, position: int) -> None:
        self.positions[source] = max(position, self.positions.get(source, -1))
        recent = self.recent.setdefault(source, [])
        if position not in recent:
            recent.append(position)
            recent.sort()
            del recent[:-RECENT_POSITIONS]

    def admit(self, source: str, position: int, event_id: str | None = None, *, dedup_limit: int = 100) -> str | None:
        """Claim the event at ``position`` of ``source``: ``None`` = apply it, else why to skip it.

        ``"replay"``: that position was already folded in (redelivery after a restart).
        ``"duplicate"``: its ``event_id`` is one of the user's last ``dedup_limit`` event ids of
        the same topic (a producer retry written at a new offset).  Events without ``event_id``
        are never duplicates; the same id on another topic (a like and a share) is another event.

        >>> p = UserProfile("u1")
        >>> p.admit("likes:0", 1, "e1"), p.admit("likes:0", 2, "e1"), p.admit("shares:0", 1, "e1")
        (None, 'duplicate', None)
        """
        if self.applied(source, position):
            return "replay"
        self.mark(source, position)
        if event_id is None or dedup_limit <= 0:
            return None
        event_id = f"{source.rsplit(':', 1)[0]}/{event_id}"  # ids are unique per topic, not across topics
        if event_id in self.event_ids:
            return "duplicate"
        self.event_ids.append(event_id)
        del self.event_ids[:-dedup_limit]
        return None

    def unpublished(self) -> bool:
        """True if the newest state was never published (see ``published_events``).

        >>> p = UserProfile("u1", events=3, published_events=2); p.unpublished()
        True
        """
        return self.events > self.published_events

    def partitions(self) -> set[int]:
        """Input partitions this profile's events came from (all one, when producers key by user).

        >>> UserProfile("u1", positions={"likes:2": 5, "shares:2": 1}).partitions()
        {2}
        """
        return {int(src.rsplit(":", 1)[1]) for src in self.positions}

    # -- updates ------------------------------------------------------------------------
    def apply_engagement(
        self,
        kind: str,
        post_id: str,
        author_id: str | None,
        ts: float,
        *,
        weight: float | None = None,
        history_limit: int = 200,
        seen_limit: int = 500,
        author_limit: int = 100,
    ) -> None:
        """Fold one engagement in. ``weight`` overrides the action weight (0 = count only)."""
        w = ACTION_WEIGHTS.get(kind, 1.0) if weight is None else weight
        self.events += 1
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.last_ts = max(self.last_ts, ts)
        if post_id not in self.seen:
            self.seen.append(post_id)
            del self.seen[:-seen_limit]
        if w > 0:
            self.history.append((post_id, w, ts))
            del self.history[:-history_limit]
            if author_id is not None:
                self.authors[author_id] = self.authors.get(author_id, 0.0) + w
                if len(self.authors) > author_limit:
                    weakest = min(self.authors, key=self.authors.__getitem__)
                    del self.authors[weakest]

    def apply_follow(self, followee_id: str, ts: float, *, limit: int = 1000) -> None:
        self.events += 1
        self.counts["follow"] = self.counts.get("follow", 0) + 1
        self.last_ts = max(self.last_ts, ts)
        if followee_id not in self.follows:
            self.follows.append(followee_id)
            del self.follows[:-limit]

    def apply_sentiment(self, score: float, alpha: float = 0.2) -> None:
        """Fold one comment's sentiment into the moving average (plain mean for the first few)."""
        self.sentiment_n += 1
        a = max(alpha, 1.0 / self.sentiment_n)
        self.sentiment += a * (score - self.sentiment)

    # -- derived ------------------------------------------------------------------------
    def has_seen(self, post_id: str) -> bool:
        return post_id in self.seen

    def interest(
        self, lookup: Callable[[Iterable[str]], tuple[np.ndarray, np.ndarray]], now: float, half_life_s: float = HALF_LIFE_S
    ) -> tuple[np.ndarray | None, int]:
        """Decayed, action-weighted mean embedding of the history (unit length).

        ``lookup(post_ids)`` returns ``(found_mask, embeddings_of_found)``.  Returns the vector
        (``None`` when nothing is known yet) and how many history posts are not embedded yet.
        """
        if not self.history:
            return None, 0
        ids = [h[0] for h in self.history]
        found, emb = lookup(ids)
        missing = int(len(ids) - found.sum())
        if not found.any():
            return None, missing
        w = np.array([h[1] for h in self.history], dtype=np.float32)[found]
        ts = np.array([h[2] for h in self.history], dtype=np.float64)[found]
        # decay relative to the newest engagement: the same direction as decaying to ``now``,
        # without underflow for a user who comes back after a long absence
        age = np.maximum(0.0, min(now, ts.max()) - ts)
        w = w * np.exp(-age * (math.log(2) / half_life_s)).astype(np.float32)
        v = w @ emb
        norm = float(np.linalg.norm(v))
        return (v / norm if norm > 0 else None), missing

    def affinity(self, author_id: str) -> float:
        """Author affinity in [0, 1] (followed authors count as 1)."""
        if author_id in self.follows:
            return 1.0
        a = self.authors.get(author_id, 0.0)
        return a / (a + 3.0)

    # -- wire ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "user_id": self.user_id,
            "events": self.events,
            "counts": self.counts,
            "history": [list(h) for h in self.history],
            "seen": self.seen,
            "authors": self.authors,
            "follows": self.follows,
            "last_ts": self.last_ts,
            "positions": self.positions,
            "recent": self.recent,
            "sentiment": self.sentiment,
            "sentiment_n": self.sentiment_n,
            "event_ids": self.event_ids,
            "published_events": self.published_events,
            **({"factors": self.factors} if self.factors is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "UserProfile":
        return cls(
            user_id=d["user_id"],
            events=int(d.get("events", 0)),
            counts=dict(d.get("counts", {})),
            history=[(str(p), float(w), float(t)) for p, w, t in d.get("history", [])],
            seen=list(d.get("seen", [])),
            authors={k: float(v) for k, v in d.get("authors", {}).items()},
            follows=list(d.get("follows", [])),
            last_ts=float(d.get("last_ts", 0.0)),
            positions={k: int(v) for k, v in d.get("positions", {}).items()},
            recent={k: [int(o) for o in v] for k, v in d.get("recent", {}).items()},
            sentiment=float(d.get("sentiment", 0.0)),
            sentiment_n=int(d.get("sentiment_n", 0)),
            event_ids=list(d.get("event_ids", [])),
            published_events=int(d.get("published_events", 0)),
            factors=[float(x) for x in d["factors"]] if d.get("factors") is not None else None,
        )
