"""The posts table: the posts a worker embedded, kept in a Faust table whose compacted changelog
is the global catalog every worker follows (:mod:`streams.catalog_follower`).

Each post's changelog record goes to the partition the post was read from, so under
``exactly_once`` it commits in Faust's transaction with the post's input offset; a post that
leaves the bounded catalog leaves the table too.
"""

from __future__ import annotations

import base64

import faust
import numpy as np

from processors.events import Post
from processors.recommender import Recommender


def encode_vector(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype=np.float32).tobytes()).decode("ascii")


def decode_vector(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=np.float32)


class PostsTable:
    """``table`` (a Faust table of ``app``): the posts this worker embedded, written to the
    changelog every worker's catalog follows (:mod:`streams.catalog_follower`)."""

    def __init__(self, app: faust.App, table: faust.Table, recommender: Recommender):
        self.app, self.table, self.recommender = app, table, recommender

    def remember(self, posts: list[Post], vectors: np.ndarray, partitions: list[int]) -> None:
        """Add embedded posts to the catalog and the table; ``partitions``: where each was read from."""
        evicted = self.recommender.on_posts(posts, vectors)
        for post, vec, partition in zip(posts, vectors, partitions):
            raw = {"author_id": post.author_id, "created_at": post.ts, "embedding": encode_vector(vec),
                   "partition": partition}
            self.table.data[post.post_id] = raw  # the local store, as ``table[key] = raw`` does ...
            self.table.send_changelog(partition, post.post_id, raw)  # ... and its changelog record
        self.forget(evicted)

    def forget(self, post_ids: list[str]) -> None:
        """Posts that left the bounded catalog leave the table too: a tombstone on the changelog
        partition the post's record was written to, if this worker still owns that partition (a
        post of a partition handed to another worker is that worker's; under ``exactly_once`` there
        is no transaction here to send it in).  Records without a ``partition`` field were placed
        by Faust's partitioner (the key's hash), and so is their tombstone."""
        owned = None
        for post_id in post_ids:
            raw = self.table.data.get(post_id)
            if raw is None:
                continue
            del self.table.data[post_id]
            partition = raw.get("partition")
            if partition is not None:
                if owned is None:
                    changelog = self.table.changelog_topic_name
                    owned = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == changelog}
                if partition not in owned:
                    continue
            self.table.send_changelog(partition, post_id, None, value_serializer="raw")
