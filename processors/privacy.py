"""Pseudonymous user ids at the edge, and dead letters that carry no user id or text.

When ``RIPPLE_PSEUDONYMIZE_KEY`` is set, every user id of a decoded event — ``user_id``, a post's
``author_id``, a follow's ``followee_id`` — is replaced by :func:`pseudonym` before any table,
output topic, metric or log line sees it.  The hash is keyed (HMAC-SHA256, truncated to 128 bits,
32 hex digits) and deterministic, so every join still works: a user's events meet in one
profile, a followee matches the author of their posts, a reply's recipient is the pseudonym of
the parent comment's author.  Without the key the ids cannot be recovered by hashing guessed ids.
A service that needs to address a user computes the same HMAC with the same key.  Producer
``event_id`` values (which often embed a user id) are hashed the same way: de-duplication only
needs equality.  Post and comment ids are kept: consumers of the outputs join on them.

Dead letters would otherwise leak the raw payload; :func:`redact_dead_letter` drops it (the
``topic``/``partition``/``offset`` still point at the source record) and masks quoted values in
the reason.

Examples
--------
>>> from processors.events import decode
>>> p = Pseudonymizer(b"0123456789abcdef")
>>> ev = p(decode("follows", b'{"schema_version": 1, "user_id": "alice", "followee_id": "bob"}', default_ts=0))
>>> ev.user_id == pseudonym(b"0123456789abcdef", "alice"), len(ev.user_id), "alice" in repr(ev)
(True, 32, False)
>>> ev.followee_id == p(decode("posts", b'{"schema_version": 1, "post_id": "p1", "author_id": "bob", "text": "hi"}',
...                            default_ts=0)).author_id
True
>>> redact_reason("schema: user_id: 'alice' is not of type 'integer'")
"schema: user_id: '…' is not of type 'integer'"
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from functools import lru_cache

from processors.events import INPUT_TOPICS, Engagement, Event, Follow, Post, Rejected, schema

#: hex digits kept of the HMAC-SHA256 (128 bits: no collision among any realistic number of users)
PSEUDONYM_HEX = 32
#: the id fields of each event type that name a user
USER_ID_FIELDS = {Post: ("author_id",), Engagement: ("user_id",), Follow: ("user_id", "followee_id")}
_QUOTED = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""")
_JSON_TYPES = frozenset({"string", "integer", "number", "object", "array", "boolean", "null"})


def pseudonym(key: bytes, user_id: str) -> str:
    """``HMAC-SHA256(key, user_id)`` as 32 lower-case hex digits.

    >>> pseudonym(b"0123456789abcdef", "alice")
    'fdbf8b1cacd3d578e062d0e41104357d'
    >>> pseudonym(b"0123456789abcdef", "alice") == pseudonym(b"another key 123456", "alice")
    False
    """
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


class Pseudonymizer:
    """Replaces the user ids of decoded events by their pseudonyms; ``Rejected`` passes through.

    Parameters
    ----------
    key
        The secret HMAC key (``RIPPLE_PSEUDONYMIZE_KEY``); the same key must be used by every
        worker of an app, and changing it starts every user afresh.
    """

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the pseudonymisation key must not be empty")
        self._key = key

    def __repr__(self) -> str:  # never the key
        return "Pseudonymizer(key=***)"

    def user(self, user_id: str) -> str:
        return pseudonym(self._key, user_id)

    def __call__(self, event: Event | Rejected) -> Event | Rejected:
        fields = USER_ID_FIELDS.get(type(event))
        if not fields:
            return event
        changes = {f: self.user(getattr(event, f)) for f in fields}
        if event.event_id is not None:
            changes["event_id"] = self.user(event.event_id)
        return dataclasses.replace(event, **changes)


@lru_cache(maxsize=1)
def _allowed_words() -> frozenset[str]:
    """Quoted words a reason may keep: schema property names and JSON type names."""
    names = {prop for name in INPUT_TOPICS.values() for prop in schema(name)["properties"]}
    return frozenset(names | _JSON_TYPES)


def redact_reason(reason: str) -> str:
    """``reason`` with every quoted value masked, except property and JSON type names and single
    punctuation characters (JSON parser messages quote the delimiter they expected).

    >>> redact_reason("processing error: KeyError: 'u42'")
    "processing error: KeyError: '…'"
    >>> redact_reason("schema: 'schema_version' is a required property")
    "schema: 'schema_version' is a required property"
    >>> redact_reason("schema: {'user_id': 'bob'} is not of type 'string'")
    "schema: {'user_id': '…'} is not of type 'string'"
    """
    allowed = _allowed_words()

    def mask(m: re.Match) -> str:
        q = m.group(0)
        inner = q[1:-1]
        keep = inner in allowed or (len(inner) == 1 and not inner.isalnum())
        return q if keep else f"{q[0]}…{q[0]}"

    return _QUOTED.sub(mask, reason)


def redact_dead_letter(doc: dict) -> dict:
    """A copy of a dead letter without its payload (``raw`` empty, ``raw_truncated`` true when there
    was one) and with its reason redacted; the source position is kept.

    >>> d = redact_dead_letter({"reason": "schema: post_id: 'x' is too long", "raw": '{"user_id": "alice"}',
    ...                         "raw_truncated": False, "topic": "likes", "partition": 0, "offset": 7})
    >>> d["raw"], d["raw_truncated"], d["reason"], d["offset"]
    ('', True, "schema: post_id: '…' is too long", 7)
    """
    out = dict(doc)
    out["raw_truncated"] = bool(doc.get("raw")) or bool(doc.get("raw_truncated"))
    out["raw"] = ""
    out["reason"] = redact_reason(doc.get("reason", ""))
    return out
