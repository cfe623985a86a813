"""Workarounds for faust-streaming (0.15) behaviour that can lose a table change.

Both concern the producer buffer where a table's changelog records wait (``Table.__setitem__``
cannot await, so Faust queues the send and a background task publishes it).  Offsets are only
safe to commit once every record queued for the events they cover has reached the Kafka
producer: under ``exactly_once`` a record that misses the transaction being committed lands in
the next one, which a ``kill -9`` aborts; under ``at_least_once`` a record still queued when the
worker dies is never written.  Either way the input offset is committed without the state change.

:func:`apply` installs both fixes; it is idempotent.  They assume Faust's ``producer_threaded``
setting is off (Ripple never turns it on): a threaded producer has its own queue, which these
fixes do not see.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("ripple.worker")

#: How long a flush waits for the buffer to empty before it gives up with a warning (Faust's own
#: flush gave up after 0.1 s without a record being sent).  A send only takes this long when the
#: producer is stuck; the commit that follows is then skipped (see :func:`_commit_only_what_was_sent`).
#: Kept well under half of Faust's rebalance timeout (60 s): a revocation flushes twice.
FLUSH_LIMIT_S = 20.0


def apply() -> None:
    """Make the producer buffer's flush complete, and commit offsets only after one succeeded."""
    _complete_buffer_flush()
    _commit_only_what_was_sent()


def held(buffer) -> int:
    """Records in ``buffer`` not handed to the Kafka producer yet: queued, or being published."""
    return buffer.pending.qsize() + getattr(buffer, "_ripple_in_flight", 0)


def _complete_buffer_flush() -> None:
    """``ProducerBuffer.flush`` returns while a record is still on its way: it watches only the
    queue, not the record the background task has taken from it and is still publishing (for a
    producer's first record to a topic, that task waits for the topic's metadata), and it returns
    after 0.1 s without progress.  Count the record in flight and
    wait until the queue is empty and nothing is in flight."""
    from faust.transport.producer import ProducerBuffer

    if getattr(ProducerBuffer.flush, "_ripple_complete", False):
        return
    publish, faust_flush = ProducerBuffer._send_pending, ProducerBuffer.flush

    async def _send_pending(self, fut) -> None:
        self._ripple_in_flight = getattr(self, "_ripple_in_flight", 0) + 1
        try:
            await publish(self, fut)
        finally:
            self._ripple_in_flight -= 1

    async def flush(self) -> None:
        """Flush all messages: return once none is queued or being published.  A buffer that is
        stopping (its task sends nothing more) or crashed is left to Faust's own flush."""
        started = time.monotonic()
        while held(self):
            if self.state != "running":
                return await faust_flush(self)
            if time.monotonic() - started > FLUSH_LIMIT_S:
                log.warning("producer buffer still holds %d records after %.0f s; flush gives up",
                            held(self), FLUSH_LIMIT_S)
                return
            self.message_sent.clear()
            try:  # set by the background task after each record; the timeout re-checks anyway
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
            except asyncio.TimeoutError:
                pass

    flush._ripple_complete = True
    ProducerBuffer._send_pending = _send_pending
    ProducerBuffer.flush = flush


def _commit_only_what_was_sent() -> None:
    """Flush the producer buffer before offsets are committed, and skip the commit when the buffer
    could not hand everything over (stuck past :data:`FLUSH_LIMIT_S`, or its task crashed):
    committing then would commit input offsets without their state.  The skipped offsets are put
    back among the acknowledged ones (:func:`_keep_acked`), so the next commit covers them.  With
    ``exactly_once`` Faust does not flush before committing a transaction at all, so a record
    buffered at commit time landed in the *next* transaction; with ``at_least_once`` it flushes
    (with the incomplete flush fixed above).

    The buffer is checked right after *its* flush, with nothing awaited in between.  The records
    of every event the offsets cover were queued before those events were acknowledged, so an
    empty buffer then means all of them were handed over.  Records queued later (while the Kafka
    producers flush, say) belong to later events, and must not hold this commit back."""
    from faust.transport.consumer import Consumer

    if getattr(Consumer._commit_offsets, "_ripple_flushes", False):
        return
    original = Consumer._commit_offsets

    async def _commit_offsets(self, offsets, start_new_transaction: bool = True) -> bool:
        producer = self.app.producer
        buffer = producer.buffer
        await buffer.flush()
        if held(buffer) or buffer.state == "crashed":
            log.error("offsets not committed: %d records of the changelog and output topics were not handed to "
                      "the producer (its buffer is %s); the next commit covers these events, or, if the worker "
                      "stops first, they are processed again from the last commit", held(buffer), buffer.state)
            _keep_acked(self, offsets)
            return False
        await producer.flush()  # and the Kafka producers send what they were handed, as before
        return await original(self, offsets, start_new_transaction=start_new_transaction)

    _commit_offsets._ripple_flushes = True
    Consumer._commit_offsets = _commit_offsets


def _keep_acked(consumer, offsets) -> None:
    """Put the offsets of a skipped commit back among the consumer's acknowledged ones.

    Faust's ``Consumer._new_offset`` removed them from ``_acked`` when it chose ``offsets``.  Left
    out, they would be a gap after the last committed offset that no acknowledgement fills, and
    Faust would never commit that partition again (its offsets would only be committed by the
    partition's next owner, after reprocessing everything since).  ``_committed_offset[tp]`` is
    the next offset to read after the last commit, so the skipped range starts there."""
    assigned = consumer.assignment()
    for tp, offset in offsets.items():
        if tp not in assigned:  # revoked meanwhile: Faust dropped its bookkeeping, the next owner reprocesses
            continue
        committed = consumer._committed_offset[tp]
        first = committed if committed is not None else offset - 1
        acked, index = consumer._acked[tp], consumer._acked_index[tp]
        for skipped in range(first, offset):
            if skipped not in index:
                index.add(skipped)
                acked.append(skipped)
        acked.sort()
