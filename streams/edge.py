"""Input records at the edge of the pipeline: decoded as the pipeline sees them, or dead-lettered.

:class:`EdgeDecoder` turns a record's bytes into a domain event (or a
:class:`processors.events.Rejected`) with the configured limits, user ids pseudonymised when
``RIPPLE_PSEUDONYMIZE_KEY`` is set.  :class:`DeadLetters` builds the dead letter of a record:
reason, source position and (unless ids are pseudonymised) the truncated payload; it counts
and logs it by position and reason category, never by payload.
"""

from __future__ import annotations

import logging
import time

from processors.events import Engagement, Follow, Rejected, decode, dead_letter
from processors.privacy import Pseudonymizer, redact_dead_letter
from ripple.settings import Settings
from streams import metrics

log = logging.getLogger("ripple.worker")


NO_KEY = object()  # decode() called without a record key: not checked
MIS_KEYED = "mis-keyed: the record key is not the event's user_id (engagements must be keyed by user_id)"


def pseudonymizer_for(settings: Settings) -> Pseudonymizer | None:
    key = settings.pseudonymize_key
    return Pseudonymizer(key.get_secret_value().encode("utf-8")) if key is not None else None


class EdgeDecoder:
    """``decode(topic, value, default_ts, key)``: the event of a record of logical ``topic``.

    With ``key`` given (the engagement engine gives it), an engagement or follow whose record key
    is not its ``user_id`` is rejected: a producer that keys otherwise spreads one user's events
    over partitions, and so over profiles that cannot both be right.
    """

    def __init__(self, settings: Settings):
        self.limits = {"max_text_chars": settings.max_text_chars, "max_bytes": settings.max_message_bytes,
                       "max_future_s": settings.max_future_s}
        self.pseudonymizer = pseudonymizer_for(settings)

    def decode(self, topic: str, value: bytes | None, default_ts: float, key: bytes | None = NO_KEY):
        ev = decode(topic, value, default_ts=default_ts, **self.limits)
        if isinstance(ev, Rejected):
            return ev
        if key is not NO_KEY and isinstance(ev, (Engagement, Follow)) and key != ev.user_id.encode("utf-8"):
            return Rejected(MIS_KEYED)
        return ev if self.pseudonymizer is None else self.pseudonymizer(ev)


class DeadLetters:
    """Dead-letter documents of records (anything with ``topic``, ``partition``, ``offset``)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.redact = settings.pseudonymize_key is not None  # the raw payload holds user ids

    def document(self, record, raw: bytes | None, reason: str) -> dict:
        doc = dead_letter(reason, record.topic, record.partition, record.offset, raw,
                          now=time.time(), max_raw=self.settings.dead_letter_raw_bytes)
        if self.redact:
            doc = redact_dead_letter(doc)
        category = metrics.record_dead_letter(self.settings.logical_topic(record.topic), reason)
        log.warning("dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset, category)
        return doc
