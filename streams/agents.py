"""Faust agents and timers: decode → call a processor → send → record a metric."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from types import SimpleNamespace

from processors.events import Engagement, Follow, Post, Rejected, decode
from processors.replies import WaitingForPost
from processors.folding import fold
from streams import metrics
from streams.app import Runtime
from streams.client import read_offsets
from streams.security import kafka_client_kwargs

log = logging.getLogger("ripple.worker")


def register(rt: Runtime) -> None:
    s = rt.settings
    app = rt.app

    @app.agent(rt.topics["posts"], name="embed_posts")
    async def embed_posts(stream):
        loop = asyncio.get_running_loop()
        embed = metrics.instrument_embed(rt.embedder.embed, "post")
        async for events in stream.take_events(s.embed_batch_size, within=s.embed_batch_window_s):
            with metrics.observe_latency("embed_posts"):
                rt.ensure_catalog()
                valid: list[Post] = []
                partitions: list[int] = []  # where each valid post was read from
                for event in await _with_skipped(rt, "embed_posts", events):
                    ev = _decode(rt, "posts", event)
                    if isinstance(ev, Rejected):
                        await rt.reject(event, ev.reason)
                    else:
                        valid.append(ev)
                        partitions.append(event.message.partition)
                if not valid:
                    continue
                try:
                    with metrics.embedding_queued(len(valid)):
                        vectors = await loop.run_in_executor(rt.executor, embed, [p.text for p in valid])
                except Exception as exc:  # the model failed, not the messages: keep them visible
                    log.exception("embedding failed for a batch of %d posts", len(valid))
                    for event in events:
                        await rt.reject(event, f"processing error: {type(exc).__name__}")
                    continue
                rt.remember_posts(valid, vectors, partitions)
                rt.stats["posts"] += len(valid)

    @app.on_partitions_revoked.connect
    async def forget_expected_offsets(sender, revoked, **kwargs):
        rt.expected_offsets.clear()  # the next assignment starts wherever the group committed

    if s.engage_engine == "batch":  # engagements consumed in aiokafka batches, outside Faust's streams
        from streams import engage_batch

        engine_lags = engage_batch.register(rt).lags
    else:
        _register_engage(rt)
        engine_lags = None

    @app.timer(interval=5.0, name="sample_consumer_lag")
    async def sample_consumer_lag():
        await metrics.sample_lag(app, rename=rt.logical, extra=engine_lags)

    if rt.replies is not None:
        _register_replies(rt)


def _register_engage(rt: Runtime) -> None:
    """The Faust engagement path: one agent, event by event, with the profiles in a Faust table."""
    s = rt.settings
    app = rt.app

    @app.agent(rt.topics["engagements"], name="engage")
    async def engage(stream):
        async for event in stream.events():
            with metrics.observe_latency("engage"):
                rt.ensure_catalog()
                for one in await _with_skipped(rt, "engage", [event]):
                    await _engage_one(rt, one)

    @app.on_rebalance_complete.connect
    async def resume_after_recovery(sender, **kwargs):
        rt.resume_pending = True  # tables are recovered now; the timer below does the scan

    @app.timer(interval=max(0.05, min(0.5, s.rec_min_interval_s / 2)), name="flush_deferred")
    async def flush_deferred():
        if rt.resume_pending:
            rt.resume_pending = False
            owed = rt.recommender.resume(rt.owed_profiles())
            if owed:
                log.info("recovered %d profiles whose newest state was never published", owed)
        for user in rt.recommender.due():
            if rt.profiles.get(user):
                await rt.publish_recommendation(rt.load_profile(user), "flush_deferred")


async def _engage_one(rt: Runtime, event) -> None:
    ev = _decode(rt, rt.logical(event.message.topic), event)
    if isinstance(ev, Rejected):
        await rt.reject(event, ev.reason)
        return
    try:
        await _engagement(rt, event, ev)
    except Exception as exc:  # never crash the worker on one event
        msg = event.message
        log.exception("processing failed for %s[%d]@%d", msg.topic, msg.partition, msg.offset)
        await rt.reject(event, f"processing error: {type(exc).__name__}: {exc}"[:300])


@dataclass
class _Refetched:
    """A record re-read from the broker, shaped like the parts of a Faust event the agent reads."""

    message: SimpleNamespace
    value: bytes


def _offset_sought(rt: Runtime, msg) -> int | None:
    """The committed offset Faust sought ``msg``'s partition to when it was assigned (``None``:
    unknown).  Read from faust-streaming's consumer (``Consumer._committed_offset``, filled by
    ``perform_seek``), never over the network: an await inside Faust's rebalance handlers stalled
    the streams in a test, and on the first record of a partition the value is still the seek's."""
    try:
        offset = rt.app.consumer._committed_offset.get(msg.tp)
    except Exception:  # another Faust version, or a record re-read from the broker: no seed
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None


async def _with_skipped(rt: Runtime, agent: str, events: list) -> list:
    """``events`` with, before each, the records of its partition that ``agent``'s stream skipped."""
    out: list = []
    for event in events:
        out.extend(await _skipped_before(rt, event, agent))
        out.append(event)
    return out


