"""The ``trending`` topic: every ``RIPPLE_TRENDING_INTERVAL_S`` the worker that writes the model
snapshots (every worker holds the same trends: :mod:`processors.trends`) publishes the top posts
and authors of each window as one message, key ``all``, to the compacted ``trending`` topic.
``ripple serve`` answers ``GET /v1/trending`` and unknown users from it."""

from __future__ import annotations

import logging
import time
from typing import Callable

from processors.trends import Trends
from streams import metrics

log = logging.getLogger("ripple.worker")

TRENDING_KEY = b"all"
SCHEMA_VERSION = 1


def trending_message(trends: Trends, k: int, author_of: Callable[[str], str | None], *, now: float) -> dict:
    """The ``trending`` message (``schemas/trending.json``): per window, the top ``k`` posts and
    authors, scored at the newest engagement time the trends know."""
    at = trends.newest
    windows = {name: {"window_s": tau,
                      "posts": trends.top(name, k, now=at, author_of=author_of),
                      "authors": trends.top_authors(name, k, now=at, author_of=author_of)}
               for name, tau in trends.windows.items()}
    return {"schema_version": SCHEMA_VERSION, "generated_at": now, "as_of": at, "windows": windows}


def register(rt, trends: Trends, publishes: Callable[[], bool]) -> None:
    """Publish ``trends`` on a timer from ``rt``'s app while ``publishes()`` holds."""
    s = rt.settings
    author_of = rt.recommender.catalog.author_of

    @rt.app.timer(interval=s.trending_interval_s, name="publish_trending")
    async def publish_trending():
        if not publishes() or not trends.newest:
            return
        try:
            doc = trending_message(trends, s.trending_k, author_of, now=time.time())
            await rt.topics["trending"].send(key=TRENDING_KEY, value=doc)
            metrics.record_trending(len(trends))
        except Exception as exc:  # the next tick tries again
            log.warning("trending: not published (%s)", type(exc).__name__)
