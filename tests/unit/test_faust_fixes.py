"""``streams.faust_fixes``: Faust's producer buffer is flushed completely before offsets are committed.

These run Faust's own :class:`~faust.transport.producer.ProducerBuffer` and its background task;
only the channel a record is published to is a stand-in, one that holds the record until the
test lets it go (what the first record to a topic does while the producer fetches metadata, or
any record while a transaction commit holds the producer's lock).  No broker is involved.
"""

import asyncio
from types import SimpleNamespace

import faust
import pytest
from faust.transport.producer import ProducerBuffer
from faust.types import TP

from streams import faust_fixes


class HeldChannel:
    """Publishes a record only once ``release`` is set; remembers the order of publication."""

    def __init__(self):
        self.release = asyncio.Event()
        self.published: list[str] = []

    async def publish_message(self, fut, wait: bool = False):
        await self.release.wait()
        self.published.append(fut.name)


def _record(channel: HeldChannel, name: str):
    return SimpleNamespace(name=name, message=SimpleNamespace(channel=channel))


async def _started_buffer() -> ProducerBuffer:
    buffer = ProducerBuffer()
    buffer.app = faust.App("ripple-test-faust-fixes", broker="kafka://127.0.0.1:9", producer_threaded=False)
    await buffer.start()
    return buffer


@pytest.fixture(autouse=True, scope="module")
def _fixes_applied():
    faust_fixes.apply()


def test_flush_waits_for_the_record_being_published():
    async def go():
        channel, buffer = HeldChannel(), await _started_buffer()
        try:
            buffer.put(_record(channel, "changelog-1"))
            await asyncio.sleep(0.05)  # the background task takes it from the queue and waits
            assert buffer.size == 0  # all Faust's own flush looked at
            flush = asyncio.ensure_future(buffer.flush())
            await asyncio.sleep(0.5)
            pending_while_held = not flush.done()
            channel.release.set()
            await asyncio.wait_for(flush, timeout=2.0)
            return pending_while_held, channel.published
        finally:
            await buffer.stop()

    pending_while_held, published = asyncio.run(go())
    assert pending_while_held, "flush returned while a record was still being published"
    assert published == ["changelog-1"]


def test_flush_publishes_everything_queued_in_order_before_returning():
    async def go():
        channel, buffer = HeldChannel(), await _started_buffer()
        try:
            for i in range(5):
                buffer.put(_record(channel, f"r{i}"))
            flush = asyncio.ensure_future(buffer.flush())
            await asyncio.sleep(0.3)  # more than Faust's 0.1 s without progress
            pending_while_held = not flush.done()
            channel.release.set()
            await asyncio.wait_for(flush, timeout=2.0)
            return pending_while_held, list(channel.published), buffer.size
        finally:
            await buffer.stop()

    pending_while_held, published, left = asyncio.run(go())
    assert pending_while_held
    assert published == [f"r{i}" for i in range(5)] and left == 0


def test_flush_does_not_wait_for_records_queued_after_it_began(monkeypatch):
    """Under load, events processed while a flush waits queue records of their own: the buffer
    may never be empty, and the flush must not wait for those."""
    monkeypatch.setattr(faust_fixes, "FLUSH_LIMIT_S", 5.0)

    async def go():
        first, later, buffer = HeldChannel(), HeldChannel(), await _started_buffer()
        try:
            buffer.put(_record(first, "before"))
            flush = asyncio.ensure_future(faust_fixes.flush_through(buffer))
            await asyncio.sleep(0.2)
            buffer.put(_record(later, "after"))  # never released during the flush
            first.release.set()
            missing = await asyncio.wait_for(flush, timeout=2.0)  # not the 5 s limit
            held = faust_fixes.held(buffer)
            later.release.set()
            return missing, held, first.published
        finally:
            await buffer.stop()

    missing, held, published = asyncio.run(go())
    assert missing == 0 and published == ["before"]
    assert held == 1  # "after" was still on its way when the flush returned


