"""The Kafka plumbing of ``ripple bench`` (:mod:`devtools.bench`): write its inputs fast, read
outputs back, and wait, without taking CPU from the worker, until a consumer group has processed
everything written so far.

Every helper passes ``client_kwargs`` to the aiokafka client as they are: the security settings
from :func:`streams.security.kafka_client_kwargs` (empty for PLAINTEXT).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streams.topics import partition_counts


async def produce_fast(bootstrap: str, events: list[dict], prefix: str, **client_kwargs) -> None:
    """Send ``{"topic", "key", "value"}`` events (value: a dict, sent as JSON) in large batches."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=256 * 1024, **client_kwargs)
    await producer.start()
    try:
        for ev in events:
            await producer.send(prefix + ev["topic"], json.dumps(ev["value"]).encode(), key=ev["key"].encode())
        await producer.flush()
    finally:
        await producer.stop()


async def read_until(bootstrap: str, topic: str, done, timeout_s: float, **client_kwargs) -> list:
    """Records of ``topic`` from the start until ``done(records)`` holds or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while not await partition_counts(bootstrap, [topic], **client_kwargs):  # created by the worker; never auto-create it
        if time.monotonic() > deadline:
            return []
        await asyncio.sleep(0.5)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                                **client_kwargs)
    await consumer.start()
    out: list = []
    try:
        while not done(out) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


async def wait_committed(bootstrap: str, group: str, topics: Iterable[str], *, timeout_s: float,
                         alive: Callable[[], bool] = lambda: True, poll_s: float = 0.5, **client_kwargs) -> bool:
    """Wait until consumer group ``group`` has committed, on every partition of ``topics``, the
    end offset that partition had when this was called: everything written so far was processed.
    False when ``timeout_s`` passes or ``alive()`` turns false first.  It only polls the group's
    offsets (one request per ``poll_s``), so it takes next to no CPU from what it waits for."""
    from aiokafka.admin import AIOKafkaAdminClient

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **client_kwargs)
    await consumer.start()
    try:
        counts = await partition_counts(bootstrap, topics, **client_kwargs)
        ends = await consumer.end_offsets([TopicPartition(t, p) for t, n in counts.items() for p in range(n)])
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs)
    await admin.start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and alive():
            try:
                got = await admin.list_consumer_group_offsets(group)
            except KafkaError as exc:  # e.g. no coordinator yet: the group's first commit makes one
                if not exc.retriable:
                    raise
                got = {}
            if all(end == 0 or (tp in got and got[tp].offset >= end) for tp, end in ends.items()):
                return True
            await asyncio.sleep(poll_s)
    finally:
        await admin.close()
    return False
