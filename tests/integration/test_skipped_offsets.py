"""The Faust agents' guard against offsets the Faust consumer skipped (re-read from the broker)."""

import asyncio
import json
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from ripple.settings import Settings

from streams.agents import _skipped_before, _with_skipped
from streams.topics import create_topics
from streams import metrics
from streams.client import produce

pytestmark = pytest.mark.kafka


def _skipped(outcome: str) -> float:
    return metrics.REGISTRY.get_sample_value("ripple_skipped_records_total", {"outcome": outcome})


def _event(topic: str, partition: int, offset: int):
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset))


def test_a_skipped_range_is_re_read_in_order_and_nothing_else(bootstrap, topic_prefix, tmp_path):
    topic = f"{topic_prefix}likes"
    asyncio.run(create_topics(bootstrap, [topic], partitions=1))
    docs = [{"schema_version": 1, "user_id": "u", "post_id": f"p{i}"} for i in range(10)]
    asyncio.run(produce(bootstrap, [{"topic": topic, "key": "u", "value": d} for d in docs]))
    rt = SimpleNamespace(settings=Settings(broker=bootstrap, home=tmp_path), expected_offsets={})
    refetched_before = _skipped("refetched")

    async def seen(offset: int) -> list[int]:
        return [r.message.offset for r in await _skipped_before(rt, _event(topic, 0, offset), "embed_posts")]

    assert asyncio.run(seen(2)) == []  # first offset after an assignment: nothing to compare with
    assert asyncio.run(seen(3)) == []
    refetched = asyncio.run(_skipped_before(rt, _event(topic, 0, 7), "embed_posts"))  # 4, 5, 6 never came
    assert [r.message.offset for r in refetched] == [4, 5, 6]
    assert [json.loads(r.value)["post_id"] for r in refetched] == ["p4", "p5", "p6"]
    assert all(r.message.topic == topic and r.message.partition == 0 and r.message.timestamp > 1e9 for r in refetched)
    assert asyncio.run(seen(5)) == []  # an earlier offset delivered late is not a gap
    assert asyncio.run(seen(8)) == []  # the expected offset moved past 7, not back to 6
    assert _skipped("refetched") - refetched_before == 3
    rt.expected_offsets.clear()  # after a revocation the next assignment starts afresh
    assert asyncio.run(seen(9)) == []



def test_the_first_offset_after_an_assignment_is_checked_against_the_offset_sought(bootstrap, topic_prefix, tmp_path):
    topic = f"{topic_prefix}shares"
    asyncio.run(create_topics(bootstrap, [topic], partitions=1))
    docs = [{"schema_version": 1, "user_id": "u", "post_id": f"p{i}"} for i in range(8)]
    asyncio.run(produce(bootstrap, [{"topic": topic, "key": "u", "value": d} for d in docs]))
    tp = TopicPartition(topic, 0)
    consumer = SimpleNamespace(_committed_offset={tp: 3})  # faust-streaming: filled by perform_seek
    rt = SimpleNamespace(settings=Settings(broker=bootstrap, home=tmp_path), expected_offsets={},
                         app=SimpleNamespace(consumer=consumer))

    def event(offset: int):
        return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=0, offset=offset, tp=tp))

    refetched = asyncio.run(_skipped_before(rt, event(5), "embed_posts"))  # 3 and 4 never came
    assert [json.loads(r.value)["post_id"] for r in refetched] == ["p3", "p4"]
    # each agent has its own stream: what one of them saw says nothing about the other
    both = asyncio.run(_with_skipped(rt, "suggest_replies", [event(4), event(6)]))
    assert [e.message.offset for e in both] == [3, 4, 5, 6]
    rt.expected_offsets.clear()
    consumer._committed_offset = {}  # nothing committed yet: the first record is taken as it comes
    assert asyncio.run(_skipped_before(rt, event(7), "embed_posts")) == []


def test_a_failed_re_read_is_logged_and_counted_not_raised(tmp_path, caplog):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    rt = SimpleNamespace(settings=Settings(broker=f"127.0.0.1:{port}", home=tmp_path), expected_offsets={})
    lost_before = _skipped("lost")
    assert asyncio.run(_skipped_before(rt, _event("posts", 0, 2), "embed_posts")) == []
    assert asyncio.run(asyncio.wait_for(_skipped_before(rt, _event("posts", 0, 6), "embed_posts"), 60)) == []  # 3..5 skipped
    assert _skipped("lost") - lost_before == 3
    assert "could not re-read posts[0]@3..5" in caplog.text