def test_flush_gives_up_after_the_limit_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(faust_fixes, "FLUSH_LIMIT_S", 0.3)

    async def go():
        channel, buffer = HeldChannel(), await _started_buffer()
        try:
            buffer.put(_record(channel, "stuck"))
            await asyncio.wait_for(buffer.flush(), timeout=2.0)
            channel.release.set()
        finally:
            await buffer.stop()

    with caplog.at_level("WARNING", logger="ripple.worker"):
        asyncio.run(go())
    assert "flush gives up" in caplog.text


def test_a_stopping_buffer_is_left_to_fausts_own_flush():
    """Stopping flushes the buffer, but its task publishes nothing more: do not wait for the record."""
    async def go():
        channel, buffer = HeldChannel(), await _started_buffer()
        buffer.put(_record(channel, "held"))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(buffer.stop(), timeout=2.0)
        return channel.published

    assert asyncio.run(go()) == []


class FailingChannel:
    async def publish_message(self, fut, wait: bool = False):
        raise RuntimeError("no transaction producer for this partition")


def test_a_record_that_fails_to_publish_is_not_counted_in_flight():
    async def go():
        buffer = await _started_buffer()
        buffer.put(_record(FailingChannel(), "doomed"))
        await asyncio.sleep(0.1)
        state, held = buffer.state, faust_fixes.held(buffer)
        await buffer.stop()
        return state, held

    assert asyncio.run(go()) == ("crashed", 0)


class CommittingConsumer:
    """What ``Consumer._commit_offsets`` and ``Consumer._new_offset`` read: the app's producer (its
    ``flush`` also flushes the Kafka producers, where ``during_producer_flush`` runs), the
    assignment (empty unless given: Faust then commits nothing and returns False) and the
    acknowledgement bookkeeping.  ``calls`` records the producer flush and Faust's own commit.
    It takes the exactly-once path, where the guard itself flushes the Kafka producers (on the
    at-least-once path Faust's own method does, after checking the assignment)."""

    from faust.transport.consumer import Consumer

    _new_offset, _should_commit = Consumer._new_offset, Consumer._should_commit

    def __init__(self, buffer, assigned=(), during_producer_flush=None):
        from collections import defaultdict

        from intervaltree import IntervalTree

        self.calls: list[str] = []
        self.in_transaction = True
        self.assigned, self.during_producer_flush = set(assigned), during_producer_flush
        self.app = SimpleNamespace(producer=SimpleNamespace(buffer=buffer, flush=self._flush))
        self.log = SimpleNamespace(dev=lambda *a: self.calls.append("faust commit"), info=lambda *a: None)
        self._gap, self._acked = defaultdict(IntervalTree), defaultdict(list)
        self._acked_index, self._committed_offset = defaultdict(set), defaultdict(lambda: None)

    async def _flush(self):
        self.calls.append("producer flush")
        await self.app.producer.buffer.flush()
        if self.during_producer_flush:
            self.during_producer_flush()

    def assignment(self):
        return self.assigned

    def ack(self, *offsets: int, tp=TP("likes", 0)):
        self._acked[tp].extend(offsets)
        self._acked_index[tp].update(offsets)


def test_offsets_are_committed_after_the_producer_is_flushed():
    from faust.transport.consumer import Consumer

    async def go():
        channel, buffer = HeldChannel(), await _started_buffer()
        try:
            buffer.put(_record(channel, "changelog-1"))
            consumer = CommittingConsumer(buffer)
            commit = asyncio.ensure_future(Consumer._commit_offsets(consumer, {TP("likes", 0): 7}))
            await asyncio.sleep(0.3)
            calls_while_held = list(consumer.calls)
            channel.release.set()
            await asyncio.wait_for(commit, timeout=2.0)
            return calls_while_held, consumer.calls, channel.published
        finally:
            await buffer.stop()

    calls_while_held, calls, published = asyncio.run(go())
    assert calls_while_held == []
    assert calls[:2] == ["producer flush", "faust commit"] and published == ["changelog-1"]


