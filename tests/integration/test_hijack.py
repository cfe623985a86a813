"""First writer wins: re-publishing someone's post_id or comment_id as another author is
dead-lettered, and replies still reach the real author."""

from __future__ import annotations

import asyncio

import pytest

from streams.client import consume, produce
from test_pipeline import engagement

pytestmark = pytest.mark.kafka


def test_hijacked_post_and_comment_ids_are_dead_lettered_and_replies_reach_the_real_author(bootstrap, worker_factory):
    settings, _ = worker_factory()
    t, prefix = settings.topic, settings.topic_prefix
    post = {"schema_version": 1, "post_id": "p1", "author_id": "alice", "text": "Finished my first marathon today!"}
    asyncio.run(produce(bootstrap, [{"topic": "posts", "key": "p1", "value": post}], prefix))
    asyncio.run(produce(bootstrap, [engagement("comments", "bob", "p1", comment_id="k1",
                                               text="Congratulations on the marathon, amazing!")], prefix))
    first = asyncio.run(consume(bootstrap, t("suggested-replies"), until=lambda m: len(m) >= 1, timeout_s=90))
    assert first[0]["recipient_id"] == "alice" and first[0]["comment_id"] == "k1"

    # mallory re-publishes both ids as her own
    asyncio.run(produce(bootstrap, [{"topic": "posts", "key": "p1", "value": {**post, "author_id": "mallory"}}], prefix))
    asyncio.run(produce(bootstrap, [engagement("comments", "mallory", "p1", comment_id="k1", text="Thanks everyone!")],
                        prefix))
    letters = asyncio.run(consume(bootstrap, t("dead-letter"), until=lambda m: len(m) >= 2, timeout_s=60))
    reasons = sorted(d["reason"] for d in letters)
    assert reasons == ["invalid event: the comment_id belongs to another author",
                       "invalid event: the post_id belongs to another author"], reasons

    # a reply to k1 still goes to bob, who wrote it
    asyncio.run(produce(bootstrap, [engagement("comments", "carol", "p1", comment_id="k2", reply_to="k1",
                                               text="Thank you so much for the kind words!")], prefix))
    msgs = asyncio.run(consume(bootstrap, t("suggested-replies"), until=lambda m: any(x["comment_id"] == "k2" for x in m),
                               timeout_s=90))
    reply = [m for m in msgs if m["comment_id"] == "k2"]
    assert reply and reply[0]["recipient_id"] == "bob", msgs
