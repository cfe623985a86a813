"""Records a Faust agent never received, re-read from the broker: what :func:`reread` does for
both guards, and the tail of a partition after a rebalance (:class:`StallWatch`).

faust-streaming 0.15 can lose a record while it resumes streams after an assignment (fetched,
then dropped with the queues it clears, or passed by its seek).  :func:`streams.agents._with_skipped`
notices such a gap when the partition's *next* record arrives; when the lost record was the last
one, nothing arrives and nothing notices.  A :class:`StallWatch` does: every few seconds, while its
agent has been idle (waiting for input with an empty buffer) for ``idle_after_s`` and no
rebalance is under way, any partition of its topic whose high watermark (as the consumer last
fetched it) lies past what the agent has seen is re-read from the broker and handled as if it had
been delivered.  Handling a record twice is harmless for the agents (a post re-embedded, a
comment answered again), losing one is not.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Awaitable, Callable

from streams import metrics
from streams.client import read_offsets
from streams.security import kafka_client_kwargs

log = logging.getLogger("ripple.worker")


@dataclass
class Refetched:
    """A record re-read from the broker, shaped like the parts of a Faust event the agents read."""

    message: SimpleNamespace
    value: bytes


async def reread(rt, topic: str, partition: int, start: int, end: int) -> list[Refetched]:
    """The records of ``topic[partition]`` at offsets ``start`` ≤ offset < ``end``, straight from the
    broker (``read_committed`` under exactly_once), counted as ``refetched``; a broker error is
    raised for the caller to report."""
    s = rt.settings
    isolation = "read_committed" if s.processing_guarantee == "exactly_once" else "read_uncommitted"
    records = await read_offsets(s.broker, topic, partition, start, end, isolation_level=isolation,
                                 **kafka_client_kwargs(s))
    metrics.record_skipped("refetched", len(records))
    return [Refetched(SimpleNamespace(topic=r.topic, partition=r.partition, offset=r.offset,
                                      timestamp=r.timestamp / 1000.0), r.value) for r in records]


def offset_sought(rt, tp) -> int | None:
    """The committed offset Faust sought ``tp`` to when it was assigned (``None``: unknown).  Read
    from faust-streaming's consumer (``Consumer._committed_offset``, filled by ``perform_seek``),
    never over the network: an await inside Faust's rebalance handlers stalled the streams in a
    test, and on the first record of a partition the value is still the seek's."""
    try:
        offset = rt.app.consumer._committed_offset.get(tp)
    except Exception:  # another Faust version, or no consumer: no seed
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None


class StallWatch:
    def __init__(self, rt, agent: str, topic: str, handle: Callable[[list], Awaitable[None]],
                 idle_after_s: float = 5.0):
        self.rt, self.agent, self.topic, self.handle = rt, agent, topic, handle
        self.idle_after_s = idle_after_s
        self.idle_since: float | None = None

    def busy(self) -> None:
        self.idle_since = None

    def idle(self) -> None:
        if self.idle_since is None:
            self.idle_since = time.monotonic()

    def behind(self) -> list[tuple[int, int, int]]:
        """``(partition, first offset not seen, high watermark)`` of this topic's assigned
        partitions the agent is behind on (nothing while it is busy, recently busy, or the app
        rebalances)."""
        app = self.rt.app
        if self.idle_since is None or time.monotonic() - self.idle_since < self.idle_after_s:
            return []
        if getattr(app, "rebalancing", False) or getattr(app, "in_recovery", False):
            return []
        consumer = app.consumer
        out = []
        for tp in consumer.assignment():
            if tp.topic != self.topic:
                continue
            high = consumer.highwater(tp)
            seen = self.rt.expected_offsets.get((self.agent, tp.topic, tp.partition))
            if seen is None:
                seen = offset_sought(self.rt, tp) or 0
            if isinstance(high, int) and high > seen:
                out.append((tp.partition, seen, high))
        return out

    async def sweep(self) -> int:
        """Re-read and handle what the agent is behind on; how many records."""
        handled = 0
        for partition, start, end in self.behind():
            log.warning("%s has not received %s[%d]@%d..%d; re-reading them from the broker", self.agent,
                        self.topic, partition, start, end - 1)
            try:
                records = await reread(self.rt, self.topic, partition, start, end)
            except Exception as exc:  # the broker is away: the next sweep tries again
                log.error("could not re-read %s[%d]@%d..%d (%s)", self.topic, partition, start, end - 1,
                          type(exc).__name__)
                continue
            self.rt.expected_offsets[(self.agent, self.topic, partition)] = end
            if records:
                await self.handle(records)
                handled += len(records)
        return handled
