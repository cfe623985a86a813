"""What fills some metrics from outside the processing path: the event → recommendation clock,
consumer lag sampling and garbage-collector pauses.

The metrics themselves, and the ``/metrics`` endpoint, are in :mod:`streams.metrics`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable

from streams import metrics
from streams.metrics import GC_PAUSE_SECONDS

log = logging.getLogger("ripple.metrics")


# --- event → recommendation latency --------------------------------------------------------
class RecommendationClock:
    """Per user, the Kafka timestamp of the oldest event not yet reflected in a publish.

    ``saw(user, msg.timestamp)`` when an engagement is folded in; ``published(user, agent)`` after
    sending that user's recommendations observes ``now - oldest`` (deferred publishes included).
    User ids stay in this dict, never in a label; at most ``limit`` users are tracked (oldest dropped).

    >>> clock = RecommendationClock()
    >>> clock.saw("u1", 10.0); clock.saw("u1", 11.0)
    >>> clock.published("u1", "engage", now=12.5), clock.published("u1", "engage", now=13.0)
    (2.5, None)
    """

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._oldest: dict[str, float] = {}

    def saw(self, user: str, ts: float) -> None:
        if user not in self._oldest:
            if len(self._oldest) >= self.limit:
                del self._oldest[next(iter(self._oldest))]
            self._oldest[user] = ts

    def published(self, user: str, agent: str, *, now: float | None = None) -> float | None:
        ts = self.take(user)
        return None if ts is None else metrics.observe_event_to_recommendation(ts, agent, now=now)

    def take(self, user: str) -> float | None:
        """``user``'s oldest unpublished event time, forgotten here: a message with it is on its
        way (observe it with :func:`observe_event_to_recommendation` once sent).

        >>> clock = RecommendationClock()
        >>> clock.saw("u1", 10.0); clock.take("u1"), clock.take("u1")
        (10.0, None)
        """
        return self._oldest.pop(user, None)


# --- consumer lag -----------------------------------------------------------------------------
def source_topics(app) -> set[str]:
    """Topic names the app's agents consume (their consumer-group partitions carry the lag)."""
    names: set[str] = set()
    for agent in app.agents.values():
        names.update(getattr(agent.channel, "topics", ()) or ())
    return names


async def consumer_lag(app, topics: Iterable[str] | None = None, *, timeout_s: float = 5.0) -> dict[tuple[str, int], int]:
    """Lag per assigned partition of ``topics`` (default: the agents' source topics).

    lag = end offset (``consumer.highwaters``: a ListOffsets request, so it stays right while the
    consumer is paused) − the offset Faust last committed (``consumer._committed_offset``, Kafka
    semantics: the next offset to read).  A partition the group never committed counts from its
    earliest offset.  Changelog and other internal partitions are left out unless named.
    """
    consumer = app.consumer
    wanted = set(topics) if topics is not None else source_topics(app)
    tps = sorted(tp for tp in consumer.assignment() if tp.topic in wanted)
    if not tps:
        return {}
    ends = await asyncio.wait_for(consumer.highwaters(*tps), timeout_s)
    committed = consumer._committed_offset  # faust-streaming keeps it per TP; .get() never inserts
    unknown = [tp for tp in tps if committed.get(tp) is None]
    earliest = await asyncio.wait_for(consumer.earliest_offsets(*unknown), timeout_s) if unknown else {}
    lags = {}
    for tp in tps:
        end = ends.get(tp)
        if end is None:
            continue
        done = committed.get(tp)
        if done is None:
            done = earliest.get(tp, 0)
        lags[(tp.topic, tp.partition)] = max(0, int(end) - int(done))
    return lags


async def sample_lag(app, topics: Iterable[str] | None = None, *, timeout_s: float = 5.0,
                     rename: Callable[[str], str] = lambda topic: topic,
                     extra: Callable[[], dict[tuple[str, int], int]] | None = None) -> dict[tuple[str, int], int]:
    """Refresh ``ripple_consumer_lag`` from ``app``'s consumer; never raises (call from an ``app.timer``).

    ``rename`` maps Kafka topic names to label values (e.g. strips the topic prefix so lag is
    labelled with the same logical names as the other metrics).  Returns the lags published
    (``{}`` while the consumer is not started or on error).  ``extra()`` adds the lags of a
    consumer outside Faust (the batch engagement engine's), keyed by Kafka topic name too.
    """
    try:
        lags = await consumer_lag(app, topics, timeout_s=timeout_s)
        if extra is not None:
            lags.update(extra())
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a metrics sampler must never take the worker down
        log.debug("consumer lag not sampled: %s: %s", type(exc).__name__, exc)
        return {}
    lags = {(rename(topic), partition): lag for (topic, partition), lag in lags.items()}
    metrics.publish_lag(lags)
    return lags


# --- garbage collector --------------------------------------------------------------------------
_gc_started: list[float] = []


def _on_gc(phase: str, info: dict) -> None:
    if phase == "start":
        _gc_started.append(time.perf_counter())
    elif _gc_started:
        GC_PAUSE_SECONDS.observe(time.perf_counter() - _gc_started.pop())


def watch_gc_pauses() -> None:
    """Time every collection into ``ripple_gc_pause_seconds`` (idempotent).  A full collection
    walks the whole heap; such pauses were the worker's latency tail (see streams/gc_tuning.py)."""
    import gc

    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)
