"""Faust agents and timers: posts → catalog, comments → suggested replies, lag sampling.

Each stays thin: decode → call a processor → send → record a metric.  The engagement topics
are consumed by :mod:`streams.engagement_engine`, not by a Faust agent."""

from __future__ import annotations

import asyncio
import logging
import time

from processors.events import Engagement, Post, Rejected
from processors.replies import WaitingForPost
from streams import metrics, metrics_sources
from streams.app import Runtime
from streams.stalled_partitions import Refetched, StallWatch, offset_sought, reread

log = logging.getLogger("ripple.worker")


def register(rt: Runtime, catalog_ready: asyncio.Event, engine_lags=None,
             replies_ready: asyncio.Event | None = None) -> None:
    """The Faust agents and timers on ``rt.app``.  ``catalog_ready``: set once the catalog holds
    every post written before the start (posts are embedded only then: adding to the bounded
    catalog while it is read back would evict the newest); ``replies_ready``: set once the
    shared reply bank and comment directory are read back (comments wait for it, so a reply to a
    comment read before a restart finds its author); ``engine_lags()`` gives the
    engagement engine's lag per partition, sampled with Faust's own."""
    s = rt.settings
    app = rt.app

    embed = metrics.instrument_embed(rt.embedder.embed, "post")

    async def process_posts(events: list) -> None:
        valid: list[Post] = []
        partitions: list[int] = []  # where each valid post was read from
        for event in events:
            ev = _decode_post(rt, event)
            if not isinstance(ev, Rejected) and rt.recommender.catalog.claimed_by_another(ev.post_id, ev.author_id):
                ev = Rejected("invalid event: the post_id belongs to another author")
            if isinstance(ev, Rejected):
                await rt.reject(event, ev.reason)
            else:
                valid.append(ev)
                partitions.append(event.message.partition)
        if not valid:
            return
        try:
            with metrics.embedding_queued(len(valid)):
                vectors = await asyncio.get_running_loop().run_in_executor(rt.executor, embed, [p.text for p in valid])
        except Exception as exc:  # the model failed, not the messages: keep them visible
            log.exception("embedding failed for a batch of %d posts", len(valid))
            for event in events:
                await rt.reject(event, f"processing error: {type(exc).__name__}")
            return
        rt.posts.remember(valid, vectors, partitions)

    posts_watch = StallWatch(rt, "embed_posts", s.topic("posts"), process_posts)

    @app.agent(rt.topics["posts"], name="embed_posts")
    async def embed_posts(stream):
        await catalog_ready.wait()
        posts_watch.idle()
        async for events in stream.take_events(s.embed_batch_size, within=s.embed_batch_window_s):
            posts_watch.busy()
            with metrics.observe_latency("embed_posts"):
                await process_posts(await _with_skipped(rt, "embed_posts", events))
            posts_watch.idle()

    @app.timer(interval=2.5, name="sweep_stalled_posts")
    async def sweep_stalled_posts():
        await posts_watch.sweep()

    @app.on_partitions_revoked.connect
    async def forget_expected_offsets(sender, revoked, **kwargs):
        rt.expected_offsets.clear()  # the next assignment starts wherever the group committed

    @app.timer(interval=5.0, name="sample_consumer_lag")
    async def sample_consumer_lag():
        await metrics_sources.sample_lag(app, rename=s.logical_topic, extra=engine_lags)

    if rt.replies is not None:
        _register_replies(rt, replies_ready)


async def _with_skipped(rt: Runtime, agent: str, events: list) -> list:
    """``events`` with, before each, the records of its partition that ``agent``'s stream skipped."""
    out: list = []
    for event in events:
        out.extend(await _skipped_before(rt, event, agent))
        out.append(event)
    return out


async def _skipped_before(rt: Runtime, event, agent: str) -> list[Refetched]:
    """Records of ``event``'s partition that ``agent``'s stream skipped since the last one it saw,
    re-read from the broker.  faust-streaming 0.15 can drop (and ack) a message while it resumes
    streams after recovery; the committed offset then passes it and the event would be lost.
    Profile idempotency makes re-applying anything already seen harmless."""
    msg = event.message
    key = (agent, msg.topic, msg.partition)
    expected = rt.expected_offsets.get(key)
    if expected is None:  # first record since the assignment: a skip of the very first offset counts too
        expected = offset_sought(rt, getattr(msg, "tp", None))
    rt.expected_offsets[key] = max(msg.offset + 1, expected or 0)
    if expected is None or msg.offset <= expected:
        return []
    log.warning("the consumer skipped %s[%d]@%d..%d of %s; re-reading them from the broker",
                msg.topic, msg.partition, expected, msg.offset - 1, agent)
    try:
        return await reread(rt, msg.topic, msg.partition, expected, msg.offset)
    except Exception as exc:  # the broker is away: say what is not re-read, never crash the agent
        log.error("could not re-read %s[%d]@%d..%d (%s); those records are not applied",
                  msg.topic, msg.partition, expected, msg.offset - 1, type(exc).__name__)
        metrics.record_skipped("lost", msg.offset - expected)
        return []


def _decode_post(rt: Runtime, event) -> Post | Rejected:
    ev = rt.decoder.decode("posts", event.value, event.message.timestamp or time.time())
    metrics.record_consumed("posts", "invalid" if isinstance(ev, Rejected) else "post")
    return ev


def _register_replies(rt: Runtime, ready: asyncio.Event | None) -> None:
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

    embed_comments = metrics.instrument_embed(rt.embedder.embed, "comment")

    async def process_comments(events: list) -> None:
        """Comments → suggestions for their recipients.  Invalid comments are dead-lettered by the
        engagement engine, which reads the same topic."""
        comments = []
        for event in events:
            ev = rt.decoder.decode("comments", event.value, event.message.timestamp or time.time())
            if not isinstance(ev, Engagement):
                continue
            if ev.comment_id and rt.replies.directory.author_of(ev.comment_id) not in (None, ev.user_id):
                # first writer wins: a re-published comment_id must not redirect replies to another user
                await rt.reject(event, "invalid event: the comment_id belongs to another author")
                continue
            comments.append(ev)
        if not comments:
            return
        try:
            vectors = await asyncio.get_running_loop().run_in_executor(rt.executor, embed_comments,
                                                                       [c.text for c in comments])
            for comment, vec in zip(comments, vectors):
                score = rt.sentiment.score(comment.text) if rt.sentiment is not None else 0.0
                author = author_of(comment.post_id)
                if author is None and comment.reply_to is None:
                    waiting.add(comment, vec, score, time.monotonic())  # post not embedded yet
                    continue
                await _suggest(comment, vec, score, author)
            await rt.embed_admitted_replies()  # replies newly admitted (k distinct users) need vectors
        except Exception:  # suggestions are best effort; the engagement engine folds the comment itself
            log.exception("reply suggestion failed for a batch of %d comments", len(comments))

    comments_watch = StallWatch(rt, "suggest_replies", s.topic("comments"), process_comments)

    @rt.app.agent(rt.topics["comments"], name="suggest_replies")
    async def suggest_replies(stream):
        if ready is not None:
            await ready.wait()
        comments_watch.idle()
        async for events in stream.take_events(s.embed_batch_size, within=s.embed_batch_window_s):
            comments_watch.busy()
            with metrics.observe_latency("suggest_replies"):
                await process_comments(await _with_skipped(rt, "suggest_replies", events))
            comments_watch.idle()

    @rt.app.timer(interval=2.5, name="sweep_stalled_comments")
    async def sweep_stalled_comments():
        if ready is None or ready.is_set():
            await comments_watch.sweep()