def test_records_queued_while_the_kafka_producers_flush_do_not_hold_the_commit_back():
    """Events processed meanwhile queue records of their own; the offsets being committed do not
    cover those events.  (This held back one commit in a CI soak run, and so every commit after.)"""
    from faust.transport.consumer import Consumer

    async def go():
        channel, buffer = HeldChannel(), await _started_buffer()
        try:
            consumer = CommittingConsumer(buffer, during_producer_flush=lambda: buffer.put(_record(channel, "later")))
            did_commit = await asyncio.wait_for(Consumer._commit_offsets(consumer, {TP("likes", 0): 7}), 2.0)
            held = faust_fixes.held(buffer)
            channel.release.set()
            return did_commit, held, consumer.calls
        finally:
            await buffer.stop()

    did_commit, held, calls = asyncio.run(go())
    assert held == 1, "the stand-in for a later event's record was not queued"
    assert calls == ["producer flush", "faust commit"]
    assert did_commit is False  # Faust's own answer for an empty assignment: it was asked


def test_the_offsets_of_a_skipped_commit_are_committed_by_the_next_one(monkeypatch):
    """Faust removes the offsets it chose from its acknowledged ones; a skipped commit puts them back,
    else the partition has a gap that no acknowledgement fills and is never committed again."""
    from faust.transport.consumer import Consumer

    monkeypatch.setattr(faust_fixes, "FLUSH_LIMIT_S", 0.3)
    likes, shares = TP("likes", 0), TP("shares", 0)

    async def go():
        channel, buffer = HeldChannel(), await _started_buffer()
        try:
            consumer = CommittingConsumer(buffer, assigned=[likes, shares])
            consumer._committed_offset[likes] = 10
            consumer.ack(*range(10, 20))
            consumer.ack(*range(0, 5), tp=shares)  # chosen, then revoked during the flush
            chosen = Consumer._filter_committable_offsets(consumer, [likes, shares])
            buffer.put(_record(channel, "stuck"))

            def revoke_shares():  # what Consumer.on_partitions_revoked does first; the assignment
                for bookkeeping in (consumer._acked, consumer._acked_index, consumer._committed_offset):
                    bookkeeping.pop(shares, None)  # is only replaced after the rejoin

            asyncio.get_running_loop().call_later(0.1, revoke_shares)
            did_commit = await Consumer._commit_offsets(consumer, chosen)
            channel.release.set()
            consumer.ack(*range(20, 25))
            return chosen, did_commit, Consumer._filter_committable_offsets(consumer, [likes, shares])
        finally:
            await buffer.stop()

    chosen, did_commit, next_chosen = asyncio.run(go())
    assert chosen == {likes: 20, shares: 5} and did_commit is False
    assert next_chosen == {likes: 25}  # and nothing brought back for the revoked partition


def test_offsets_are_not_committed_when_the_flush_gives_up(monkeypatch, caplog):
    from faust.transport.consumer import Consumer

    monkeypatch.setattr(faust_fixes, "FLUSH_LIMIT_S", 0.3)

    async def go():
        channel, buffer = HeldChannel(), await _started_buffer()
        try:
            buffer.put(_record(channel, "stuck"))
            consumer = CommittingConsumer(buffer)
            did_commit = await asyncio.wait_for(Consumer._commit_offsets(consumer, {TP("likes", 0): 7}), 2.0)
            channel.release.set()
            return did_commit, consumer.calls
        finally:
            await buffer.stop()

    with caplog.at_level("ERROR", logger="ripple.worker"):
        did_commit, calls = asyncio.run(go())
    assert did_commit is False and calls == []
    assert "offsets not committed: 1 records" in caplog.text


def test_offsets_are_not_committed_when_the_buffer_crashed(caplog):
    from faust.transport.consumer import Consumer

    async def go():
        buffer = await _started_buffer()
        buffer.put(_record(FailingChannel(), "doomed"))
        await asyncio.sleep(0.1)
        consumer = CommittingConsumer(buffer)
        did_commit = await Consumer._commit_offsets(consumer, {TP("likes", 0): 7})
        await buffer.stop()
        return did_commit, consumer.calls

    with caplog.at_level("ERROR", logger="ripple.worker"):
        did_commit, calls = asyncio.run(go())
    assert did_commit is False and "faust commit" not in calls
    assert "its buffer is crashed" in caplog.text


def test_apply_is_idempotent():
    from faust.transport.consumer import Consumer

    patched = ProducerBuffer.flush, ProducerBuffer._send_pending, Consumer._commit_offsets
    faust_fixes.apply()
    assert (ProducerBuffer.flush, ProducerBuffer._send_pending, Consumer._commit_offsets) == patched
