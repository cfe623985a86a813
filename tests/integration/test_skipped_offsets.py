"""The engage agent's guard against offsets the Faust consumer skipped (re-read from the broker)."""

import asyncio
import json
import socket
from types import SimpleNamespace

from ripple.settings import Settings
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.agents import _seed_expected_offsets, _skipped_before, _with_skipped
from streams.broker import create_topics
from streams.client import produce, read_offsets


def _event(topic: str, partition: int, offset: int):
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset))


def test_a_skipped_range_is_re_read_in_order_and_nothing_else(bootstrap, topic_prefix, tmp_path):
    topic = f"{topic_prefix}likes"
    asyncio.run(create_topics(bootstrap, [topic], partitions=1))
    docs = [{"schema_version": 1, "user_id": "u", "post_id": f"p{i}"} for i in range(10)]
    asyncio.run(produce(bootstrap, [{"topic": topic, "key": "u", "value": d} for d in docs]))
    rt = SimpleNamespace(settings=Settings(broker=bootstrap, home=tmp_path), expected_offsets={}, stats={})

    async def seen(offset: int) -> list[int]:
        return [r.message.offset for r in await _skipped_before(rt, _event(topic, 0, offset))]

    assert asyncio.run(seen(2)) == []  # first offset after an assignment: nothing to compare with
    assert asyncio.run(seen(3)) == []
    refetched = asyncio.run(_skipped_before(rt, _event(topic, 0, 7)))  # 4, 5, 6 never came
    assert [r.message.offset for r in refetched] == [4, 5, 6]
    assert [json.loads(r.value)["post_id"] for r in refetched] == ["p4", "p5", "p6"]
    assert all(r.message.topic == topic and r.message.partition == 0 and r.message.timestamp > 1e9 for r in refetched)
    assert asyncio.run(seen(5)) == []  # an earlier offset delivered late is not a gap
    assert asyncio.run(seen(8)) == []  # the expected offset moved past 7, not back to 6
    assert rt.stats["refetched"] == 3
    rt.expected_offsets.clear()  # after a revocation the next assignment starts afresh
    assert asyncio.run(seen(9)) == []


def _runtime(bootstrap: str, tmp_path, topic: str, group: str):
    consumer = SimpleNamespace(assignment=lambda: {TopicPartition(topic, 0), TopicPartition(topic, 1),
                                                   TopicPartition("elsewhere", 0)})
    topics = {"engagements": SimpleNamespace(topics=(topic, "other")), "comments": SimpleNamespace(topics=(topic,)),
              "posts": SimpleNamespace(topics=("posts",))}
    return SimpleNamespace(settings=Settings(broker=bootstrap, home=tmp_path), expected_offsets={}, stats={},
                           topics=topics,
                           app=SimpleNamespace(conf=SimpleNamespace(id=group), consumer=consumer))


async def _commit(bootstrap: str, group: str, topic: str, partition: int, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, partition)])
        await consumer.commit({TopicPartition(topic, partition): offset})
    finally:
        await consumer.stop()


def test_the_first_offset_after_an_assignment_is_checked_against_the_committed_offset(bootstrap, topic_prefix, tmp_path):
    topic, group = f"{topic_prefix}shares", f"{topic_prefix}group"
    asyncio.run(create_topics(bootstrap, [topic], partitions=2))
    docs = [{"schema_version": 1, "user_id": "u", "post_id": f"p{i}"} for i in range(8)]
    asyncio.run(produce(bootstrap, [{"topic": topic, "key": "u", "value": d} for d in docs]))  # key u: one partition
    partition = 0 if asyncio.run(read_offsets(bootstrap, topic, 0, 0, 1, timeout_s=2)) else 1
    asyncio.run(_commit(bootstrap, group, topic, partition, 3))
    rt = _runtime(bootstrap, tmp_path, topic, group)
    asyncio.run(_seed_expected_offsets(rt))
    # only the input topics of the assignment, only partitions the group committed, once per agent
    assert rt.expected_offsets == {("engage", topic, partition): 3, ("suggest_replies", topic, partition): 3}
    refetched = asyncio.run(_skipped_before(rt, _event(topic, partition, 5)))  # 3 and 4 never came
    assert [json.loads(r.value)["post_id"] for r in refetched] == ["p3", "p4"]
    # each agent has its own stream: what one of them saw says nothing about the other
    both = asyncio.run(_with_skipped(rt, "suggest_replies", [_event(topic, partition, 4), _event(topic, partition, 6)]))
    assert [e.message.offset for e in both] == [3, 4, 5, 6]


def test_seeding_fails_quietly_when_the_broker_cannot_be_reached(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    rt = _runtime(f"127.0.0.1:{port}", tmp_path, "likes", "g")
    asyncio.run(asyncio.wait_for(_seed_expected_offsets(rt), 30))
    assert rt.expected_offsets == {}
