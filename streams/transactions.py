"""Kafka transactions of the engagement engine under ``exactly_once``: one per partition and batch.

A batch's outputs for partition number ``p`` (the recommendations of users whose profiles live
on ``p``, the dead letters of records read from ``p``, ``p``'s profile changelog records) and
the input offsets of every engagement topic's partition ``p`` commit together in one Kafka
transaction, or not at all.  A consumer reading Ripple's outputs with ``read_committed`` sees
each batch's messages once, even when a worker is killed mid-batch: the aborted transaction's
messages are never visible, and the next owner replays the batch from the committed offsets
against the committed profiles.

Fencing: each partition number has its own transactional id, ``<app_id>-engage-<p>``, the
scheme Kafka's exactly-once used before KIP-447 (aiokafka's ``send_offsets_to_transaction``
takes a group id, not the consumer's group metadata).  A worker that is assigned ``p`` starts
that producer before it reads ``p``'s profiles back; ``init_transactions`` aborts whatever the
previous owner left open and bumps the epoch, so a paused previous owner (a zombie) that wakes
up can no longer commit: its producer is fenced (:class:`TransactionFailed` with
``fenced=True``) and it drops the partition.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

log = logging.getLogger("ripple.worker")


@dataclass
class Outgoing:
    """One message to write: ``partition`` None lets the producer's partitioner choose by key."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    partition: int | None = None


@dataclass
class PartitionBatch:
    """What one partition number contributes to a batch: its messages and its input offsets."""

    messages: list[Outgoing] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)


class TransactionFailed(Exception):
    """A partition's transaction did not commit; ``fenced``: another worker owns the partition now."""

    def __init__(self, partition: int, cause: BaseException):
        self.partition, self.cause = partition, cause
        self.fenced = isinstance(cause, ProducerFenced) or "fenced" in type(cause).__name__.lower()
        super().__init__(f"transaction of partition {partition} failed: {type(cause).__name__}")


def transactional_id(app_id: str, partition: int) -> str:
    """The transactional id of partition number ``partition`` (stable across workers: that is what fences).

    >>> transactional_id("ripple", 3)
    'ripple-engage-3'
    """
    return f"{app_id}-engage-{partition}"


class PartitionTransactions:
    """One transactional producer per owned partition number (see the module docstring), made
    by ``io`` (:class:`streams.engine_io.KafkaIO` or its in-memory twin)."""

    def __init__(self, io, app_id: str, group_id: str):
        self.io, self.app_id, self.group_id = io, app_id, group_id
        self.producers: dict[int, object] = {}

    async def start(self, partitions) -> None:
        """Start (and so fence the previous owner of) each partition's producer not started yet."""
        new = [p for p in sorted(partitions) if p not in self.producers]
        made = {p: self.io.producer(transactional_id=transactional_id(self.app_id, p), acks="all",
                                    enable_idempotence=True, linger_ms=0) for p in new}
        started = await asyncio.gather(*(made[p].start() for p in new), return_exceptions=True)
        failed = None
        for p, result in zip(new, started):
            if isinstance(result, BaseException):  # never kept: a producer that did not start fenced nobody
                failed = failed or result
                try:
                    await made[p].stop()
                except Exception:
                    log.debug("stopping a producer that did not start failed", exc_info=True)
            else:
                self.producers[p] = made[p]
        if failed is not None:
            raise failed

    async def stop(self, partitions=None) -> None:
        """Stop the producers of ``partitions`` (all when None)."""
        parts = list(self.producers) if partitions is None else [p for p in partitions if p in self.producers]
        gone = [self.producers.pop(p) for p in parts]
        for producer in gone:
            try:
                await producer.stop()
            except Exception:  # a fenced producer may refuse to stop cleanly; it is dropped either way
                log.debug("stopping a transactional producer failed", exc_info=True)

    async def commit(self, batches: dict[int, PartitionBatch]) -> list[TransactionFailed]:
        """Commit each partition's batch in its own transaction, all at once; returns the failures
        (their transactions were aborted: nothing of them is visible to ``read_committed`` readers)."""
        parts = [p for p, b in batches.items() if b.messages or b.offsets]
        results = await asyncio.gather(*(self._commit_one(p, batches[p]) for p in parts), return_exceptions=True)
        failed = []
        for p, result in zip(parts, results):
            if isinstance(result, BaseException):
                if not isinstance(result, (KafkaError, TransactionFailed, OSError)):
                    raise result
                failed.append(result if isinstance(result, TransactionFailed) else TransactionFailed(p, result))
        return failed

    async def _commit_one(self, partition: int, batch: PartitionBatch) -> None:
        producer = self.producers.get(partition)
        if producer is None:
            raise TransactionFailed(partition, ProducerFenced("no producer: the partition is not owned"))
        async with producer.transaction():
            acks = [await producer.send(m.topic, m.value, key=m.key, partition=m.partition) for m in batch.messages]
            if batch.offsets:
                await producer.send_offsets_to_transaction(batch.offsets, self.group_id)
            if acks:
                await asyncio.gather(*acks)
