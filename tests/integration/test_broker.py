"""The local Apache Kafka 4.x broker works with aiokafka: topics, groups, transactions, restart."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devtools.local_kafka import metadata_brokers
from streams.topics import create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


async def read(bootstrap: str, topic: str, n: int, *, group_id: str | None = None,
               isolation_level: str = "read_uncommitted", timeout_s: float = 20.0, settle_s: float = 0.5):
    """Read ``topic`` from the start until ``n`` records arrived, then ``settle_s`` more (extras)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group_id, auto_offset_reset="earliest",
                                enable_auto_commit=False, isolation_level=isolation_level)
    await consumer.start()
    out = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(records)
        settle = time.monotonic() + settle_s
        while time.monotonic() < settle:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                out.extend(records)
        if group_id is not None:
            await consumer.commit()
    finally:
        await consumer.stop()
    return out


async def committed_total(bootstrap: str, topic: str, group_id: str, partitions: int) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False)
    await consumer.start()
    try:
        return sum([await consumer.committed(TopicPartition(topic, p)) or 0 for p in range(partitions)])
    finally:
        await consumer.stop()


def test_broker_serves_metadata(kafka_broker):
    assert kafka_broker.running
    assert metadata_brokers("127.0.0.1", kafka_broker.port) == [(1, "127.0.0.1", kafka_broker.port)]
    assert kafka_broker.bootstrap == f"127.0.0.1:{kafka_broker.port}"


def test_create_topics_ignores_existing(bootstrap, topic_prefix):
    names = [topic_prefix + "a", topic_prefix + "b"]
    assert asyncio.run(create_topics(bootstrap, names, partitions=3)) == names
    assert asyncio.run(create_topics(bootstrap, [*names, topic_prefix + "c"], partitions=3)) == [topic_prefix + "c"]


def test_json_round_trip_exact(bootstrap, topic_prefix):
    topic = topic_prefix + "events"
    asyncio.run(create_topics(bootstrap, [topic], partitions=3))
    sent = [{"schema_version": 1, "user_id": f"u{i % 7}", "seq": i, "text": f"post number {i} ✓"} for i in range(100)]

    async def produce():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            for doc in sent:
                await producer.send(topic, json.dumps(doc).encode(), key=doc["user_id"].encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce())
    records = asyncio.run(read(bootstrap, topic, 100, group_id=topic_prefix + "g"))
    got = [json.loads(r.value) for r in records]
    assert len(got) == 100
    assert sorted(got, key=lambda d: d["seq"]) == sent
    for user in {d["user_id"] for d in sent}:  # one key → one partition → order kept
        assert [d["seq"] for d in got if d["user_id"] == user] == [d["seq"] for d in sent if d["user_id"] == user]
    assert all(r.key.decode() == json.loads(r.value)["user_id"] for r in records)
    assert asyncio.run(committed_total(bootstrap, topic, topic_prefix + "g", 3)) == 100


def test_transactions_commit_abort_and_offsets(bootstrap, topic_prefix):
    """What Faust's exactly-once needs: commit/abort, and consumer offsets committed inside a transaction."""
    source, sink, group = topic_prefix + "in", topic_prefix + "out", topic_prefix + "eos"
    asyncio.run(create_topics(bootstrap, [source, sink], partitions=1))

    async def scenario():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=topic_prefix + "tx")
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(10):
                    await producer.send(source, json.dumps({"n": i}).encode())
            await producer.begin_transaction()
            for i in range(5):
                await producer.send(source, json.dumps({"n": 100 + i}).encode())
            await producer.abort_transaction()
            async with producer.transaction():  # consume-transform-produce with offsets in the transaction
                for i in range(10):
                    await producer.send(sink, json.dumps({"double": 2 * i}).encode())
                await producer.send_offsets_to_transaction({TopicPartition(source, 0): 15}, group)
        finally:
            await producer.stop()

    asyncio.run(scenario())
    committed = asyncio.run(read(bootstrap, source, 10, isolation_level="read_committed"))
    assert [json.loads(r.value)["n"] for r in committed] == list(range(10))
    everything = asyncio.run(read(bootstrap, source, 15, isolation_level="read_uncommitted"))
    assert sorted(json.loads(r.value)["n"] for r in everything) == [*range(10), *range(100, 105)]
    out = asyncio.run(read(bootstrap, sink, 10, isolation_level="read_committed"))
    assert [json.loads(r.value)["double"] for r in out] == [2 * i for i in range(10)]
    assert asyncio.run(committed_total(bootstrap, source, group, 1)) == 15


def test_restart_keeps_ports_and_data(kafka_broker, topic_prefix):
    topic = topic_prefix + "durable"
    bootstrap = kafka_broker.bootstrap

    async def produce():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(20):
                await producer.send(topic, json.dumps({"i": i}).encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(create_topics(bootstrap, [topic], partitions=1))
    asyncio.run(produce())
    kafka_broker.restart()
    assert kafka_broker.bootstrap == bootstrap
    assert [json.loads(r.value)["i"] for r in asyncio.run(read(bootstrap, topic, 20))] == list(range(20))
