"""The producer client: typed events checked against the worker's own schemas, keyed as the
worker expects, and light enough for a web back-end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from processors.events import Engagement, Follow, Post, decode
from ripple_client import InvalidEvent, events
from ripple_client.producer import encode


def test_every_built_event_is_one_the_worker_decodes_and_keys_as_it_expects():
    built = [events.post("p1", "alice", "我今天跑了十公里"), events.like("u1", "p1", ts=5.0), events.share("u1", "p1"),
             events.comment("u2", "p1", "c1", "Nice!", reply_to="c0"), events.follow("u1", "alice")]
    kinds = [Post, Engagement, Engagement, Engagement, Follow]
    for ev, kind in zip(built, kinds):
        key, value = encode(ev)
        decoded = decode(ev.topic, value, default_ts=1.0)
        assert isinstance(decoded, kind), decoded
        assert key.decode() == (ev.value["post_id"] if ev.topic == "posts" else ev.value["user_id"])
        assert decoded.event_id == ev.value["event_id"] and len(ev.value["event_id"]) == 32
    assert json.loads(encode(built[0])[1])["text"] == "我今天跑了十公里"  # UTF-8, not \\u escapes


@pytest.mark.parametrize("make, field, words", [
    (lambda: events.post("p1", "alice", ""), "text", "non-empty"),
    (lambda: events.like("u1", "p" * 200), "post_id", "too long"),
    (lambda: events.like("u\x00", "p1"), "user_id", "control character"),
    (lambda: events.follow("u1", "u1"), "followee_id", "cannot follow themselves"),
    (lambda: events.like("u1", "p1", ts=-1.0), "ts", "minimum"),
    (lambda: events.event("likes", {"user_id": "u1"}), None, "'post_id' is a required property"),
    (lambda: events.event("likes", {"user_id": 7, "post_id": "p1"}), "user_id", "not of type"),
    (lambda: events.event("votes", {"user_id": "u1"}), None, "unknown topic"),
    (lambda: events.event("likes", ["u1"]), None, "JSON object"),
])
def test_a_bad_event_raises_naming_the_field_before_anything_is_sent(make, field, words):
    with pytest.raises(InvalidEvent) as caught:
        make()
    assert caught.value.field == field and words in str(caught.value)


def test_the_worker_rejects_what_the_client_refuses():
    doc = {"schema_version": 1, "user_id": "u1", "followee_id": "u1"}
    with pytest.raises(InvalidEvent):
        events.event("follows", doc)
    assert decode("follows", json.dumps(doc).encode(), default_ts=0).reason == "a user cannot follow themselves"


def test_the_client_imports_neither_faust_nor_onnxruntime_nor_river():
    code = ("import sys, ripple_client, ripple_client.producer, ripple_client.reader, ripple_client.events;"
            "heavy = [m for m in ('faust', 'onnxruntime', 'river', 'numpy', 'processors', 'streams') if m in sys.modules];"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_asyncio_producer_has_the_same_typed_methods_and_checks_before_sending():
    import asyncio

    from ripple_client import AsyncRippleProducer

    async def main():
        producer = AsyncRippleProducer("127.0.0.1:1")  # never started: nothing can be sent
        with pytest.raises(InvalidEvent) as caught:
            await producer.comment("u1", "p1", "c1", "")
        assert caught.value.field == "text"
        await producer._producer.stop()

    asyncio.run(main())
