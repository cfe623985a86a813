"""Event documents as Ripple's input topics expect them: built from typed arguments, checked
against the shipped schemas, keyed by the user they belong to.

>>> e = like("u1", "p9", event_id="e1", ts=10.0)
>>> e.topic, e.key, e.value
('likes', 'u1', {'schema_version': 1, 'event_id': 'e1', 'user_id': 'u1', 'post_id': 'p9', 'ts': 10.0})
>>> post("p1", "alice", "").value
Traceback (most recent call last):
...
ripple_client.validation.InvalidEvent: posts.text: '' should be non-empty
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ripple_client.schemas import INPUT_SCHEMAS
from ripple_client.validation import InvalidEvent, check

SCHEMA_VERSION = 1
#: the field whose value is the Kafka key of each input topic (as each schema says)
KEY_FIELD = {"posts": "post_id", "likes": "user_id", "comments": "user_id", "shares": "user_id", "follows": "user_id"}


@dataclass(frozen=True)
class OutgoingEvent:
    """A checked event: the logical topic, the Kafka key and the JSON document."""

    topic: str
    key: str
    value: dict


def event(topic: str, doc: dict) -> OutgoingEvent:
    """Check a whole document (``schema_version`` and ``event_id`` are filled in when missing)."""
    if not isinstance(doc, dict):
        raise InvalidEvent(topic, None, f"an event is a JSON object, not {type(doc).__name__}")
    doc = {"schema_version": SCHEMA_VERSION, "event_id": uuid.uuid4().hex, **doc}
    check(topic, doc)
    return OutgoingEvent(topic, doc[KEY_FIELD[topic]], doc)


def _build(topic: str, fields: dict) -> OutgoingEvent:
    return event(topic, {k: v for k, v in fields.items() if v is not None})


def post(post_id: str, author_id: str, text: str, *, event_id: str | None = None, ts: float | None = None) -> OutgoingEvent:
    """A new post (or an edit of the author's own post)."""
    return _build("posts", dict(event_id=event_id, post_id=post_id, author_id=author_id, text=text, ts=ts))


def like(user_id: str, post_id: str, *, event_id: str | None = None, ts: float | None = None) -> OutgoingEvent:
    return _build("likes", dict(event_id=event_id, user_id=user_id, post_id=post_id, ts=ts))


def share(user_id: str, post_id: str, *, event_id: str | None = None, ts: float | None = None) -> OutgoingEvent:
    return _build("shares", dict(event_id=event_id, user_id=user_id, post_id=post_id, ts=ts))


def comment(user_id: str, post_id: str, comment_id: str, text: str, *, reply_to: str | None = None,
            event_id: str | None = None, ts: float | None = None) -> OutgoingEvent:
    """A comment on a post; ``reply_to`` is the ``comment_id`` it answers, if any."""
    return _build("comments", dict(event_id=event_id, comment_id=comment_id, user_id=user_id, post_id=post_id,
                                   text=text, reply_to=reply_to, ts=ts))


def follow(user_id: str, followee_id: str, *, event_id: str | None = None, ts: float | None = None) -> OutgoingEvent:
    return _build("follows", dict(event_id=event_id, user_id=user_id, followee_id=followee_id, ts=ts))


class TypedEvents:
    """``post``/``like``/``share``/``comment``/``follow`` over a ``send_event``: what the sync and
    the asyncio producer share (the asyncio one's ``send_event`` is a coroutine, so are these)."""

    def send_event(self, ev: OutgoingEvent):
        raise NotImplementedError

    def send(self, topic: str, doc: dict):
        """Check and send a whole document of input ``topic`` (``likes``, ``posts``, ...)."""
        return self.send_event(event(topic, doc))

    def post(self, post_id: str, author_id: str, text: str, **kw):
        return self.send_event(post(post_id, author_id, text, **kw))

    def like(self, user_id: str, post_id: str, **kw):
        return self.send_event(like(user_id, post_id, **kw))

    def share(self, user_id: str, post_id: str, **kw):
        return self.send_event(share(user_id, post_id, **kw))

    def comment(self, user_id: str, post_id: str, comment_id: str, text: str, **kw):
        return self.send_event(comment(user_id, post_id, comment_id, text, **kw))

    def follow(self, user_id: str, followee_id: str, **kw):
        return self.send_event(follow(user_id, followee_id, **kw))


assert set(KEY_FIELD) == set(INPUT_SCHEMAS)
