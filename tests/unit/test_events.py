import json

import pytest

from processors.events import INPUT_TOPICS, Engagement, Follow, Post, Rejected, dead_letter, decode, schema, validate


def enc(doc) -> bytes:
    return json.dumps(doc).encode()


def test_valid_events_of_every_topic_decode_to_domain_objects():
    assert decode("posts", enc({"schema_version": 1, "post_id": "p", "author_id": "a", "text": "hi"}), default_ts=3) == Post("p", "a", "hi", 3.0)
    assert decode("likes", enc({"schema_version": 1, "user_id": "u", "post_id": "p", "ts": 9}), default_ts=3) == Engagement("like", "u", "p", 9.0)
    c = decode("comments", enc({"schema_version": 1, "comment_id": "c1", "user_id": "u", "post_id": "p", "text": "nice", "reply_to": "c0"}), default_ts=1)
    assert (c.kind, c.text, c.comment_id, c.reply_to) == ("comment", "nice", "c1", "c0")
    assert decode("shares", enc({"schema_version": 1, "user_id": "u", "post_id": "p"}), default_ts=1).kind == "share"
    assert decode("follows", enc({"schema_version": 1, "user_id": "u", "followee_id": "v"}), default_ts=1) == Follow("u", "v", 1.0)


@pytest.mark.parametrize(
    "topic, raw, reason_part",
    [
        ("likes", b"not json", "invalid JSON"),
        ("likes", b"\xff\xfe\x00", "invalid JSON"),
        ("likes", None, "tombstone"),
        ("likes", enc([1, 2]), "schema"),
        ("likes", enc({"schema_version": 2, "user_id": "u", "post_id": "p"}), "schema_version"),
        ("likes", enc({"schema_version": 1, "user_id": 5, "post_id": "p"}), "user_id"),
        ("likes", enc({"schema_version": 1, "user_id": "", "post_id": "p"}), "user_id"),
        ("comments", enc({"schema_version": 1, "user_id": "u", "post_id": "p", "comment_id": "c"}), "'text' is a required"),
        ("posts", enc({"schema_version": 1, "post_id": "p", "author_id": "a", "text": "x" * 6000}), "text too long"),
        ("follows", enc({"schema_version": 1, "user_id": "u", "followee_id": "u"}), "themselves"),
        ("likes", enc({"schema_version": 1, "user_id": "u", "post_id": "p", "ts": "yesterday"}), "ts"),
        ("nope", enc({}), "unknown topic"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(topic, raw, reason_part):
    out = decode(topic, raw, default_ts=0, max_text_chars=5000)
    assert isinstance(out, Rejected)
    assert reason_part in out.reason


def test_dead_letter_document_is_valid_and_truncates_raw():
    doc = dead_letter("bad", "likes", 2, 41, b"x" * 100, now=5.0, max_raw=10)
    assert validate("dead_letter", doc) is None
    assert (doc["raw"], doc["raw_truncated"], doc["partition"], doc["offset"]) == ("x" * 10, True, 2, 41)


def test_every_input_topic_has_a_schema_with_schema_version():
    for name in INPUT_TOPICS.values():
        assert "schema_version" in schema(name)["required"]
