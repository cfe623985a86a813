"""The global catalog: every worker follows every partition of the posts changelog.

A post is embedded once, by the worker whose ``embed_posts`` agent owns its ``posts`` partition,
and its vector, author and time go to the compacted ``<app_id>-posts-changelog`` (the posts
table, :mod:`streams.posts_table`).  :class:`CatalogFollower` reads all partitions of that topic
with its own consumer (no consumer group, so no rebalance ever takes a partition away), first
up to the end offsets it finds at start (the worker's catalog then holds every post, oldest
first, so the bounded catalog keeps the newest), then live, within a poll of the writer's
commit.  So every worker ranks the whole catalog, through rebalances, failover and restarts.
This is the pattern of Kafka Streams' global tables, built on a plain consumer:
faust-streaming's ``GlobalTable`` has open recovery bugs.

Records that are not a post vector are counted as unreadable and skipped.  Tombstones are not
applied: each worker's catalog evicts its oldest posts by itself, at the same bound.
"""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
from aiokafka import TopicPartition

from processors.events import Post
from processors.recommender import Recommender
from streams import metrics
from streams.engine_io import KafkaIO
from streams.posts_table import decode_vector

log = logging.getLogger("ripple.worker")


def post_of(key: bytes | None, value: bytes | None) -> tuple[Post, np.ndarray] | None:
    """The post and vector of a posts-changelog record (``None``: a tombstone or no post vector).

    >>> post_of(b'"p1"', b'{"author_id": "a", "created_at": 5.0, "embedding": "AACAPw=="}')[0]
    Post(post_id='p1', author_id='a', text='', ts=5.0, event_id=None)
    >>> post_of(b'"p1"', None) is None
    True
    """
    if key is None or value is None:
        return None
    post_id = json.loads(key)  # the posts table's keys are JSON strings
    doc = json.loads(value)
    return Post(str(post_id), str(doc["author_id"]), "", float(doc["created_at"])), decode_vector(doc["embedding"])


class CatalogFollower:
    """Follows ``topic`` (``partitions`` partitions) into ``recommender``'s catalog; ``caught_up``
    is set once everything written before the start is in.  ``on_evicted(ids)`` hears of posts
    the catalog dropped to make room."""

    def __init__(self, io, topic: str, partitions: int, recommender: Recommender, *, read_committed: bool,
                 on_evicted=lambda ids: None):
        self.io, self.topic, self.partitions, self.recommender = io, topic, partitions, recommender
        self.read_committed, self.on_evicted = read_committed, on_evicted
        self.caught_up = asyncio.Event()
        self.applied = 0

    async def run(self) -> None:
        consumer = self.io.consumer(group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                    isolation_level="read_committed" if self.read_committed else "read_uncommitted")
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            latest: dict[bytes, tuple[bytes | None, object]] = {}
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=200, max_records=10_000)).values():
                    for r in records:
                        latest[r.key] = (r.value, r)
            self._apply(sorted(filter(None, (self._read(k, v, r) for k, (v, r) in latest.items())),
                               key=lambda pv: pv[0].ts))
            log.info("catalog: %d posts from every partition of %s", self.applied, self.topic)
            self.caught_up.set()
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
                posts = [pv for records in batch.values() for r in records if (pv := self._read(r.key, r.value, r))]
                self._apply(posts)
        finally:
            await consumer.stop()

    def _read(self, key, value, record) -> tuple[Post, np.ndarray] | None:
        try:
            return post_of(key, value)
        except (ValueError, TypeError, KeyError) as exc:
            metrics.record_engine_outcomes({"unreadable_post": 1})
            log.error("catalog: the record at %s[%d]@%d is not a post vector (%s); skipped",
                      record.topic, record.partition, record.offset, type(exc).__name__)
            return None

    def _apply(self, posts: list[tuple[Post, np.ndarray]]) -> None:
        if not posts:
            return
        dim = self.recommender.catalog.dim
        usable = [(p, v) for p, v in posts if v.shape == (dim,)]
        if len(usable) < len(posts):
            log.error("catalog: %d post vectors of another dimension than %d skipped (another model?)",
                      len(posts) - len(usable), dim)
        if usable:
            evicted = self.recommender.on_posts([p for p, _ in usable], np.stack([v for _, v in usable]))
            self.applied += len(usable)
            if evicted:
                self.on_evicted(evicted)


def register(rt) -> CatalogFollower:
    """Run a follower of ``rt``'s posts changelog as a task of ``rt.app``; posts it makes the
    catalog drop leave the posts table too (:meth:`streams.posts_table.PostsTable.forget`)."""
    s = rt.settings
    follower = CatalogFollower(KafkaIO(s), rt.posts.table.changelog_topic_name, s.partitions, rt.recommender,
                               read_committed=s.processing_guarantee == "exactly_once",
                               on_evicted=rt.posts.forget)

    @rt.app.task
    async def follow_catalog():
        await follower.run()

    return follower
