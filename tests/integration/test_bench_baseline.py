"""The bare Faust baseline of ``ripple bench`` runs on the real broker and passes every event on."""

import asyncio
import math

import pytest

from devtools.bench import faust_baseline

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("batch", [0, 64])
def test_bare_faust_baseline_passes_every_event_through_a_table(bootstrap, tmp_path, batch):
    eps = asyncio.run(faust_baseline(bootstrap, 300, table=True, batch=batch, log_path=tmp_path / "faust.log",
                                     timeout_s=60))
    assert not math.isnan(eps) and eps > 0, (tmp_path / "faust.log").read_text()[-2000:]


def test_wait_committed_waits_for_the_groups_offsets_to_reach_the_end(bootstrap):
    """The bench reads its outputs back only once the group has committed every input: the
    helper answers False while a partition is short of its end, True once it is reached."""
    import uuid

    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    from streams.topics import create_topics
    from devtools.bench_kafka import wait_committed
    from streams.client import produce

    topic, group = f"wait-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"

    async def scenario():
        await create_topics(bootstrap, [topic], partitions=2)
        await produce(bootstrap, [{"topic": topic, "key": f"k{i}", "value": {"i": i}} for i in range(40)])
        ends = {}
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(2)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            assert min(ends.values()) > 1  # both partitions hold records
            await consumer.commit({tp: OffsetAndMetadata(end - 1 if tp.partition == 0 else end, "") for tp, end in ends.items()})
            short = await wait_committed(bootstrap, group, [topic], timeout_s=1.5, poll_s=0.2)
            await consumer.commit({tp: OffsetAndMetadata(end, "") for tp, end in ends.items()})
            done = await wait_committed(bootstrap, group, [topic], timeout_s=10, poll_s=0.2)
            stopped = await wait_committed(bootstrap, f"{group}-none", [topic], timeout_s=10, alive=lambda: False)
        finally:
            await consumer.stop()
        return short, done, stopped

    assert asyncio.run(scenario()) == (False, True, False)
