"""``ripple produce``: JSON-lines events from a file or stdin, checked by the producer client
(:mod:`ripple_client`) and sent keyed as the schemas say."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from typing import IO, Iterator

from ripple.settings import Settings
from ripple_client.events import OutgoingEvent, event
from ripple_client.validation import InvalidEvent


def checked_lines(lines: IO[str], topic: str | None) -> Iterator[tuple[int, OutgoingEvent | str]]:
    """``(line number, event)`` for each valid line, ``(line number, why)`` for each invalid
    one; blank lines are skipped.

    >>> import io
    >>> for n, ev in checked_lines(io.StringIO('{"user_id": "u1", "post_id": "p1"}\\n\\n{"user_id": "u1"}\\nnope\\n'), "likes"):
    ...     print(n, ev if isinstance(ev, str) else ev.key)
    1 u1
    3 likes: 'post_id' is a required property
    4 not JSON: Expecting value
    """
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as exc:
            yield n, f"not JSON: {str(exc).split(':')[0]}"
            continue
        try:
            if topic is None:
                if not isinstance(doc, dict) or not isinstance(doc.get("topic"), str) or "value" not in doc:
                    yield n, 'without --topic a line is {"topic": ..., "value": {...}}'
                    continue
                yield n, event(doc["topic"], doc["value"])
            else:
                yield n, event(topic, doc)
        except InvalidEvent as exc:
            yield n, str(exc)


def produce_lines(settings: Settings, path: str, topic: str | None) -> int:
    """Send the valid lines of ``path`` (``-``: stdin); 0 when every line was valid, 1 otherwise."""
    from ripple_client.producer import RippleProducer
    from streams.security import kafka_client_kwargs

    try:
        producer = RippleProducer(settings.broker, topic_prefix=settings.topic_prefix, max_block_ms=15_000,
                                  **kafka_client_kwargs(settings))
    except Exception as exc:  # kafka-python's NoBrokersAvailable and friends
        print(f"ripple produce: cannot reach Kafka at {settings.broker}: {type(exc).__name__}", file=sys.stderr)
        return 1
    from kafka.errors import KafkaError

    try:
        sent, invalid = _send(producer, path, topic)
    except KafkaError as exc:  # e.g. a topic that does not exist (metadata never arrives)
        print(f"ripple produce: {type(exc).__name__}: {exc}; do the topics exist (a worker creates them)?",
              file=sys.stderr)
        return 1
    print(f"sent {sent} events to {settings.broker}" + (f"; {invalid} invalid lines skipped" if invalid else ""))
    return 1 if invalid else 0


def _send(producer, path: str, topic: str | None) -> tuple[int, int]:
    sent = invalid = 0
    with producer, (nullcontext(sys.stdin) if path == "-" else open(path, encoding="utf-8")) as lines:
        for n, ev in checked_lines(lines, topic):
            if isinstance(ev, str):
                invalid += 1
                print(f"ripple produce: line {n}: {ev}", file=sys.stderr)
            else:
                producer.send_event(ev, wait=False)
                sent += 1
        producer.flush()
    return sent, invalid
