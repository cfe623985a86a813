"""Workarounds for faust-streaming (0.15) behaviour that can lose a table change or an input record.

The first two concern the producer buffer where a table's changelog records wait (``Table.__setitem__``
cannot await, so Faust queues the send and a background task publishes it).  Offsets are only
safe to commit once every record queued for the events they cover has reached the Kafka
producer: under ``exactly_once`` a record that misses the transaction being committed lands in
the next one, which a ``kill -9`` aborts; under ``at_least_once`` a record still queued when the
worker dies is never written.  Either way the input offset is committed without the state change.

:func:`apply` installs them; it is idempotent.  They assume Faust's ``producer_threaded``
setting is off (Ripple never turns it on): a threaded producer has its own queue, which these
fixes do not see.

The third concerns the seek after an assignment (:func:`_seek_uncommitted_by_reset_policy`): a
partition with no committed offset could skip the records fetched before Faust's seek.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("ripple.worker")

#: How long a flush waits for the records queued ahead of it, then gives up with a warning (Faust's own
#: flush gave up after 0.1 s without a record being sent).  A send only takes this long when the
#: producer is stuck; the commit that follows is then skipped (see :func:`_commit_only_what_was_sent`).
#: Kept well under half of Faust's rebalance timeout (60 s): a revocation flushes twice.
FLUSH_LIMIT_S = 20.0


def apply() -> None:
    """Make the producer buffer's flush complete, and commit offsets only after one succeeded."""
    _complete_buffer_flush()
    _commit_only_what_was_sent()
    _seek_uncommitted_by_reset_policy()


def held(buffer) -> int:
    """Records in ``buffer`` not handed to the Kafka producer yet: queued, or being published."""
    return buffer.pending.qsize() + getattr(buffer, "_ripple_in_flight", 0)


async def flush_through(buffer) -> int:
    """Wait until every record queued in ``buffer`` before this call has been handed to the Kafka
    producer; return how many of those were not (0: all were).  Records queued meanwhile (by
    events processed during the wait) are not waited for: under load the buffer may never be
    empty.  The buffer's one task publishes in queue order, so counting records put and records
    handed over is enough.  Gives up with a warning after :data:`FLUSH_LIMIT_S`; a buffer that is
    stopping (its task publishes nothing more) or crashed is left to Faust's own flush."""
    from faust.transport.producer import ProducerBuffer

    target = getattr(buffer, "_ripple_queued", 0)
    started = time.monotonic()
    while (left := target - getattr(buffer, "_ripple_handed", 0)) > 0:
        if buffer.state != "running":
            await ProducerBuffer._ripple_faust_flush(buffer)
            return max(0, target - getattr(buffer, "_ripple_handed", 0))
        if time.monotonic() - started > FLUSH_LIMIT_S:
            log.warning("producer buffer has not handed over %d records after %g s; flush gives up",
                        left, FLUSH_LIMIT_S)
            return left
        buffer.message_sent.clear()
        try:  # set by the background task after each record; the timeout re-checks anyway
            await asyncio.wait_for(buffer.message_sent.wait(), timeout=0.1)
        except asyncio.TimeoutError:
            pass
    return 0


def _complete_buffer_flush() -> None:
    """``ProducerBuffer.flush`` returns while a record is still on its way: it watches only the
    queue, not the record the background task has taken from it and is still publishing (for a
    producer's first record to a topic, that task waits for the topic's metadata), and it returns
    after 0.1 s without progress.  Count the records put and handed over, and make the flush
    :func:`flush_through`."""
    from faust.transport.producer import ProducerBuffer

    if getattr(ProducerBuffer.flush, "_ripple_complete", False):
        return
    faust_put, publish = ProducerBuffer.put, ProducerBuffer._send_pending
    ProducerBuffer._ripple_faust_flush = ProducerBuffer.flush

    def put(self, fut) -> None:
        faust_put(self, fut)
        self._ripple_queued = getattr(self, "_ripple_queued", 0) + 1

    async def _send_pending(self, fut) -> None:
        self._ripple_in_flight = getattr(self, "_ripple_in_flight", 0) + 1
        try:
            await publish(self, fut)
            self._ripple_handed = getattr(self, "_ripple_handed", 0) + 1
        finally:
            self._ripple_in_flight -= 1

    async def flush(self) -> None:
        """Flush every message queued before the call (see :func:`streams.faust_fixes.flush_through`)."""
        await flush_through(self)

    flush._ripple_complete = True
    ProducerBuffer.put = put
    ProducerBuffer._send_pending = _send_pending
    ProducerBuffer.flush = flush


