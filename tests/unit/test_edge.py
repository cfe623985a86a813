"""The edge decoder: limits, pseudonyms, and engagements keyed by their user."""

from __future__ import annotations

import json

from processors.events import Engagement, Post, Rejected
from ripple.settings import Settings
from streams.edge import EdgeDecoder

LIKE = json.dumps({"schema_version": 1, "user_id": "u1", "post_id": "p1"}).encode()


def test_an_engagement_keyed_by_another_id_is_rejected_as_mis_keyed():
    edge = EdgeDecoder(Settings())
    assert isinstance(edge.decode("likes", LIKE, 1.0, b"u1"), Engagement)
    for key in (b"u2", None, b'"u1"'):
        got = edge.decode("likes", LIKE, 1.0, key)
        assert isinstance(got, Rejected) and got.reason.startswith("mis-keyed"), key
    assert isinstance(edge.decode("likes", LIKE, 1.0), Engagement)  # no key given: not checked (Faust agents)


def test_the_key_is_checked_against_the_id_as_sent_not_its_pseudonym():
    edge = EdgeDecoder(Settings(pseudonymize_key="k" * 16))
    got = edge.decode("likes", LIKE, 1.0, b"u1")
    assert isinstance(got, Engagement) and got.user_id != "u1"  # pseudonymised after the check
    post = json.dumps({"schema_version": 1, "post_id": "p1", "author_id": "a", "text": "hi"}).encode()
    assert isinstance(edge.decode("posts", post, 1.0, b"p1"), Post)  # posts are keyed by post_id: no user check
