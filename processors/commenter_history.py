"""How long, and how much, each commenter has been around: the "real history" a user needs
before a reply they write counts toward the reply bank.

Sock puppets are made in bulk just before an attack; a user whose first comment Ripple saw a day
ago and who has commented since is expensive to fake at scale.  Users are kept as the reply bank's
keyed hashes, never as ids, least recently seen dropped beyond ``limit``.

>>> h = CommenterHistory()
>>> h.saw("u1", 0.0); h.saw("u1", 10.0)
>>> h.established("u1", now=100.0, min_comments=2, min_age_s=50.0), h.established("u1", now=30.0, min_comments=2, min_age_s=50.0)
(True, False)
>>> h.established("nobody", now=100.0, min_comments=0, min_age_s=0.0)
True
"""

from __future__ import annotations

from collections import OrderedDict


class CommenterHistory:
    def __init__(self, limit: int = 200_000):
        self.limit = limit
        self._seen: OrderedDict[str, list[float]] = OrderedDict()  # user hash → [first seen, comments]

    def __len__(self) -> int:
        return len(self._seen)

    def saw(self, user: str, ts: float, comments: float = 1.0) -> None:
        """``comments`` comments by ``user``, the first of them at ``ts``."""
        state = self._seen.get(user)
        if state is None:
            self._seen[user] = [ts, comments]
            while len(self._seen) > self.limit:
                self._seen.popitem(last=False)
        else:
            state[0] = min(state[0], ts)
            state[1] += comments
            self._seen.move_to_end(user)

    def established(self, user: str, now: float, min_comments: int, min_age_s: float) -> bool:
        """Whether ``user`` had at least ``min_comments`` comments, the first at least
        ``min_age_s`` before ``now`` (both 0: everyone is)."""
        if min_comments <= 0 and min_age_s <= 0:
            return True
        state = self._seen.get(user)
        return state is not None and state[1] >= min_comments and now - state[0] >= min_age_s

    def state(self, user: str) -> tuple[float, float] | None:
        s = self._seen.get(user)
        return None if s is None else (s[0], s[1])

    def users(self) -> list[str]:
        return list(self._seen)

    def restore(self, user: str, first_ts: float, comments: float) -> None:
        """Put back a snapshot's state (the larger count and earlier time win)."""
        state = self._seen.get(user)
        if state is None:
            self.saw(user, first_ts, comments)
        else:
            state[0], state[1] = min(state[0], first_ts), max(state[1], comments)