def _commit_only_what_was_sent() -> None:
    """Flush the producer buffer before offsets are committed, and skip the commit when the buffer
    could not hand over every record queued before the commit (stuck past :data:`FLUSH_LIMIT_S`),
    or its task crashed: committing then would commit input offsets without their state.  The
    skipped offsets are put back among the acknowledged ones (:func:`_keep_acked`), so the next
    commit covers them.  With ``exactly_once`` Faust does not flush before committing a
    transaction at all, so a record buffered at commit time landed in the *next* transaction; with
    ``at_least_once`` it flushes (with the incomplete flush fixed above).

    The records of every event the offsets cover were queued before those events were
    acknowledged, so before this flush began.  Records queued later (by events processed while
    the flush or the Kafka producers wait) belong to later events and do not hold the commit back."""
    from faust.transport.consumer import Consumer

    if getattr(Consumer._commit_offsets, "_ripple_flushes", False):
        return
    original = Consumer._commit_offsets

    async def _commit_offsets(self, offsets, start_new_transaction: bool = True) -> bool:
        producer = self.app.producer
        buffer = producer.buffer
        acked_lists = {tp: self._acked.get(tp) for tp in offsets}  # to tell a revocation meanwhile
        missing = await flush_through(buffer)
        if missing or buffer.state == "crashed":
            log.error("offsets not committed: %d records of the changelog and output topics were not handed to "
                      "the producer (its buffer is %s); the next commit covers these events, or, if the worker "
                      "stops first, they are processed again from the last commit", missing, buffer.state)
            _keep_acked(self, offsets, acked_lists)
            return False
        if self.in_transaction:  # the at-least-once path of Faust's own method flushes the producer itself
            await producer.flush()  # the Kafka producers send what they were handed
        return await original(self, offsets, start_new_transaction=start_new_transaction)

    _commit_offsets._ripple_flushes = True
    Consumer._commit_offsets = _commit_offsets


def _seek_uncommitted_by_reset_policy() -> None:
    """After an assignment Faust seeks every partition to its committed offset
    (``Consumer.perform_seek``), after its flow control has dropped what was fetched meanwhile.
    aiokafka's ``seek_to_committed`` leaves a partition with no committed offset (or offset 0)
    where the fetcher is: past the records already fetched and dropped.  A new worker of a
    group whose other partitions have commits lost those records (a comment on a partition no
    one had committed yet got no suggested reply after a restart).  Seek such a partition as the
    consumer's ``auto_offset_reset`` says: to the beginning (``earliest``) or the end."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if getattr(AIOKafkaConsumerThread.seek_to_committed, "_ripple_resets", False):
        return

    async def seek_to_committed(self):
        consumer = self._ensure_consumer()
        policy = self.app.conf.consumer_auto_offset_reset

        async def seek():
            offsets = await consumer.seek_to_committed()
            zero = [tp for tp, offset in offsets.items() if offset == 0]
            unset = [tp for tp, offset in offsets.items() if offset is None or offset < 0]
            for tp in zero:
                consumer.seek(tp, 0)
            if unset and policy == "earliest":
                await consumer.seek_to_beginning(*unset)
            elif unset and policy == "latest":
                await consumer.seek_to_end(*unset)
            return offsets

        return await self.call_thread(seek)

    seek_to_committed._ripple_resets = True
    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed


def _keep_acked(consumer, offsets, acked_lists) -> None:
    """Put the offsets of a skipped commit back among the consumer's acknowledged ones.

    Faust's ``Consumer._new_offset`` removed them from ``_acked`` when it chose ``offsets``.  Left
    out, they would be a gap after the last committed offset that no acknowledgement fills, and
    Faust would never commit that partition again (its offsets would only be committed by the
    partition's next owner, after reprocessing everything since).  ``_committed_offset[tp]`` is
    the next offset to read after the last commit, so the skipped range starts there.

    A partition revoked during the flush is left alone: Faust dropped its bookkeeping (``_acked``
    is no longer the list ``acked_lists`` holds, though the assignment may still list it), and
    its next owner reprocesses from the last commit."""
    for tp, offset in offsets.items():
        acked = consumer._acked.get(tp)
        if acked is None or acked is not acked_lists.get(tp):
            continue
        committed = consumer._committed_offset.get(tp)
        first = committed if committed is not None else offset - 1
        index = consumer._acked_index[tp]
        for skipped in range(first, offset):
            if skipped not in index:
                index.add(skipped)
                acked.append(skipped)
        acked.sort()
