"""Checks an event document before it is sent: its topic's JSON Schema, then the rules a schema
cannot express (the worker applies the same ones, and dead-letters what fails them).

>>> check("likes", {"schema_version": 1, "user_id": "u1", "post_id": "p1"})
>>> check("likes", {"schema_version": 1, "user_id": "u1"})
Traceback (most recent call last):
...
ripple_client.validation.InvalidEvent: likes: 'post_id' is a required property
>>> check("follows", {"schema_version": 1, "user_id": "u1", "followee_id": "u1"})
Traceback (most recent call last):
...
ripple_client.validation.InvalidEvent: follows.followee_id: a user cannot follow themselves
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from ripple_client.schemas import INPUT_SCHEMAS, load_schema

#: fields that carry ids: no control characters, no lone surrogates (they become Kafka keys and log text)
ID_FIELDS = ("event_id", "post_id", "author_id", "user_id", "comment_id", "reply_to", "followee_id")
BAD_ID = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
SELF_FOLLOW = "a user cannot follow themselves"
BAD_ID_REASON = "control character or lone surrogate in an id"


def bad_id_field(doc: dict) -> str | None:
    """The first id field of ``doc`` holding a control character or lone surrogate (they become
    Kafka keys and log text), or ``None``."""
    for key in ID_FIELDS:
        value = doc.get(key)
        if isinstance(value, str) and BAD_ID.search(value):
            return key
    return None


class InvalidEvent(ValueError):
    """An event that the worker would dead-letter; ``field`` names the offending field (or ``None``)."""

    def __init__(self, topic: str, field: str | None, reason: str):
        self.topic, self.field, self.reason = topic, field, reason
        super().__init__(f"{topic}{'.' + field if field else ''}: {reason}")


@lru_cache(maxsize=None)
def _validator(name: str):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(name))


def check(topic: str, doc: dict) -> None:
    """Raise :class:`InvalidEvent` unless ``doc`` is a valid event of input ``topic``."""
    name = INPUT_SCHEMAS.get(topic)
    if name is None:
        raise InvalidEvent(topic, None, f"unknown topic; one of {', '.join(INPUT_SCHEMAS)}")
    error = next(iter(_validator(name).iter_errors(doc)), None)
    if error is not None:
        field = "/".join(str(p) for p in error.absolute_path) or None
        raise InvalidEvent(topic, field, error.message)
    bad = bad_id_field(doc)
    if bad is not None:
        raise InvalidEvent(topic, bad, BAD_ID_REASON)
    text = doc.get("text")
    if isinstance(text, str) and LONE_SURROGATE.search(text):
        raise InvalidEvent(topic, "text", "lone surrogate (not encodable as UTF-8)")
    ts = doc.get("ts")
    if isinstance(ts, float) and not math.isfinite(ts):
        raise InvalidEvent(topic, "ts", "not a finite number")
    if name == "follow" and doc["followee_id"] == doc["user_id"]:
        raise InvalidEvent(topic, "followee_id", SELF_FOLLOW)
