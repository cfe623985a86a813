"""The Faust application: topics, tables and the shared runtime the agents use.

Agents live in :mod:`streams.agents` and stay thin (decode → processor → send → metric):
decoding and validation are in :mod:`processors.events`, state updates and ranking in
:class:`processors.recommender.Recommender`, reply suggestion in
:class:`processors.replies.ReplySuggester`.
"""

from __future__ import annotations

import base64
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

import faust
import numpy as np

from processors.events import INPUT_TOPICS, Post, dead_letter
from processors.privacy import Pseudonymizer, redact_dead_letter
from processors.protocols import Embedder
from processors.recommender import Recommender
from processors.replies import ReplySuggester
from processors.sentiment_protocol import SentimentAnalyzer
from ripple.settings import Settings
from streams import faust_fixes, metrics, security, wire

log = logging.getLogger("ripple.worker")

OUTPUT_TOPICS = ("recommendations", "suggested-replies", "dead-letter")
ENGAGEMENT_TOPICS = ("likes", "comments", "shares", "follows")
TABLES = ("profiles", "posts")  # changelog topics <app_id>-<table>-changelog: the engine's, and the posts table's


def all_topics(settings: Settings) -> list[str]:
    """Every input and output topic name (with prefix) the worker needs."""
    return [settings.topic(t) for t in (*INPUT_TOPICS, *OUTPUT_TOPICS)]


def encode_vector(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype=np.float32).tobytes()).decode("ascii")


def decode_vector(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=np.float32)


