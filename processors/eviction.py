"""Which keyed state to forget: a least-recently-used index with an idle TTL, per partition.

Per-user state (profiles) lives in a changelog-backed table whose changelog partition is the
partition of the event being processed.  A key may therefore only be deleted while an event of
*its own* partition is handled, so the index keeps one LRU per partition and
:meth:`RecencyIndex.touch` only ever returns keys of the partition it was called for.
Memory is bounded by ``partitions × capacity`` keys; a key idle for more than ``ttl_s`` is
returned the next time its partition sees an event.

Examples
--------
>>> idx = RecencyIndex(capacity=2, ttl_s=100.0)
>>> idx.touch(0, "a", now=0.0), idx.touch(0, "b", now=1.0), idx.touch(1, "x", now=1.0)
([], [], [])
>>> idx.touch(0, "a", now=2.0)  # "a" is recent again
[]
>>> idx.touch(0, "c", now=3.0)  # over capacity: the least recently used of partition 0 goes
['b']
>>> idx.touch(1, "y", now=150.0)  # "x" was idle for more than ttl_s
['x']
>>> len(idx), idx.keys(0)
(3, ['a', 'c'])
"""

from __future__ import annotations

from collections import OrderedDict


class RecencyIndex:
    """Per-partition LRU of keys with an optional idle TTL (``ttl_s <= 0``: no TTL).

    Parameters
    ----------
    capacity
        Keys kept per partition; touching one more evicts the least recently touched.
    ttl_s
        Keys not touched for longer than this are evicted (lazily, on the next touch of
        their partition).
    """

    def __init__(self, capacity: int, ttl_s: float = 0.0):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._parts: dict[int, OrderedDict[str, float]] = {}

    def touch(self, partition: int, key: str, now: float) -> list[str]:
        """Mark ``key`` as used at ``now``; the keys of ``partition`` to forget (never ``key``)."""
        keys = self._parts.setdefault(partition, OrderedDict())
        keys[key] = now
        keys.move_to_end(key)
        evicted = []
        while len(keys) > self.capacity:
            old, _ = keys.popitem(last=False)
            evicted.append(old)
        if self.ttl_s > 0:
            while True:
                old, last = next(iter(keys.items()))
                if old == key or now - last <= self.ttl_s:
                    break
                del keys[old]
                evicted.append(old)
        return evicted

    def discard(self, partition: int, key: str) -> None:
        """Stop tracking ``key`` (it was deleted by other means)."""
        self._parts.get(partition, {}).pop(key, None)

    def keys(self, partition: int) -> list[str]:
        """Tracked keys of ``partition``, least recently used first."""
        return list(self._parts.get(partition, ()))

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._parts.values())
