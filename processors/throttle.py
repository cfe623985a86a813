"""Per-user rate limit with a trailing send: bursts collapse to one message, the last state wins.

``offer`` says whether to recommend now.  A user refused now is remembered as *pending* and
returned by ``due`` once their interval has passed, so the final state after a burst is always
published.  Pending users keep their place: the one owed longest comes first, and ``due`` hands
out at most ``limit`` at a time, so a backlog of owed users costs a batch no more than what it
can serve.  Pending users are bounded (the oldest dropped first, counted in ``dropped``).
``owed`` counts users who entered the owed state (put off, deferred), once per episode.

Examples
--------
>>> t = Throttle(min_interval_s=1.0)
>>> t.offer("u1", now=0.0), t.offer("u1", now=0.5), t.due(now=0.9), t.due(now=1.0)
(True, False, [], ['u1'])
>>> t.due(now=5.0)
[]
"""

from __future__ import annotations

from collections import OrderedDict


class Throttle:
    def __init__(self, min_interval_s: float, max_tracked: int = 100_000, max_retries: int = 3):
        self.min_interval_s = min_interval_s
        self.max_tracked = max_tracked
        self.max_retries = max_retries
        self._last: OrderedDict[str, float] = OrderedDict()
        self._retries: dict[str, int] = {}
        self._pending: OrderedDict[str, None] = OrderedDict()  # owed, oldest first
        self._owed: set[str] = set()  # owed a message not yet sent (pending, or handed out by ``due``)
        self.owed = 0  # users who became owed (each episode once)
        self.dropped = 0  # owed users forgotten by the bound

    def offer(self, user: str, now: float) -> bool:
        """New information for ``user``: True = recommend now, False = deferred to ``due``."""
        self._retries[user] = self.max_retries
        last = self._last.get(user)
        if last is not None and now - last < self.min_interval_s:
            self._defer(user)
            return False
        self._sent(user, now)
        return True

    def defer(self, user: str) -> None:
        """Owe ``user`` a message: sent by ``due`` once their interval has passed (e.g. after recovery)."""
        self._retries.setdefault(user, self.max_retries)
        self._defer(user)

    def retry(self, user: str) -> None:
        """The last send was incomplete (e.g. posts not embedded yet): send again later, bounded."""
        left = self._retries.get(user, 0)
        if left > 0:
            self._retries[user] = left - 1
            self._defer(user)

    def forget(self, user: str) -> bool:
        """``user`` is gone (their profile was evicted): nothing is owed any more.  True if a
        message was owed (a user dropped unserved)."""
        self._pending.pop(user, None)
        if user in self._owed:
            self._owed.discard(user)
            return True
        return False

    def settle(self, user: str, now: float) -> None:
        """A message with ``user``'s newest state was just sent: nothing is owed any more.

        >>> t = Throttle(min_interval_s=1.0)
        >>> t.offer("u1", now=0.0), t.offer("u1", now=0.2)  # the second event is owed ...
        (True, False)
        >>> t.settle("u1", now=0.3); t.due(now=2.0)  # ... unless a message with it went out
        []
        """
        self._pending.pop(user, None)
        self._owed.discard(user)
        self._sent(user, now)

    def requeue(self, users: list[str], now: float) -> None:
        """``users`` were allowed a message (``offer`` or ``due``) but not sent one (no time left
        in this batch): they are owed one, due at once and ahead of every other pending user, in
        the given order.

        >>> t = Throttle(min_interval_s=1.0)
        >>> t.offer("a", now=0.0), t.offer("b", now=0.0), t.offer("c", now=0.0)
        (True, True, True)
        >>> t.offer("a", now=0.5); t.requeue(["b", "c"], now=0.5); t.due(now=0.6)
        False
        ['b', 'c']
        """
        for user in reversed(users):
            self._retries.setdefault(user, self.max_retries)
            self._last[user] = now - self.min_interval_s
            self._pending[user] = None
            self._pending.move_to_end(user, last=False)
            self._mark_owed(user)
        self._bound()

    def due(self, now: float, limit: int | None = None) -> list[str]:
        """Pending users whose interval has passed, the one owed longest first, at most ``limit``;
        they are marked as sent (the caller settles or requeues them).

        >>> t = Throttle(min_interval_s=0.0)
        >>> for u in ("a", "b", "c"):
        ...     t.defer(u)
        >>> t.defer("a"); t.due(now=1.0, limit=2), t.due(now=1.0)  # "a" keeps its place
        (['a', 'b'], ['c'])
        """
        ready = []
        for u in self._pending:
            if now - self._last.get(u, float("-inf")) >= self.min_interval_s:
                ready.append(u)
                if limit is not None and len(ready) >= limit:
                    break
        for u in ready:
            del self._pending[u]
            self._sent(u, now)
        return ready

    def __len__(self) -> int:
        return len(self._pending)

    def _defer(self, user: str) -> None:
        if user not in self._pending:  # an owed user keeps their place in the queue
            self._pending[user] = None
        self._mark_owed(user)
        self._bound()

    def _mark_owed(self, user: str) -> None:
        if user not in self._owed:
            self._owed.add(user)
            self.owed += 1

    def _bound(self) -> None:
        while len(self._pending) > self.max_tracked:
            old, _ = self._pending.popitem(last=False)
            self._owed.discard(old)
            self.dropped += 1

    def _sent(self, user: str, now: float) -> None:
        self._last[user] = now
        self._last.move_to_end(user)
        while len(self._last) > self.max_tracked:
            old, _ = self._last.popitem(last=False)
            self._retries.pop(old, None)
