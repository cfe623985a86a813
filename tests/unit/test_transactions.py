"""PartitionTransactions: a producer that did not start is never kept (it fenced nobody)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError

from streams.memory_broker import MemoryBroker, MemoryIO
from streams.transactions import PartitionTransactions


class FlakyIO(MemoryIO):
    """Producers of partition 1 fail to start the first time."""

    def __init__(self, broker):
        super().__init__(broker)
        self.failures_left = 1

    def producer(self, **kwargs):
        made = super().producer(**kwargs)
        if kwargs.get("transactional_id", "").endswith("-1") and self.failures_left:
            self.failures_left -= 1

            async def fail():
                raise KafkaConnectionError("coordinator unreachable")
            made.start = fail
        return made


def test_a_producer_that_fails_to_start_is_dropped_and_started_again_next_time():
    async def run():
        broker = MemoryBroker()
        broker.create_topic("out", 2)
        txns = PartitionTransactions(FlakyIO(broker), "app", "app-engage")
        with pytest.raises(KafkaConnectionError):
            await txns.start({0, 1})
        after_failure = sorted(txns.producers)
        await txns.start({0, 1})
        return after_failure, sorted(txns.producers), broker.epochs

    after_failure, producers, epochs = asyncio.run(run())
    assert after_failure == [0]  # partition 1's producer is not kept
    assert producers == [0, 1]
    assert epochs == {"app-engage-0": 1, "app-engage-1": 1}  # partition 1 initialised once, on the retry
