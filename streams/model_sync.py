"""Learned state shared by every worker and kept across restarts: the Kafka side of the shared
parts of :mod:`processors.sync_message` (the item side of the models,
:mod:`processors.item_state`; learned replies and the comment directory,
:mod:`processors.reply_state`; trends, :mod:`processors.trends`; the ranking blend,
:mod:`processors.blend_learning`).

Two topics:

* ``<app_id>-model-sync`` (delete policy): every ``sync_interval_s`` each worker sends what it
  learnt since its last message (one document per part, keyed by the worker's origin id, a fresh
  one per process).  Every worker follows all partitions of the
  topic with its own reader (no consumer group) and adds the other workers' deltas to its state.
* ``<app_id>-model-state`` (compacted): every ``snapshot_interval_s`` the worker that owns
  partition 0 of the engagement topics writes the whole state of each item that changed since
  its last snapshot (key: the post id, or the reply part's prefixed key; ``None`` for one nothing
  is known of any more), then a
  *checkpoint* record (key ``"\\x00checkpoint"``, which no post id can be) naming, per model-sync
  partition, the offset up to which those states include every delta, and per origin the last
  delta included; all in one transaction.

At start a worker reads the model-state topic (the newest record per item), puts those states
back, then replays the model-sync topic from the checkpoint's offsets (skipping deltas the
checkpoint includes) and follows it live; ``caught_up`` is set once the replay reaches the
end offsets found at start, and the engagement engine waits for it.  So a restarted or new
worker starts from the snapshot plus the deltas after it, not from zero.

What a worker learnt in its last sync interval before a crash is lost (it never left the
process), as a parameter server loses the updates since its last save; events replayed after
a restart are learnt again, so the deltas of a batch whose offsets were not committed can be
counted twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Awaitable, Callable, Sequence

from aiokafka import TopicPartition

from processors import sync_message
from processors.item_state import ItemState
from processors.reply_state import ReplyState
from processors.sync_message import SharedPart
from streams import metrics

log = logging.getLogger("ripple.worker")

CHECKPOINT_KEY = "\x00checkpoint"


def sync_topic(settings) -> str:
    return f"{settings.app_id}-model-sync"


def state_topic(settings) -> str:
    return f"{settings.app_id}-model-state"


class ModelSync:
    """Send this worker's item deltas, apply everyone else's, snapshot when ``writes_snapshots()``
    (see the module docstring)."""

    def __init__(self, io, parts: Sequence[SharedPart], sync_topic: str, state_topic: str, partitions: int, *,
                 interval_s: float, snapshot_interval_s: float, writes_snapshots: Callable[[], bool] = lambda: False,
                 transactional_id: str = "ripple-model-state", clock: Callable[[], float] = time.monotonic,
                 after_apply: Callable[[], Awaitable[None]] | None = None):
        self.io, self.parts = io, list(parts)
        self.by_name = {p.name: p for p in self.parts}
        self.after_apply = after_apply  # e.g. embed replies another worker's messages admitted
        self.sync_topic, self.state_topic, self.partitions = sync_topic, state_topic, partitions
        self.interval_s, self.snapshot_interval_s = interval_s, snapshot_interval_s
        self.writes_snapshots, self.transactional_id, self.clock = writes_snapshots, transactional_id, clock
        self.origin = uuid.uuid4().hex[:16]
        self.seq = 0  # of this worker's last delta message
        self.applied: dict[int, int] = {}  # model-sync partition → next offset (every record before it applied)
        self.included: dict[str, int] = {}  # origin → newest seq applied here
        self.caught_up = asyncio.Event()
        self.restored = 0  # item states read back at start
        self.snapshots = 0
        self.full_next = False  # the next snapshot writes every key (see ``_not_writing``)
        self.producer = None

    async def run(self) -> None:
        self.producer = self.io.producer(acks="all", enable_idempotence=True, linger_ms=5)
        await self.producer.start()
        consumer = self.io.consumer(group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                    isolation_level="read_committed")  # a snapshot's delta commits with it
        await consumer.start()
        try:
            tps = await self._restore(consumer)
            ends = await consumer.end_offsets(tps)
            # the position, not the last record: a snapshot's transaction leaves a commit marker
            # after its delta, which a read_committed reader never receives as a record
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                self._apply_batch(await consumer.getmany(timeout_ms=200, max_records=2_000))
            if self.after_apply is not None:
                await self.after_apply()
            log.info("model sync: %d states restored, deltas replayed to the end of %s",
                     self.restored, self.sync_topic)
            self.caught_up.set()
            next_sync = self.clock() + self.interval_s
            next_snapshot = self.clock() + self.snapshot_interval_s
            while True:
                wait = max(0.0, min(next_sync, next_snapshot) - self.clock())
                if self._apply_batch(await consumer.getmany(timeout_ms=int(min(wait, 0.5) * 1000), max_records=2_000)):
                    if self.after_apply is not None:
                        await self.after_apply()
                now = self.clock()
                if now >= next_sync:
                    try:
                        await self.publish()
                    except Exception as exc:  # the broker away, a record refused: never the worker's end
                        log.error("model sync: deltas not sent (%s: %s); they are lost to the other workers",
                                  type(exc).__name__, exc)
                    next_sync = now + self.interval_s
                if now >= next_snapshot:
                    if not self.writes_snapshots():
                        self._not_writing()
                    else:
                        try:
                            await self.snapshot()
                        except Exception as exc:  # fenced by another writer, broker away: next time
                            log.warning("model state: snapshot not written (%s); tried again in %.0f s",
                                        type(exc).__name__, self.snapshot_interval_s)
                    next_snapshot = now + self.snapshot_interval_s
        finally:
            await consumer.stop()
            await self.producer.stop()

    async def _restore(self, consumer) -> list[TopicPartition]:
        """Put the snapshot back; seek the model-sync partitions to where it ends."""
        records = await self.io.latest_values(self.state_topic, range(self.partitions))
        checkpoint = records.pop(CHECKPOINT_KEY, None)
        by_part: dict[str, dict[str, bytes]] = {p.name: {} for p in self.parts}
        longest_first = sorted(self.parts, key=lambda p: -len(p.key_prefix))
        for key, value in records.items():
            part = next((p for p in longest_first if key.startswith(p.key_prefix)), None)
            if part is not None and value is not None:
                by_part[part.name][key[len(part.key_prefix):]] = value
        self.restored = sum(p.restore(by_part[p.name]) for p in self.parts)
        positions: dict[int, int] = {}
        if checkpoint is not None:
            try:
                doc = json.loads(checkpoint)
                positions = {int(p): int(o) for p, o in doc["positions"].items()}
                self.included = {str(o): int(s) for o, s in doc["included"].items()}
            except (ValueError, TypeError, KeyError, AttributeError):
                log.error("model sync: the checkpoint record of %s is unreadable; deltas replayed from the start",
                          self.state_topic)
                positions, self.included = {}, {}
        for part in self.parts:
            part.changed.clear()  # what was just read back is already in the snapshot
        tps = [TopicPartition(self.sync_topic, p) for p in range(self.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for tp in tps:
            start = await consumer.position(tp)  # the log start (older deltas may be gone)
            if positions.get(tp.partition, 0) > start:
                consumer.seek(tp, positions[tp.partition])
            self.applied[tp.partition] = max(start, positions.get(tp.partition, 0))
        return tps

    def _apply_batch(self, batch: dict) -> int:
        """Apply the other workers' messages of ``batch``; how many were applied."""
        applied = unreadable = 0
        for tp, records in batch.items():
            for r in records:
                try:
                    origin, seq, docs = sync_message.decode(r.value or b"")
                    if origin == self.origin or seq <= self.included.get(origin, 0):
                        continue  # this worker's own, or already in the snapshot it started from
                    for name, doc in docs.items():
                        part = self.by_name.get(name)
                        if part is not None:  # a part this version does not know is left out
                            part.apply_doc(doc)
                except ValueError as exc:
                    unreadable += 1
                    log.error("model sync: the record at %s[%d]@%d is not a model-sync message (%s); skipped",
                              r.topic, r.partition, r.offset, exc)
                    continue
                self.included[origin] = seq
                applied += 1
                metrics.record_model_sync("applied", len(r.value))
            if records:
                self.applied[tp.partition] = records[-1].offset + 1
        if unreadable:
            metrics.record_model_sync("unreadable", 0, unreadable)
        return applied

    def _take(self) -> list[bytes]:
        """This worker's deltas since the last call, as messages of at most about
        ``MAX_MESSAGE_BYTES`` each (none: it learnt nothing)."""
        out = []
        for part in self.parts:
            for doc in part.take_docs():
                self.seq += 1
                out.append(sync_message.encode(self.origin, self.seq, {part.name: doc}))
        return out

    def _not_writing(self) -> None:
        """Another worker writes the snapshots: forget what changed (kept, it would grow without
        bound); should this worker start writing, its first snapshot is a full one."""
        for part in self.parts:
            part.changed.clear()
        self.full_next = True

    async def publish(self) -> None:
        """Send what this worker learnt since its last message (nothing if it learnt nothing)."""
        sent = [(await self.producer.send(self.sync_topic, value=data, key=self.origin.encode()), len(data))
                for data in self._take()]
        for future, size in sent:
            await future
            metrics.record_model_sync("sent", size)

    async def snapshot(self) -> None:
        """Write the state of every item changed since the last snapshot, then the checkpoint, in
        one transaction (a snapshot lands whole or not at all, and a second writer, during a
        rebalance, fences the first)."""
        own = self._take()  # this worker's deltas become part of the snapshot, and are still sent
        # one synchronous capture: nothing is learnt or applied between these lines
        # a worker that starts writing (the first time, or after a failover) writes every key it
        # holds: it does not know what changed since the previous writer's last snapshot
        changed = {p.name: p.all_keys() if self.full_next else p.changed for p in self.parts}
        records: dict[str, bytes | None] = {}
        for part in self.parts:
            part.changed = set()
            records.update((part.key_prefix + k, v) for k, v in part.snapshot(changed[part.name]).items())
        checkpoint = json.dumps({"positions": {str(p): o for p, o in self.applied.items()},
                                 "included": {**self.included, self.origin: self.seq},
                                 "written_at": time.time()}).encode()
        producer = self.io.producer(transactional_id=self.transactional_id, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            async with producer.transaction():
                for item, value in records.items():
                    await producer.send(self.state_topic, value=value, key=item.encode())
                await producer.send(self.state_topic, value=checkpoint, key=CHECKPOINT_KEY.encode())
                for data in own:
                    await producer.send(self.sync_topic, value=data, key=self.origin.encode())
        except Exception:
            for part in self.parts:  # written again with the next snapshot
                part.changed |= changed[part.name]
            raise
        finally:
            await producer.stop()
        for data in own:
            metrics.record_model_sync("sent", len(data))
        self.snapshots += 1
        self.full_next = False
        metrics.record_model_snapshot(len(records))
        log.info("model state: %d item states and a checkpoint written to %s", len(records), self.state_topic)


def register(rt, catalog_ready: asyncio.Event, writes_snapshots: Callable[[], bool]) -> ModelSync:
    """Run model sync for ``rt``'s recommender (and reply suggester, if any) as a task of
    ``rt.app``, after the catalog is in (item states refer to its posts)."""
    from streams.engine_io import KafkaIO

    s = rt.settings
    parts: list[SharedPart] = [ItemState(rt.recommender)]
    after_apply = None
    if rt.recommender.trends is not None:
        parts.append(rt.recommender.trends)
    if rt.recommender.blend is not None:
        parts.append(rt.recommender.blend)
    if rt.replies is not None:
        parts.append(ReplyState(rt.replies))
        after_apply = rt.embed_admitted_replies  # replies admitted by another worker's messages

    sync = ModelSync(KafkaIO(s), parts, sync_topic(s), state_topic(s), s.partitions,
                     interval_s=s.sync_interval_s, snapshot_interval_s=s.snapshot_interval_s,
                     writes_snapshots=writes_snapshots, transactional_id=f"{s.app_id}-model-state",
                     after_apply=after_apply)

    @rt.app.task
    async def sync_models():
        await catalog_ready.wait()
        await sync.run()

    return sync
