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
    """Flush the producer before offsets are committed, and skip the commit when the buffer could
    not hand everything over (stuck past :data:`FLUSH_LIMIT_S`, or its task crashed): committing
    then would commit input offsets without their state.  The offsets stay uncommitted and a later
    commit, or the partitions' next owner, takes them.  With ``exactly_once`` Faust does not flush
    before committing a transaction at all, so a record buffered at commit time landed in the
    *next* transaction; with ``at_least_once`` it flushes (with the incomplete flush fixed above)."""
    from faust.transport.consumer import Consumer

    if getattr(Consumer._commit_offsets, "_ripple_flushes", False):
        return
    original = Consumer._commit_offsets

    async def _commit_offsets(self, offsets, start_new_transaction: bool = True) -> bool:
        producer = self.app.producer
        await producer.flush()
        buffer = producer.buffer
        if held(buffer) or buffer.state == "crashed":
            log.error("offsets not committed: %d records of the changelog and output topics were not handed to "
                      "the producer (its buffer is %s); the events are processed again from the last commit",
                      held(buffer), buffer.state)
            return False
        return await original(self, offsets, start_new_transaction=start_new_transaction)

    _commit_offsets._ripple_flushes = True
    Consumer._commit_offsets = _commit_offsets
