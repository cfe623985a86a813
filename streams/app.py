"""The Faust application: topics, tables and the shared runtime the agents use.

Agents live in :mod:`streams.agents` and stay thin (decode → processor → send → metric):
decoding and validation are in :mod:`processors.events`, state updates and ranking in
:class:`processors.recommender.Recommender`, reply suggestion in
:class:`processors.replies.ReplySuggester`.
"""

from __future__ import annotations

import asyncio

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import faust

from processors.events import INPUT_TOPICS
from processors.protocols import Embedder
from processors.recommender import Recommender
from processors.replies import ReplySuggester
from processors.sentiment_protocol import SentimentAnalyzer
from ripple.settings import Settings
from streams import faust_fixes, metrics, metrics_sources, security, wire
from streams.edge import DeadLetters, EdgeDecoder
from streams.posts_table import PostsTable

log = logging.getLogger("ripple.worker")

OUTPUT_TOPICS = ("recommendations", "suggested-replies", "dead-letter", "trending")
#: output topics that keep the newest message per key (a user's latest list; the latest trends)
COMPACTED_OUTPUTS = ("recommendations", "trending")
ENGAGEMENT_TOPICS = ("likes", "comments", "shares", "follows")
TABLES = ("profiles", "posts")  # changelog topics <app_id>-<table>-changelog: the engine's, and the posts table's


def all_topics(settings: Settings) -> list[str]:
    """Every input and output topic name (with prefix) the worker needs."""
    return [settings.topic(t) for t in (*INPUT_TOPICS, *OUTPUT_TOPICS)]


@dataclass
class Runtime:
    """What the agents and the engagement engine share: settings, the Faust app and its topics,
    the models, the posts table, the edge decoder and dead letters."""

    settings: Settings
    app: faust.App | None
    embedder: Embedder | None
    recommender: Recommender
    replies: ReplySuggester | None
    sentiment: SentimentAnalyzer | None
    topics: dict[str, faust.TopicT]
    posts: PostsTable | None
    decoder: EdgeDecoder | None = None  # made from the settings when not given
    dead_letters: DeadLetters | None = None
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="ripple-embed"))
    rec_clock: metrics_sources.RecommendationClock = field(default_factory=metrics_sources.RecommendationClock)
    #: next offset each agent expects per input partition (agent, topic, partition), since the last assignment
    expected_offsets: dict[tuple[str, str, int], int] = field(default_factory=dict)

    def __post_init__(self):
        self.decoder = self.decoder or EdgeDecoder(self.settings)
        self.dead_letters = self.dead_letters or DeadLetters(self.settings)

    async def reject(self, event, reason: str) -> None:
        """Send Faust ``event`` to the dead-letter topic with ``reason`` and its source position."""
        await self.topics["dead-letter"].send(value=self.dead_letters.document(event.message, event.value, reason))

    async def embed_admitted_replies(self) -> None:
        """Embed the replies the bank admitted since the last call (off the event loop; the
        vectors are set on it), whoever's messages admitted them."""
        bank = self.replies.bank
        pending = bank.pending_texts()
        if pending:
            embed = metrics.instrument_embed(self.embedder.embed, "reply")
            bank.set_vectors(pending, await asyncio.get_running_loop().run_in_executor(self.executor, embed, pending))
            metrics.record_model_update("reply_bank", len(pending))

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
        # posts: written and deleted with explicit changelog partitions (PostsTable.remember)
        posts=PostsTable(app, app.Table("posts", default=None, key_type=str), recommender),
    )
    return rt
