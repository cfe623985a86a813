"""``PostsTable.remember``: each post's changelog record goes to the partition the post was read
from, and an evicted post's tombstone to the partition its record is on, while this worker owns it.

The app is built, not started: the changelog sends are recorded instead of queued for a producer.
"""

import numpy as np
import pytest
from faust.types import TP

from processors.events import Post
from processors.recommender import Recommender, RecommenderConfig
from ripple.settings import Settings
from streams.app import build_app


class _NoEmbedder:
    dim = 4

    def embed(self, texts):
        raise AssertionError("not called: the vectors are given")


@pytest.fixture
def rt(tmp_path, monkeypatch):
    rt = build_app(Settings(home=tmp_path), _NoEmbedder(), Recommender(dim=4, config=RecommenderConfig(catalog_limit=3)))
    rt.sent = []
    monkeypatch.setattr(rt.posts.table, "send_changelog",
                        lambda partition, key, value, **kw: rt.sent.append((partition, key, value, kw)))
    changelog = rt.posts.table.changelog_topic_name
    rt.owned = {0, 1}
    monkeypatch.setattr(rt.app.assignor, "assigned_actives", lambda: {TP(changelog, p) for p in rt.owned})
    return rt


def _posts(*ids: str, t0: float = 1000.0) -> list[Post]:
    return [Post(pid, f"author-{pid}", "", t0 + i) for i, pid in enumerate(ids)]


def _vectors(n: int) -> np.ndarray:
    return np.eye(n, 4, dtype=np.float32) + 0.1


def test_each_record_goes_to_the_partition_its_post_was_read_from(rt):
    rt.posts.remember(_posts("a", "b", "c"), _vectors(3), [1, 0, 1])
    assert [(p, k) for p, k, _, _ in rt.sent] == [(1, "a"), (0, "b"), (1, "c")]
    assert {k: v["partition"] for k, v in rt.posts.table.data.items()} == {"a": 1, "b": 0, "c": 1}
    assert all(v == rt.posts.table.data[k] for _, k, v, _ in rt.sent)


def test_an_evicted_posts_tombstone_goes_where_its_record_is_while_this_worker_owns_it(rt):
    rt.posts.remember(_posts("a", "b", "c"), _vectors(3), [1, 0, 1])
    rt.posts.table.data["legacy"] = {"author_id": "x", "created_at": 1.0, "embedding": ""}  # before `partition` existed
    rt.owned = {0}  # partition 1 went to another worker
    rt.sent.clear()
    rt.posts.forget(["a", "b", "legacy", "never-stored"])
    assert [(p, k, v, kw) for p, k, v, kw in rt.sent] == [
        (0, "b", None, {"value_serializer": "raw"}),  # a null value: a tombstone, not JSON "null"
        (None, "legacy", None, {"value_serializer": "raw"}),  # placed by Faust's partitioner, like its record
    ]
    assert set(rt.posts.table.data) == {"c"}  # all forgotten locally, "a" included


def test_posts_leaving_the_bounded_catalog_leave_the_table(rt):
    rt.posts.remember(_posts("a", "b", "c"), _vectors(3), [0, 1, 0])
    rt.sent.clear()
    rt.posts.remember(_posts("d", t0=2000.0), _vectors(1), [1])
    assert set(rt.posts.table.data) == {"b", "c", "d"}
    assert [(p, k, v) for p, k, v, _ in rt.sent] == [(1, "d", rt.posts.table.data["d"]), (0, "a", None)]