async def _skipped_before(rt: Runtime, event, agent: str = "engage") -> list[_Refetched]:
    """Records of ``event``'s partition that ``agent``'s stream skipped since the last one it saw,
    re-read from the broker.  faust-streaming 0.15 can drop (and ack) a message while it resumes
    streams after recovery; the committed offset then passes it and the event would be lost.
    Profile idempotency makes re-applying anything already seen harmless."""
    msg = event.message
    key = (agent, msg.topic, msg.partition)
    expected = rt.expected_offsets.get(key)
    if expected is None:  # first record since the assignment: a skip of the very first offset counts too
        expected = _offset_sought(rt, msg)
    rt.expected_offsets[key] = max(msg.offset + 1, expected or 0)
    if expected is None or msg.offset <= expected:
        return []
    log.warning("the consumer skipped %s[%d]@%d..%d of %s; re-reading them from the broker",
                msg.topic, msg.partition, expected, msg.offset - 1, agent)
    isolation = "read_committed" if rt.settings.processing_guarantee == "exactly_once" else "read_uncommitted"
    try:
        records = await read_offsets(rt.settings.broker, msg.topic, msg.partition, expected, msg.offset,
                                     isolation_level=isolation, **kafka_client_kwargs(rt.settings))
    except Exception as exc:  # the broker is away: say what is not re-read, never crash the agent
        log.error("could not re-read %s[%d]@%d..%d (%s); those records are not applied",
                  msg.topic, msg.partition, expected, msg.offset - 1, type(exc).__name__)
        rt.stats["refetch_failed"] = rt.stats.get("refetch_failed", 0) + msg.offset - expected
        return []
    rt.stats["refetched"] = rt.stats.get("refetched", 0) + len(records)
    return [_Refetched(SimpleNamespace(topic=r.topic, partition=r.partition, offset=r.offset,
                                       timestamp=r.timestamp / 1000.0), r.value) for r in records]


def _decode(rt: Runtime, topic: str, event):
    msg = event.message
    ev = rt.at_edge(decode(topic, event.value, default_ts=msg.timestamp or time.time(), **rt.decode_limits))
    if isinstance(ev, Rejected):
        metrics.record_consumed(topic, "invalid")
    else:
        metrics.record_consumed(topic, "follow" if isinstance(ev, Follow) else ("post" if isinstance(ev, Post) else ev.kind))
    return ev


async def _engagement(rt: Runtime, event, ev: Engagement | Follow) -> None:
    """Fold one valid engagement into the user's profile; publish if the throttle allows."""
    msg = event.message
    profile = rt.load_profile(ev.user_id)
    done = fold(rt.recommender, profile, ev, f"{msg.topic}:{msg.partition}", msg.offset,
                sentiment=rt.sentiment, dedup_limit=rt.settings.dedup_limit)
    if not rt.count_folded(done, msg):
        if done.outcome == "replay":  # the previous owner may have died between saving the profile and publishing it
            rt.recommender.throttle.defer(ev.user_id)
        return
    if done.due_now:  # one table write: the state and the fact that it is being published
        profile.published_events = profile.events
    rt.profiles[ev.user_id] = profile.to_dict()
    rt.evict_profiles(msg.partition, ev.user_id)
    rt.rec_clock.saw(ev.user_id, msg.timestamp or time.time())
    if done.due_now:
        await rt.publish_recommendation(profile, "engage", save=False)


def _register_replies(rt: Runtime) -> None:
    s = rt.settings
    replies, bank = rt.replies, rt.replies.bank

    waiting = WaitingForPost()
    author_of = rt.recommender.catalog.author_of

    async def _suggest(comment: Engagement, vec, score: float, author: str | None) -> None:
        doc = replies.on_comment(comment, vec, score, post_author=author)
        if doc is not None:
            await rt.publish_suggestions(doc)

    @rt.app.timer(interval=0.5, name="retry_waiting_comments")
    async def retry_waiting_comments():
        for comment, vec, score, author in waiting.ready(author_of, time.monotonic()):
            await _suggest(comment, vec, score, author)

    @rt.app.agent(rt.topics["comments"], name="suggest_replies")
    async def suggest_replies(stream):
        """Comments → suggestions for their recipients. Invalid comments are dead-lettered by ``engage``."""
        loop = asyncio.get_running_loop()
        embed_comments = metrics.instrument_embed(rt.embedder.embed, "comment")
        embed_replies = metrics.instrument_embed(rt.embedder.embed, "reply")
        async for events in stream.take_events(s.embed_batch_size, within=s.embed_batch_window_s):
            with metrics.observe_latency("suggest_replies"):
                events = await _with_skipped(rt, "suggest_replies", events)
                comments = [ev for ev in (rt.at_edge(decode("comments", e.value, default_ts=e.message.timestamp
                                                            or time.time(), **rt.decode_limits)) for e in events)
                            if isinstance(ev, Engagement)]
                if not comments:
                    continue
                try:
                    vectors = await loop.run_in_executor(rt.executor, embed_comments, [c.text for c in comments])
                    for comment, vec in zip(comments, vectors):
                        score = rt.sentiment.score(comment.text) if rt.sentiment is not None else 0.0
                        author = author_of(comment.post_id)
                        if author is None and comment.reply_to is None:
                            waiting.add(comment, vec, score, time.monotonic())  # post not embedded yet
                            continue
                        await _suggest(comment, vec, score, author)
                    pending = bank.pending_texts()
                    if pending:  # replies newly admitted to the bank (k distinct users) need vectors
                        bank.set_vectors(pending, await loop.run_in_executor(rt.executor, embed_replies, pending))
                        metrics.record_model_update("reply_bank", len(pending))
                except Exception:  # suggestions are best effort; the comment itself was processed by `engage`
                    log.exception("reply suggestion failed for a batch of %d comments", len(comments))
