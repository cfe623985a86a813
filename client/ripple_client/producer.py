"""Synchronous producer for Python back-ends (kafka-python): typed events, checked before they
are sent, keyed by ``user_id`` (posts by ``post_id``), with the delivery result returned.

    from ripple_client import RippleProducer

    with RippleProducer("kafka:9092") as ripple:
        ripple.like("u1", "p9")                 # -> Delivery(topic='likes', partition=2, offset=41, ...)
        ripple.comment("u2", "p9", "c7", "Nice run!", reply_to="c3")
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ripple_client import events
from ripple_client.events import OutgoingEvent, TypedEvents


@dataclass(frozen=True)
class Delivery:
    """Where an event landed: full topic name, partition, offset, and its ``event_id``."""

    topic: str
    partition: int
    offset: int
    event_id: str


def encode(ev: OutgoingEvent) -> tuple[bytes, bytes]:
    """(key, value) bytes of an event: UTF-8 key, compact UTF-8 JSON value."""
    return ev.key.encode("utf-8"), json.dumps(ev.value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class RippleProducer(TypedEvents):
    """Sends checked events to Ripple's input topics.

    ``bootstrap_servers``: Kafka bootstrap servers; ``topic_prefix``: as the worker's
    ``RIPPLE_TOPIC_PREFIX``; ``timeout_s``: how long a send waits for its delivery result;
    other keyword arguments go to :class:`kafka.KafkaProducer` (``security_protocol``,
    ``sasl_mechanism``, ``sasl_plain_username``, ``ssl_context``, ...).  An invalid event raises
    :class:`ripple_client.InvalidEvent` before anything is sent.
    """

    def __init__(self, bootstrap_servers: str = "127.0.0.1:9092", *, topic_prefix: str = "", timeout_s: float = 30.0,
                 **kafka_kwargs):
        from kafka import KafkaProducer

        self.topic_prefix, self.timeout_s = topic_prefix, timeout_s
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", **kafka_kwargs)

    def send_event(self, ev: OutgoingEvent, *, wait: bool = True) -> Delivery | None:
        """Send one checked event; with ``wait`` block until the broker has it and return where."""
        key, value = encode(ev)
        future = self._producer.send(self.topic_prefix + ev.topic, key=key, value=value)
        if not wait:
            return None
        meta = future.get(timeout=self.timeout_s)
        return Delivery(meta.topic, meta.partition, meta.offset, ev.value["event_id"])

    def send(self, topic: str, doc: dict, *, wait: bool = True) -> Delivery | None:
        """Check and send a whole document of input ``topic`` (``likes``, ``posts``, ...)."""
        return self.send_event(events.event(topic, doc), wait=wait)

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(timeout=timeout_s if timeout_s is not None else self.timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=self.timeout_s)

    def __enter__(self) -> "RippleProducer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