@dataclass
class Runtime:
    """Everything an agent needs: settings, app, topics, tables, processors, helpers."""

    settings: Settings
    app: faust.App
    embedder: Embedder
    recommender: Recommender
    replies: ReplySuggester | None
    sentiment: SentimentAnalyzer | None
    topics: dict[str, faust.TopicT]
    posts: faust.Table
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="ripple-embed"))
    rec_clock: metrics.RecommendationClock = field(default_factory=metrics.RecommendationClock)
    catalog_loaded: bool = False
    #: next offset each agent expects per input partition (agent, topic, partition), since the last assignment
    expected_offsets: dict[tuple[str, str, int], int] = field(default_factory=dict)

    @cached_property
    def decode_limits(self) -> dict:
        """Keyword arguments of :func:`processors.events.decode` from the settings."""
        s = self.settings
        return {"max_text_chars": s.max_text_chars, "max_bytes": s.max_message_bytes, "max_future_s": s.max_future_s}

    @cached_property
    def pseudonymizer(self) -> Pseudonymizer | None:
        """Replaces user ids at the edge when ``pseudonymize_key`` is set (see :mod:`processors.privacy`)."""
        key = self.settings.pseudonymize_key
        return Pseudonymizer(key.get_secret_value().encode("utf-8")) if key is not None else None

    def at_edge(self, ev):
        """A decoded event as the pipeline sees it: user ids pseudonymised when configured."""
        return self.pseudonymizer(ev) if self.pseudonymizer is not None else ev

    def logical(self, topic: str) -> str:
        """``<prefix>likes`` → ``likes``."""
        p = self.settings.topic_prefix
        return topic[len(p):] if p and topic.startswith(p) else topic

    def ensure_catalog(self) -> None:
        """Rebuild the in-memory catalog from the recovered posts table (once, after recovery)."""
        if self.catalog_loaded:
            return
        self.catalog_loaded = True
        items = sorted(((k, v) for k, v in self.posts.items() if v), key=lambda kv: kv[1]["created_at"])
        if items:
            posts = [Post(k, v["author_id"], "", v["created_at"]) for k, v in items]
            self._forget_posts(self.recommender.on_posts(posts, np.stack([decode_vector(v["embedding"]) for _, v in items])))
            log.info("catalog rebuilt from table: %d posts", len(items))

    def remember_posts(self, posts: list[Post], vectors: np.ndarray, partitions: list[int]) -> None:
        """Add embedded posts to the catalog and the posts table.  Each post's changelog record goes
        to the partition it was read from (``partitions``, one per post), so under ``exactly_once``
        it commits in the same transaction as its input offset."""
        evicted = self.recommender.on_posts(posts, vectors)
        for post, vec, partition in zip(posts, vectors, partitions):
            raw = {"author_id": post.author_id, "created_at": post.ts, "embedding": encode_vector(vec),
                   "partition": partition}
            self.posts.data[post.post_id] = raw  # the local store, as ``table[key] = raw`` does ...
            self.posts.send_changelog(partition, post.post_id, raw)  # ... and its changelog record
        self._forget_posts(evicted)

    def _forget_posts(self, post_ids: list[str]) -> None:
        """Posts that left the bounded catalog leave the posts table too: a tombstone on the changelog
        partition the post's record was written to, if this worker still owns that partition (a
        post of a partition handed to another worker is that worker's; under ``exactly_once`` there
        is no transaction here to send it in).  Records written before the ``partition`` field
        existed were placed by Faust's partitioner (the key's hash), and so is their tombstone."""
        owned = None
        for post_id in post_ids:
            raw = self.posts.data.get(post_id)
            if raw is None:
                continue
            del self.posts.data[post_id]
            partition = raw.get("partition")
            if partition is not None:
                if owned is None:
                    changelog = self.posts.changelog_topic_name
                    owned = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == changelog}
                if partition not in owned:
                    continue
            self.posts.send_changelog(partition, post_id, None, value_serializer="raw")

    async def reject(self, event, reason: str) -> None:
        """Send ``event`` to the dead-letter topic with ``reason`` and its source position."""
        await self.topics["dead-letter"].send(value=self.dead_letter_doc(event.message, event.value, reason))

    def dead_letter_doc(self, msg, raw: bytes | None, reason: str) -> dict:
        """The dead letter of record ``msg`` (topic, partition, offset), counted and logged
        (position and reason category only, never the payload)."""
        doc = dead_letter(reason, msg.topic, msg.partition, msg.offset, raw,
                          now=time.time(), max_raw=self.settings.dead_letter_raw_bytes)
        if self.pseudonymizer is not None:  # the raw payload holds user ids: keep only its position
            doc = redact_dead_letter(doc)
        category = metrics.record_dead_letter(self.logical(msg.topic), reason)
        log.warning("dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, category)
        return doc

    async def publish_suggestions(self, doc: dict) -> None:
        await self.topics["suggested-replies"].send(key=doc["recipient_id"].encode(), value=doc)
        metrics.record_suggestion()


def build_app(
    settings: Settings,
    embedder: Embedder,
    recommender: Recommender,
    replies: ReplySuggester | None = None,
    sentiment: SentimentAnalyzer | None = None,
) -> Runtime:
    """The configured Faust app and the runtime its agents share; the worker registers the
    agents (:func:`streams.agents.register`) and the engagement engine
    (:func:`streams.engagement_engine.register`) on it."""
    (settings.home / "worker").mkdir(parents=True, exist_ok=True)
    wire.keep_faust_json_stdlib()  # table keys byte for byte as before orjson was installed
    faust_fixes.apply()
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{b.strip()}" for b in settings.broker.split(",")],
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        producer_linger=settings.producer_linger_s,
        datadir=str(settings.home / "worker" / settings.app_id),
        web_enabled=False,  # no HTTP server from Faust; metrics are served by streams.metrics on metrics_host
        processing_guarantee=settings.processing_guarantee,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        **security.faust_app_kwargs(settings),
        key_serializer="raw",
        value_serializer="json",
    )
    metrics.attach_faust_sensors(app)
    topics = {name: app.topic(settings.topic(name), value_serializer="json") for name in OUTPUT_TOPICS}
    topics["posts"] = app.topic(settings.topic("posts"), value_serializer="raw", value_type=bytes)
    topics["comments"] = app.topic(settings.topic("comments"), value_serializer="raw", value_type=bytes)
    rt = Runtime(
        settings=settings, app=app, embedder=embedder, recommender=recommender, replies=replies, sentiment=sentiment,
        topics=topics,
        # posts: written and deleted with explicit changelog partitions (Runtime.remember_posts)
        posts=app.Table("posts", default=None, key_type=str),
    )
    return rt
