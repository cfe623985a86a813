"""Scoring a batch's due users, in the worker or in a forked child, within the batch's budget.

The engagement engine hands :meth:`Scoring.score` the users due a recommendation, owed ones
first.  They are scored in order until ``engage_rec_budget_s`` is spent: in a forked child
(:mod:`streams.forked`, on another core while the engine folds the next batch) when at least
``engage_fork_min_users`` are due, else here, ``SCORING_CHUNK`` at a time (one similarity
matrix product each).  Users left over are owed a message and come first in the next batch,
with their newest state.  Each scored user's profile is marked published and settled with the
throttle (:meth:`processors.engagement_step.EngagementStep.publishing`) as it is scored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

from processors.engagement_step import EngagementStep
from processors.recommender import SCORING_CHUNK
from streams import metrics, wire
from streams.app import Runtime
from streams.forked import ForkedRanker, ForkFailed
from streams.forked import available as forked_available
from streams.transactions import Outgoing

log = logging.getLogger("ripple.worker")


@dataclass
class ScoredInChild:
    """Users handed to a forked child, to :meth:`Scoring.collect` when the batch finishes."""

    users: list[str]  # scored by the child, in order
    seen: list[float | None]  # each one's oldest unpublished event time (the event → recommendation latency)
    result: asyncio.Future  # the child's ``streams.forked.Ranked``


class Scoring:
    """See the module docstring; ``fork``: may score in forked children (Linux only)."""

    def __init__(self, rt: Runtime, step: EngagementStep, *, fork: bool):
        self.rt, self.step, self.store = rt, step, step.store
        self.ranker = ForkedRanker(rt.recommender) if fork and forked_available() else None
        self.ranking: asyncio.Future | None = None  # the newest child's result

    def close(self) -> None:
        if self.ranker is not None:
            self.ranker.close()

    async def score(self, users: list[str], dirty: dict) -> tuple[list, ScoredInChild | None]:
        """The messages of ``users`` as (home partition, :class:`Outgoing`), or the child that
        scores them; ``dirty`` gains every scored user's profile (it is saved as published)."""
        rt = self.rt
        budget = rt.settings.engage_rec_budget_s
        if self.ranker is not None and self.ranker.usable and len(users) >= rt.settings.engage_fork_min_users:
            forked = await self._fork(users, dirty)
            if forked is not None:
                return [], forked
        t0 = time.perf_counter()
        topic = rt.settings.topic("recommendations")
        sends = []
        for i in range(0, len(users), SCORING_CHUNK):
            if budget and i and time.perf_counter() - t0 > budget:
                self._put_off(users[i:])
                break
            chunk = users[i:i + SCORING_CHUNK]
            docs = rt.recommender.recommendations(self.step.publishing(chunk, dirty))
            for user, doc in zip(chunk, docs):
                rt.rec_clock.published(user, "engage")
                sends.append((self.store.partition_of[user], Outgoing(topic, wire.dumps(doc), user.encode())))
            metrics.record_recommendation(len(docs))
        if self.ranker is not None:
            self.ranker.observe(time.perf_counter() - t0, len(sends))
        return sends, None

    def _put_off(self, users: list[str]) -> None:
        self.rt.recommender.throttle.requeue(users, self.rt.recommender.clock())

    async def _fork(self, users: list[str], dirty: dict) -> ScoredInChild | None:
        """Hand the users the budget allows to a child (after the previous child is done: one at
        a time) and put the rest off; the bookkeeping of both is done here, now, as for users
        scored in this thread.  ``None``: no child was started (nothing was done)."""
        if self.ranking is not None and not self.ranking.done():
            await asyncio.wait([self.ranking])
            if not self.ranker.usable:  # that child was the last failure allowed
                return None
        fit = self.ranker.share(len(users), self.rt.settings.engage_rec_budget_s)
        chosen = users[:fit]
        try:
            self.ranking = self.ranker.rank([self.store[u] for u in chosen])
        except ForkFailed as exc:
            self._fork_failed(exc)
            return None
        if self.ranker.forks == 1:
            log.info("engage: %d users scored in a forked child (pid %d); so are later batches with %d or more due",
                     len(chosen), self.ranker.child, self.rt.settings.engage_fork_min_users)
        if fit < len(users):
            self._put_off(users[fit:])
        self.step.publishing(chosen, dirty)  # after the fork: nothing the child's ranking reads
        return ScoredInChild(chosen, [self.rt.rec_clock.take(u) for u in chosen], self.ranking)

    def _fork_failed(self, exc: ForkFailed) -> None:
        log.warning("engage: %s; scoring in the worker instead%s", exc,
                    "" if self.ranker.usable else f" from now on ({self.ranker.max_failures} failures in a row)")

    async def collect(self, forked: ScoredInChild) -> list[tuple[str, bytes]]:
        """(user, message) of the child's users; scored here, with their state as it is now, if
        the child failed."""
        rt = self.rt
        try:
            ranked = await forked.result
            docs, retry = ranked.docs, ranked.retry
            self.ranker.observe(ranked.elapsed_s, len(forked.users))
            if rt.recommender.blend is not None:  # the child's lists wait for their labels here
                for user, doc in zip(forked.users, docs):
                    sent = json.loads(doc)
                    rt.recommender.blend.shown(user, sent["items"], sent["generated_at"])
        except ForkFailed as exc:
            self._fork_failed(exc)
            here = [(u, t) for u, t in zip(forked.users, forked.seen) if u in self.store]  # a rebalance may take some
            forked.users, forked.seen = [u for u, _ in here], [t for _, t in here]
            docs = [wire.dumps(d) for d in rt.recommender.recommendations([self.store[u] for u in forked.users])]
            retry = []  # recommendations() told the blend
        for user in retry:
            rt.recommender.throttle.retry(user)
        for ts in forked.seen:
            if ts is not None:
                metrics.observe_event_to_recommendation(ts, "engage")
        metrics.record_recommendation(len(docs))
        return list(zip(forked.users, docs))
