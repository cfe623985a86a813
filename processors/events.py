"""The event contract: wire JSON → validated domain dataclasses, errors as data.

Every input topic carries one JSON object per message, validated against the JSON Schema
shipped with the producer client in ``ripple_client/schemas`` (one copy, read by both).
Decoding never raises: it returns either a domain event
or a :class:`Rejected` with a human-readable reason, which the stream layer turns into a
dead letter.

Examples
--------
>>> ev = decode("likes", b'{"schema_version": 1, "user_id": "u1", "post_id": "p1"}', default_ts=5.0)
>>> ev.kind, ev.user_id, ev.post_id, ev.ts
('like', 'u1', 'p1', 5.0)
>>> decode("likes", b'{"user_id": "u1"}', default_ts=0).reason
"schema: 'schema_version' is a required property"
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Union

from jsonschema import Draft202012Validator

from ripple_client.schemas import INPUT_SCHEMAS
from ripple_client.validation import BAD_ID_REASON, ID_FIELDS, LONE_SURROGATE as _SURROGATE, SELF_FOLLOW, bad_id_field

SCHEMA_VERSION = 1

#: logical input topic → schema name
INPUT_TOPICS = INPUT_SCHEMAS
ENGAGEMENT_KINDS = ("like", "comment", "share")


@dataclass(frozen=True, slots=True)
class Post:
    post_id: str
    author_id: str
    text: str
    ts: float
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Engagement:
    """A like, comment or share of ``post_id`` by ``user_id``."""

    kind: str
    user_id: str
    post_id: str
    ts: float
    text: str | None = None
    comment_id: str | None = None
    reply_to: str | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Follow:
    user_id: str
    followee_id: str
    ts: float
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a message could not be accepted (becomes a dead letter)."""

    reason: str


Event = Union[Post, Engagement, Follow]


@lru_cache(maxsize=None)
def schema(name: str) -> dict:
    """The JSON Schema document ``ripple_client/schemas/<name>.json``."""
    from ripple_client.schemas import load_schema

    return load_schema(name)


@lru_cache(maxsize=None)
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name))


@lru_cache(maxsize=None)
def _fast_check(name: str):
    from processors.schema_check import compile_schema

    try:
        return compile_schema(schema(name))
    except ValueError:  # a schema beyond the compiled subset: always ask jsonschema
        return lambda doc: False


def validate(name: str, doc: object) -> str | None:
    """First schema violation of ``doc`` against schema ``name`` as text, or ``None``.

    Valid documents are recognised by a compiled pre-check (microseconds); only a document it
    rejects goes through ``jsonschema``, which words the error.
    """
    if _fast_check(name)(doc):
        return None
    error = next(iter(_validator(name).iter_errors(doc)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"schema: {where + ': ' if where else ''}{error.message}"[:500]


def decode(
    topic: str,
    raw: bytes | str | None,
    *,
    default_ts: float,
    max_text_chars: int = 5000,
    max_bytes: int | None = None,
    max_future_s: float | None = None,
) -> Event | Rejected:
    """Decode one message of logical input ``topic``; never raises.

    Parameters
    ----------
    topic
        Logical topic name (``posts``, ``likes``, ``comments``, ``shares``, ``follows``).
    raw
        The message value as received.
    default_ts
        Event time used when the message has no ``ts`` (normally the Kafka timestamp).
    max_text_chars
        Texts longer than this are rejected rather than silently cut.
    max_bytes
        Larger messages are rejected before they are parsed (``None``: no limit).
    max_future_s
        A ``ts`` more than this many seconds after ``default_ts`` is rejected (``None``: no limit).
        Older, out-of-order timestamps are accepted.

    Besides the schema, the decoder rejects what JSON Schema cannot express: ``NaN`` and
    ``Infinity``, timestamps too large for a float, nesting too deep to parse, ids with
    control characters and strings with lone surrogates (they cannot be encoded as UTF-8).

    >>> decode("likes", b'{"schema_version": 1, "user_id": "u1", "post_id": "p1", "ts": NaN}', default_ts=0).reason
    'invalid JSON: NaN is not a number'
    >>> decode("likes", b'{"schema_version": 1, "user_id": "u\\\\u0000", "post_id": "p1"}', default_ts=0).reason
    'user_id: control character or lone surrogate in an id'
    """
    name = INPUT_TOPICS.get(topic)
    if name is None:
        return Rejected(f"unknown topic {topic!r}")
    if raw is None:
        return Rejected("empty message (tombstone)")
    if max_bytes is not None and len(raw) > max_bytes:
        return Rejected(f"message too large: {len(raw)} > {max_bytes} bytes")
    try:
        doc = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        return Rejected("invalid JSON: nested too deeply")
    except (ValueError, UnicodeDecodeError) as exc:
        return Rejected(f"invalid JSON: {exc}"[:300])
    problem = validate(name, doc)
    if problem:
        return Rejected(problem)
    # only fields the schema declares are read: unknown extra fields are ignored, whatever their type
    doc = {k: v for k, v in doc.items() if k in _declared(name)}
    bad = bad_id_field(doc)
    if bad is not None:
        return Rejected(f"{bad}: {BAD_ID_REASON}")
    text = doc.get("text")
    if text is not None and len(text) > max_text_chars:
        return Rejected(f"text too long: {len(text)} > {max_text_chars} characters")
    if text is not None and _SURROGATE.search(text):
        return Rejected("text: lone surrogate (not encodable as UTF-8)")
    try:
        ts = float(doc.get("ts", default_ts))
    except OverflowError:
        return Rejected("ts: out of range")
    if not math.isfinite(ts):
        return Rejected("ts: not a finite number")
    if max_future_s is not None and ts > default_ts + max_future_s:
        return Rejected(f"ts: {ts - default_ts:.0f} s after the message timestamp (limit {max_future_s:g} s)"[:300])
    event_id = doc.get("event_id")
    if name == "post":
        return Post(doc["post_id"], doc["author_id"], text, ts, event_id)
    if name == "follow":
        if doc["followee_id"] == doc["user_id"]:
            return Rejected(SELF_FOLLOW)
        return Follow(doc["user_id"], doc["followee_id"], ts, event_id)
    return Engagement(
        kind=name,
        user_id=doc["user_id"],
        post_id=doc["post_id"],
        ts=ts,
        text=text,
        comment_id=doc.get("comment_id"),
        reply_to=doc.get("reply_to"),
        event_id=event_id,
    )


@lru_cache(maxsize=None)
def _declared(name: str) -> frozenset[str]:
    return frozenset(schema(name)["properties"])


def _reject_constant(name: str):
    raise ValueError(f"{name.lstrip('-')} is not a number")


def dead_letter(reason: str, topic: str, partition: int, offset: int, raw: bytes | None, *, now: float, max_raw: int) -> dict:
    """The dead-letter document for a rejected message (see ``schemas/dead_letter.json``)."""
    data = raw if isinstance(raw, bytes) else (raw or "").encode("utf-8", errors="replace")
    return {
        "schema_version": SCHEMA_VERSION,
        "reason": reason.encode("utf-8", errors="replace").decode("utf-8"),
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "raw": data[:max_raw].decode("utf-8", errors="replace"),
        "raw_truncated": len(data) > max_raw,
        "received_at": now,
    }
