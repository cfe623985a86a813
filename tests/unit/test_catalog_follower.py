"""The global catalog on the in-memory broker: a follower reads every partition of the posts
changelog, oldest post first at start, then live."""

from __future__ import annotations

import asyncio
import contextlib
import json

import numpy as np

from processors.recommender import Recommender, RecommenderConfig
from streams.catalog_follower import CatalogFollower
from streams.memory_broker import MemoryBroker, MemoryIO
from streams.posts_table import encode_vector

TOPIC = "app-posts-changelog"


def _write(broker: MemoryBroker, post_id: str, created_at: float, partition: int, value: bytes | None = None):
    doc = {"author_id": f"a-{post_id}", "created_at": created_at, "embedding": encode_vector(np.ones(4) * created_at),
           "partition": partition}
    broker.append(TOPIC, json.dumps(post_id).encode(), value if value is not None else json.dumps(doc).encode(),
                  partition, None, 0)


def test_the_follower_holds_every_partitions_posts_and_keeps_the_newest_when_bounded():
    async def run():
        broker = MemoryBroker()
        broker.create_topic(TOPIC, 4)
        for i in range(6):  # written by several workers, out of time order across partitions
            _write(broker, f"p{i}", created_at=10.0 - i, partition=i % 4)
        _write(broker, "bad", 1.0, 1, value=b"not json")
        rec = Recommender(dim=4, config=RecommenderConfig(catalog_limit=4))
        follower = CatalogFollower(MemoryIO(broker), TOPIC, 4, rec, read_committed=True)
        task = asyncio.ensure_future(follower.run())
        await asyncio.wait_for(follower.caught_up.wait(), 5)
        at_start = {p for p in (f"p{i}" for i in range(6)) if p in rec.catalog}
        _write(broker, "late", created_at=20.0, partition=3)  # another worker embeds a post now
        await broker.notify()
        await asyncio.wait_for(_until(lambda: "late" in rec.catalog), 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return at_start, rec

    at_start, rec = asyncio.run(run())
    assert at_start == {"p0", "p1", "p2", "p3"}  # the four newest of six, from all four partitions
    assert rec.catalog.author_of("late") == "a-late"


async def _until(condition):
    while not condition():
        await asyncio.sleep(0.005)
