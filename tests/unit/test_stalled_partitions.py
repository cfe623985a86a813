"""StallWatch: the tail of a partition an agent never received is re-read and handled, and only
while the agent idles outside a rebalance."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from types import SimpleNamespace

from streams import stalled_partitions
from streams.stalled_partitions import StallWatch

TopicPartition = namedtuple("TopicPartition", "topic partition")
TP = TopicPartition("comments", 1)


class FakeConsumer:
    def __init__(self, high, committed=None):
        self.high, self._committed_offset = high, ({TP: committed} if committed is not None else {})

    def assignment(self):
        return {TP, TopicPartition("posts", 1)}

    def highwater(self, tp):
        return self.high if tp == TP else 99


def _watch(monkeypatch, high, committed=None, **app):
    reads = []

    async def read_offsets(broker, topic, partition, start, end, **kw):
        reads.append((topic, partition, start, end))
        return [SimpleNamespace(topic=topic, partition=partition, offset=o, timestamp=1000, value=b"v%d" % o)
                for o in range(start, end)]

    monkeypatch.setattr(stalled_partitions, "read_offsets", read_offsets)
    rt = SimpleNamespace(app=SimpleNamespace(consumer=FakeConsumer(high, committed), **app), expected_offsets={},
                         settings=SimpleNamespace(broker="b", processing_guarantee="at_least_once",
                                                  security_protocol="PLAINTEXT"))
    handled = []

    async def handle(events):
        handled.extend(e.message.offset for e in events)

    return StallWatch(rt, "suggest_replies", "comments", handle, idle_after_s=0.0), rt, reads, handled


def test_an_idle_agent_gets_the_tail_it_never_received(monkeypatch):
    watch, rt, reads, handled = _watch(monkeypatch, high=3)
    watch.idle()
    assert asyncio.run(watch.sweep()) == 3
    assert reads == [("comments", 1, 0, 3)] and handled == [0, 1, 2]
    assert rt.expected_offsets[("suggest_replies", "comments", 1)] == 3
    assert asyncio.run(watch.sweep()) == 0  # nothing new: nothing re-read


def test_from_the_committed_offset_and_from_what_the_agent_saw(monkeypatch):
    watch, rt, reads, handled = _watch(monkeypatch, high=5, committed=2)
    watch.idle()
    asyncio.run(watch.sweep())
    assert handled == [2, 3, 4]
    watch, rt, reads, handled = _watch(monkeypatch, high=5, committed=2)
    rt.expected_offsets[("suggest_replies", "comments", 1)] = 5  # it saw everything
    watch.idle()
    assert asyncio.run(watch.sweep()) == 0 and reads == []


def test_nothing_while_busy_or_rebalancing(monkeypatch):
    watch, rt, reads, handled = _watch(monkeypatch, high=3)
    assert asyncio.run(watch.sweep()) == 0  # never idle yet
    watch.idle()
    watch.busy()
    assert asyncio.run(watch.sweep()) == 0
    watch, rt, reads, handled = _watch(monkeypatch, high=3, rebalancing=True)
    watch.idle()
    assert asyncio.run(watch.sweep()) == 0 and reads == [] and handled == []
    slow = StallWatch(rt, "suggest_replies", "comments", None, idle_after_s=60.0)
    slow.idle()
    assert slow.behind() == []  # idle, but not long enough
