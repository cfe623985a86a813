"""Workarounds for faust-streaming (0.15) behaviour that can lose a table change.

Both concern the producer buffer where a table's changelog records wait (``Table.__setitem__``
cannot await, so Faust queues the send and a background task publishes it).  Offsets are only
safe to commit once every record queued for the events they cover has reached the Kafka
producer: under ``exactly_once`` a record that misses the transaction being committed lands in
the next one, which a ``kill -9`` aborts; under ``at_least_once`` a record still queued when the
worker dies is never written.  Either way the input offset is committed without the state change.

:func:`apply` installs both fixes; it is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("ripple.worker")

#: How long a flush waits for the buffer to empty before it gives up with a warning (Faust's own
#: flush gave up after 0.1 s without a record being sent).  A send only takes this long when the
#: broker is unreachable, and the commit that follows would fail then anyway.
FLUSH_LIMIT_S = 60.0


def apply(processing_guarantee: str) -> None:
    """Make the producer buffer's flush complete; under ``exactly_once`` also flush before each
    transaction commit (Faust flushes only on the at-least-once path)."""
    _complete_buffer_flush()
    if processing_guarantee == "exactly_once":
        _flush_before_transaction_commit()


def _complete_buffer_flush() -> None:
    """``ProducerBuffer.flush`` returns while a record is still on its way: it watches only the
    queue, not the record the background task has taken from it and is still publishing (for the
    first record to a topic that task waits for metadata, or for the transaction's lock while a
    commit holds it), and it returns after 0.1 s without progress.  Count the record in flight and
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
        while self.pending.qsize() or getattr(self, "_ripple_in_flight", 0):
            if self.state != "running":
                return await faust_flush(self)
            if time.monotonic() - started > FLUSH_LIMIT_S:
                log.warning("producer buffer still holds %d records after %.0f s; flush gives up",
                            self.pending.qsize() + getattr(self, "_ripple_in_flight", 0), FLUSH_LIMIT_S)
                return
            self.message_sent.clear()
            try:  # set by the background task after each record; the timeout re-checks anyway
                await asyncio.wait_for(self.message_sent.wait(), timeout=0.1)
            except asyncio.TimeoutError:
                pass

    flush._ripple_complete = True
    ProducerBuffer._send_pending = _send_pending
    ProducerBuffer.flush = flush


def _flush_before_transaction_commit() -> None:
    """With ``exactly_once``, faust-streaming commits a transaction without draining its producer
    buffer (``Consumer._commit_offsets`` flushes only on the at-least-once path).  A record
    buffered at commit time then lands in the *next* transaction: when the worker dies before that
    one commits, the input offset is committed but the state change is aborted.  Drain first."""
    from faust.transport.consumer import TransactionManager

    if getattr(TransactionManager.commit, "_ripple_flushes", False):
        return
    original = TransactionManager.commit

    async def commit(self, offsets, start_new_transaction: bool = True) -> bool:
        await self.app.producer.flush()
        return await original(self, offsets, start_new_transaction=start_new_transaction)

    commit._ripple_flushes = True
    TransactionManager.commit = commit
