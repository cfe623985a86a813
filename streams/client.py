"""Plain aiokafka helpers for producers and consumers outside the worker (demo, tests, bench), the
agents' re-read of skipped offsets (:func:`read_offsets`) and the engagement engine's read-back of its
profiles (:func:`latest_values`).  Topic administration is in :mod:`streams.topics`.

Every helper passes ``client_kwargs`` to the aiokafka client as they are: the security settings
from :func:`streams.security.kafka_client_kwargs` (empty for PLAINTEXT).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def produce(bootstrap: str, events: Iterable[dict], prefix: str = "", *, linger_ms: int = 5,
                  **client_kwargs) -> int:
    """Send ``{"topic", "key", "value"}`` events (value: dict → JSON, or raw bytes) in order."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=linger_ms, acks="all", **client_kwargs)
    n = 0
    try:
        await producer.start()
        for ev in events:
            value = ev["value"] if isinstance(ev["value"], bytes) else json.dumps(ev["value"]).encode()
            key = ev.get("key")
            await producer.send(prefix + ev["topic"], value=value, key=key.encode() if isinstance(key, str) else key)
            n += 1
        await producer.flush()
    finally:
        await producer.stop()
    return n


async def consume(bootstrap: str, topic: str, *, until, timeout_s: float = 60.0, settle_s: float = 0.0,
                  **client_kwargs) -> list[dict]:
    """Read JSON messages of ``topic`` from the start until ``until(messages)`` holds.

    After ``until`` first holds, keep reading for ``settle_s`` more seconds (late messages).
    Returns what was read when the condition held, or everything read by ``timeout_s``.
    """
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None, **client_kwargs)
    await consumer.start()
    out: list[dict] = []
    deadline = time.monotonic() + timeout_s
    settled_at = None
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    doc = json.loads(r.value)
                    doc["_meta"] = {"partition": r.partition, "offset": r.offset, "key": r.key.decode() if r.key else None}
                    out.append(doc)
            if settled_at is None and until(out):
                settled_at = time.monotonic()
            if settled_at is not None and time.monotonic() - settled_at >= settle_s:
                break
    finally:
        await consumer.stop()
    return out


def run(coro):
    return asyncio.run(coro)


async def read_offsets(bootstrap: str, topic: str, partition: int, start: int, end: int, *,
                       isolation_level: str = "read_uncommitted", timeout_s: float = 10.0, **client_kwargs) -> list:
    """The records of ``topic[partition]`` at offsets ``start`` ≤ offset < ``end`` (aiokafka
    ``ConsumerRecord``s; fewer where offsets hold transaction markers or were deleted)."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level=isolation_level, **client_kwargs)
    await consumer.start()
    out: list = []
    try:
        consumer.assign([tp])
        consumer.seek(tp, start)
        deadline = time.monotonic() + timeout_s
        while await consumer.position(tp) < end and time.monotonic() < deadline:
            for r in (await consumer.getmany(tp, timeout_ms=500, max_records=end - start)).get(tp, []):
                if start <= r.offset < end:
                    out.append(r)
    finally:
        await consumer.stop()
    return out


async def latest_values(bootstrap: str, topic: str, partitions: Iterable[int], **client_kwargs) -> dict[str, bytes | None]:
    """The newest value of every key in ``partitions`` of compacted ``topic``, read from the
    beginning to the end offsets at the start (committed records only; ``None``: a tombstone).
    Keys are decoded as UTF-8 exactly as written (a record without a key is skipped)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", **client_kwargs)
    await consumer.start()
    latest: dict[str, bytes | None] = {}
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                for r in records:
                    if r.key is not None:
                        latest[r.key.decode("utf-8", "replace")] = r.value or None
    finally:
        await consumer.stop()
    return latest
