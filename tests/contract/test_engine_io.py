"""One contract suite for the engine's Kafka I/O, run against the in-memory adapter
(:class:`streams.memory_broker.MemoryIO`, milliseconds) and aiokafka on the real local broker
(:class:`streams.engine_io.KafkaIO`): what the engine relies on holds for both."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from ripple.settings import Settings
from streams.engine_io import KafkaIO
from streams.memory_broker import MemoryBroker, MemoryIO

PARTITIONS = 2


class Backend:
    """An ``io`` plus the two things a test needs around it: topic creation and a clean name."""

    def __init__(self, io, create):
        self.io, self.create = io, create

    async def topic(self, partitions: int = PARTITIONS) -> str:
        name = f"contract-{uuid.uuid4().hex[:8]}"
        await self.create(name, partitions)
        return name


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def backend(request) -> Backend:
    if request.param == "memory":
        broker = MemoryBroker()

        async def create(name, partitions):
            broker.create_topic(name, partitions)
        return Backend(MemoryIO(broker), create)
    bootstrap = request.getfixturevalue("bootstrap")
    from streams.topics import create_topics

    async def create(name, partitions):
        await create_topics(bootstrap, [name], partitions=partitions)
    return Backend(KafkaIO(Settings(broker=bootstrap)), create)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def _send(producer, topic, values, partition=0, key=b"k"):
    acks = [await producer.send(topic, v, key=key, partition=partition) for v in values]
    return [await a for a in acks]


async def _read(io, topic, partitions=range(PARTITIONS), *, isolation_level="read_uncommitted", want=None):
    """Every record of ``topic`` (``want``: stop once this many came)."""
    consumer = io.consumer(group_id=None, enable_auto_commit=False, isolation_level=isolation_level)
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    out, idle = [], 0
    try:
        while idle < 3 and (want is None or len(out) < want):
            got = await consumer.getmany(timeout_ms=300)
            idle = 0 if got else idle + 1
            out += [r for records in got.values() for r in records]
    finally:
        await consumer.stop()
    return sorted(out, key=lambda r: (r.partition, r.offset))


async def _poll_until(consumer, done, limit=50):
    out = []
    for _ in range(limit):
        out += [r for records in (await consumer.getmany(timeout_ms=200)).values() for r in records]
        if done(out):
            return out
    raise AssertionError(f"condition not met after {limit} polls; got {len(out)} records")


def test_a_group_resumes_from_its_committed_offset(backend):
    async def case():
        topic = await backend.topic(1)
        producer = backend.io.producer()
        await producer.start()
        await _send(producer, topic, [b"%d" % i for i in range(5)])
        await producer.stop()
        group, tp = f"g-{uuid.uuid4().hex[:6]}", TopicPartition(topic, 0)
        first = backend.io.consumer(group_id=group, enable_auto_commit=False, auto_offset_reset="earliest")
        await first.start()
        first.subscribe([topic])
        await _poll_until(first, lambda rs: len(rs) >= 5)
        await first.commit({tp: 3})
        await first.stop()
        second = backend.io.consumer(group_id=group, enable_auto_commit=False, auto_offset_reset="earliest")
        await second.start()
        second.subscribe([topic])
        got = await _poll_until(second, lambda rs: len(rs) >= 2)
        committed = await second.committed(tp)
        await second.stop()
        return committed, [r.offset for r in got]

    assert run(case()) == (3, [3, 4])


def test_an_aborted_transaction_is_invisible_to_read_committed_and_its_offsets_never_commit(backend):
    async def case():
        topic, out = await backend.topic(1), await backend.topic(1)
        group = f"g-{uuid.uuid4().hex[:6]}"
        producer = backend.io.producer(transactional_id=f"t-{uuid.uuid4().hex[:6]}", enable_idempotence=True)
        await producer.start()
        tp = TopicPartition(topic, 0)
        async with producer.transaction():
            await _send(producer, out, [b"committed"])
            await producer.send_offsets_to_transaction({tp: 7}, group)
        with pytest.raises(RuntimeError):
            async with producer.transaction():
                await _send(producer, out, [b"aborted"])
                await producer.send_offsets_to_transaction({tp: 9}, group)
                raise RuntimeError("the batch failed")
        await producer.stop()
        committed = [r.value for r in await _read(backend.io, out, [0], isolation_level="read_committed")]
        everything = [r.value for r in await _read(backend.io, out, [0], want=2)]
        consumer = backend.io.consumer(group_id=group, enable_auto_commit=False)
        await consumer.start()
        offset = await consumer.committed(tp)
        await consumer.stop()
        return committed, everything, offset

    committed, everything, offset = run(case())
    assert committed == [b"committed"]
    assert everything == [b"committed", b"aborted"]  # written, but aborted
    assert offset == 7


def test_a_second_producer_with_the_same_transactional_id_fences_the_first(backend):
    async def case():
        out = await backend.topic(1)
        txn_id = f"t-{uuid.uuid4().hex[:6]}"
        old = backend.io.producer(transactional_id=txn_id, enable_idempotence=True)
        await old.start()
        await old.begin_transaction()
        await _send(old, out, [b"zombie"])
        new = backend.io.producer(transactional_id=txn_id, enable_idempotence=True)
        await new.start()  # aborts the open transaction and bumps the epoch
        with pytest.raises(KafkaError):
            await old.commit_transaction()
        async with new.transaction():
            await _send(new, out, [b"heir"])
        await new.stop()
        with contextlib.suppress(KafkaError):  # a fenced producer may or may not complain on the way out
            await old.stop()
        return [r.value for r in await _read(backend.io, out, [0], isolation_level="read_committed")]

    assert run(case()) == [b"heir"]


def test_latest_values_keep_the_newest_committed_value_per_key_and_honour_tombstones(backend):
    async def case():
        topic = await backend.topic()
        producer = backend.io.producer()
        await producer.start()
        await _send(producer, topic, [b"1", b"2"], partition=0, key=b"a")
        await _send(producer, topic, [b"x", None], partition=1, key=b"b")
        await _send(producer, topic, [b"c1"], partition=1, key=b'"quoted"')
        await producer.stop()
        txn = backend.io.producer(transactional_id=f"t-{uuid.uuid4().hex[:6]}", enable_idempotence=True)
        await txn.start()
        with pytest.raises(RuntimeError):
            async with txn.transaction():
                await _send(txn, topic, [b"aborted"], partition=0, key=b"a")
                raise RuntimeError
        await txn.stop()
        return await backend.io.latest_values(topic, [0, 1])

    latest = run(case())
    assert latest["a"] == b"2" and latest["b"] is None
    assert latest['"quoted"'] == b"c1"  # a key is the key's bytes, whatever they hold


def test_a_joining_member_gets_partitions_only_after_the_first_revoked_them(backend):
    events: list[tuple[str, str, frozenset]] = []

    class Listener(ConsumerRebalanceListener):
        def __init__(self, name):
            self.name = name

        async def on_partitions_revoked(self, revoked):
            events.append((self.name, "revoked", frozenset(tp.partition for tp in revoked)))

        async def on_partitions_assigned(self, assigned):
            events.append((self.name, "assigned", frozenset(tp.partition for tp in assigned)))

    async def case():
        topic = await backend.topic()
        group = f"g-{uuid.uuid4().hex[:6]}"

        def member(name):
            consumer = backend.io.consumer(group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
                                           session_timeout_ms=10_000, heartbeat_interval_ms=500)
            return consumer, Listener(name)
        a, la = member("a")
        await a.start()
        a.subscribe([topic], listener=la)
        for _ in range(50):
            await a.getmany(timeout_ms=100)
            if a.assignment():
                break
        b, lb = member("b")
        await b.start()
        b.subscribe([topic], listener=lb)
        for _ in range(100):
            await asyncio.gather(a.getmany(timeout_ms=100), b.getmany(timeout_ms=100))
            if a.assignment() and b.assignment():
                break
        assignments = ({tp.partition for tp in a.assignment()}, {tp.partition for tp in b.assignment()})
        await b.stop()
        await a.stop()
        return assignments

    got_a, got_b = run(case())
    assert got_a | got_b == set(range(PARTITIONS)) and not got_a & got_b
    first_a_revoke = events.index(next(e for e in events if e[:2] == ("a", "revoked") and e[2]))
    b_assigned = events.index(next(e for e in events if e[:2] == ("b", "assigned") and e[2]))
    assert first_a_revoke < b_assigned, events


def test_model_sync_catches_up_when_a_snapshot_transaction_wrote_last(backend):
    """A snapshot sends its worker's deltas inside its transaction, so the model-sync topic can
    end in a commit marker that a read_committed reader never gets as a record: a worker
    starting after it must still catch up (and count those deltas once)."""
    import numpy as np

    from processors.events import Engagement, Post
    from processors.item_state import ItemState
    from processors.profiles import UserProfile
    from processors.recommender import Recommender, RecommenderConfig
    from streams.model_sync import ModelSync

    def recommender():
        rec = Recommender(dim=2, config=RecommenderConfig(negatives=0), clock=lambda: 100.0)
        rec.on_posts([Post("p1", "a", "", 0.0), Post("p2", "b", "", 0.0)], np.eye(2, dtype=np.float32))
        return rec

    async def scenario():
        sync_t, state_t = await backend.topic(1), await backend.topic(1)
        writer_rec = recommender()
        writer = ModelSync(backend.io, [ItemState(writer_rec)], sync_t, state_t, 1, interval_s=0.1,
                           snapshot_interval_s=0.1, transactional_id=f"{state_t}-txn")
        writer.producer = backend.io.producer()
        await writer.producer.start()
        u = UserProfile("u1")
        for post in ("p1", "p2", "p1"):
            writer_rec.on_engagement(Engagement("like", "u1", post, ts=50.0), u)
        await writer.snapshot()  # the last thing in the model-sync topic: a transactional delta
        await writer.producer.stop()
        reader_rec = recommender()
        reader = ModelSync(backend.io, [ItemState(reader_rec)], sync_t, state_t, 1, interval_s=0.1,
                           snapshot_interval_s=60.0)
        task = asyncio.ensure_future(reader.run())
        try:
            await asyncio.wait_for(reader.caught_up.wait(), 20)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return writer_rec, reader_rec

    writer_rec, reader_rec = run(scenario())
    assert reader_rec.coengagement.item_state("p1") == writer_rec.coengagement.item_state("p1")
    assert reader_rec.catalog.popularity_state("p1") == writer_rec.catalog.popularity_state("p1")
