"""The engagement engine: the engagement topics read with a plain aiokafka consumer in
``getmany`` batches instead of Faust's per-message streams.

Faust's consumer, stream and producer machinery costs a few hundred µs per message on a small
machine (``ripple bench`` measures a bare Faust agent next to the worker); this engine pays the
per-message price of aiokafka instead and does the rest once per batch.  It runs inside the Faust
worker (an ``app.task``), next to the Faust agents that embed posts and suggest replies, and
shares their catalog and models.

Per batch: decode and :func:`processors.folding.fold` every record into its user's profile (kept
in memory as objects); score the users the throttle allows (one message per user per batch, with
the user's newest state; users owed from earlier batches first) for at most
``engage_rec_budget_s`` (the rest are owed and come first next time, so a backlog is folded
rather than queued behind scoring); enqueue those messages and the dead letters.  When
``engage_fork_min_users`` or more are due, they are scored in a forked child instead
(:mod:`streams.forked`), on another core, while the next batch is folded, and their messages are
enqueued when the batch finishes.  The batch then *finishes* in the background while the next
one is folded: wait until the broker has its messages, write each changed profile once to the
profiles changelog (compacted, partition = input partition), wait for those, commit the input
offsets.  Batches finish in order, and at
most two are unfinished at a time.  A crash anywhere replays the uncommitted records, and the
positions stored in each profile make a replayed record a no-op: profile state is applied
exactly once, recommendations at least once.

With ``processing_guarantee=exactly_once`` a batch instead ends in one Kafka transaction per
partition number (:mod:`streams.transactions`): its recommendations, dead letters, profile
changelog records and input offsets commit together, so ``read_committed`` readers see each
batch's messages once.  Batches then finish one at a time, and scoring stays in the worker (a
forked child's messages would have to join a transaction that the next batch may already need).

State: on assignment, the assigned partitions' profiles are read back from the compacted
``<app_id>-profiles-changelog`` (``read_committed``); on
revocation the unfinished batches finish and commit first (the same lock), then those profiles
are dropped.  The engagement topics are assigned with the range assignor, so one worker owns a
partition number of every engagement topic, as the profiles are keyed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError

from processors.engagement_step import EngagementStep, FoldedBatch, ProfileStore
from processors.learned_blend import RANK_WEIGHTS
from processors.profiles import UserProfile
from streams import metrics, wire
from streams.app import ENGAGEMENT_TOPICS, Runtime
from streams.engine_io import KafkaIO
from streams.scoring import ScoredInChild, Scoring
from streams.transactions import Outgoing, PartitionBatch, PartitionTransactions, TransactionFailed

log = logging.getLogger("ripple.worker")


def changelog_topic(settings) -> str:
    """The compacted profiles changelog of the worker configured by ``settings``."""
    return f"{settings.app_id}-profiles-changelog"


def consumer_group(settings) -> str:
    """The engine's consumer group for a worker configured by ``settings`` (not the Faust app's:
    another assignor, another protocol)."""
    return f"{settings.app_id}-engage"


class EngagementEngine(ConsumerRebalanceListener):
    """Consume, fold, publish, save, commit: one batch at a time (see the module docstring)."""

    def __init__(self, rt: Runtime, io=None):
        self.rt = rt
        s = rt.settings
        self.io = io if io is not None else KafkaIO(s)  # or streams.memory_broker.MemoryIO
        self.store = ProfileStore(s.profile_limit, s.profile_ttl_s)
        self.step = EngagementStep(rt.recommender, self.store, decoder=rt.decoder.decode, logical=s.logical_topic,
                                   sentiment=rt.sentiment, dedup_limit=s.dedup_limit)
        self.lock = asyncio.Lock()
        self.consumer = None
        self.producer = None
        self.batches = 0
        self.owed_reported = 0  # throttle.owed as last counted in ripple_recommendations_deferred_total
        self.blend_reported: dict[str, int] = {}  # the blend's labelled lists as last counted
        self.committed: dict[TopicPartition, int] = {}  # next offset to read, as committed
        self.position: dict[TopicPartition, int] = {}  # next offset to fold; records before it are re-deliveries
        self.unrestored: set[int] = set()  # assigned partitions whose read-back failed: tried again each batch
        self.finishing: asyncio.Future | None = None  # the newest batch's _finish (each awaits the one before)
        self.before: asyncio.Future | None = None  # the _finish of the batch before it
        self.exactly_once = s.processing_guarantee == "exactly_once"
        self.transactions = PartitionTransactions(self.io, s.app_id, consumer_group(s)) if self.exactly_once else None
        fork = bool(s.engage_fork_min_users) and not self.exactly_once
        self.scoring = Scoring(rt, self.step, fork=fork)
        self._report_blend()  # exported from the start: the configured blend until one is learnt
        self.unsent: asyncio.Future | None = None  # the _finish that sends the newest child's messages

    def owns_partition_zero(self) -> bool:
        """True while this worker's engine holds partition 0 (its profiles read back): the
        worker that writes the item-side snapshots (:mod:`streams.model_sync`)."""
        return 0 in self.store.ready

    # -- lifecycle ---------------------------------------------------------------------
    async def run(self) -> None:
        """Until cancelled (the Faust worker stopping); commits what was processed on the way out."""
        s = self.rt.settings
        # no linger: a batch's messages are enqueued together, before the sender runs, so they are
        # batched anyway, and a linger would only hold every batch's finish (and the next batches) back
        # (exactly_once writes through the per-partition transactional producers only)
        self.producer = None if self.exactly_once else self.io.producer(linger_ms=0, acks="all", enable_idempotence=True)
        self.consumer = self.io.consumer(
            group_id=consumer_group(s), enable_auto_commit=False, auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,), max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=int(s.session_timeout_s * 1000),
            isolation_level="read_committed" if self.exactly_once else "read_uncommitted",
            heartbeat_interval_ms=int(min(3.0, s.session_timeout_s / 3) * 1000))
        if self.producer is not None:
            await self.producer.start()
        try:
            await self.consumer.start()
            self.consumer.subscribe([s.topic(t) for t in ENGAGEMENT_TOPICS], listener=self)
            wait_ms = int(max(0.01, min(0.1, s.rec_min_interval_s / 2)) * 1000)
            while True:
                batch = await self.consumer.getmany(timeout_ms=wait_ms, max_records=s.engage_batch_max)
                async with self.lock:
                    await self.process(batch)
        finally:
            try:
                await self.settled()  # the last batches' outputs, profiles and offsets
            finally:
                try:
                    await self.consumer.stop()  # leaves the group; everything processed was committed
                finally:
                    try:
                        if self.producer is not None:
                            await self.producer.stop()
                    finally:
                        if self.transactions is not None:
                            await self.transactions.stop()
                        self.scoring.close()

    # -- one batch ---------------------------------------------------------------------
    async def process(self, batch: dict) -> None:
        """Fold ``batch``, score and enqueue its messages, then leave the rest to :meth:`_finish`
        in the background: the next batch is folded and scored while the broker acknowledges
        this one.  Batches finish in order, so each step below still waits for the one before."""
        rt = self.rt
        if self.finishing is not None and self.finishing.done():
            self.finishing.result()  # a failed finish (the broker refused our writes) stops the engine
        if self.unrestored:  # partitions whose read-back failed: try again
            retried = set(self.unrestored)
            await self._try_assign(retried)
            if self.exactly_once:  # the read-back moved them to their committed offsets: records in hand are stale
                batch = {tp: records for tp, records in batch.items() if tp.partition not in retried}
        batch = self._unseen(self._restored_only(batch))
        if any(batch.values()) and not self.batches:  # ripple bench times a drain from this line (devtools/bench_timing.py)
            log.info("engage: first batch of %d records at %.6f (unix time)", sum(map(len, batch.values())), time.time())
        with metrics.observe_latency("engage"):
            # owed users first, oldest first, as many as a batch can serve (the rest keep their place)
            folded = self.step.fold_batch(batch, time.time(), publish=rt.recommender.due(limit=rt.settings.engage_batch_max))
            self._record(folded)
            dirty = folded.dirty
            outgoing, forked = await self.scoring.score(list(folded.publish), dirty)  # (home partition, message)
            dead_letter_topic = rt.settings.topic("dead-letter")
            outgoing += [(r.partition, Outgoing(dead_letter_topic, wire.dumps(rt.dead_letters.document(r, r.value, reason))))
                         for r, reason in folded.dead_letters]
            # the profiles as they are now (the next batch changes them while this one finishes)
            save = rt.recommender.save_user_state  # user factors go with the profile
            saves = [(u.encode(), wire.dumps(save(self.store[u]).to_dict()), p) for u, p in dirty.items()]
            saves += [(u.encode(), None, p) for u, p in folded.tombstones]
        offsets = {TopicPartition(*tp): offset for tp, offset in folded.offsets.items()}
        self.position.update(offsets)
        if self.transactions is not None:
            await self._commit_transactions(outgoing, saves, offsets)
            self.batches += any(batch.values())
            return
        sends = [self.producer.send(m.topic, m.value, key=m.key) for _, m in outgoing]
        if self.unsent is not None and not self.unsent.done():  # a child's messages go first (same users)
            late, outputs = sends, []
        else:
            late, outputs = [], [await send for send in sends]  # enqueued in order; futures of their acks
        if outputs or late or saves or offsets or forked:
            if self.finishing is not None and self.before is not None and not self.before.done():
                await asyncio.wait([self.before])  # at most two batches unfinished: the broker sets the pace
            self.before = self.finishing
            self.finishing = asyncio.ensure_future(self._finish(self.finishing, outputs, saves, offsets, forked, late))
            if forked is not None:
                self.unsent = self.finishing
        self.batches += any(batch.values())

    async def _finish(self, previous: asyncio.Future | None, outputs: list, saves: list, offsets: dict,
                      forked: ScoredInChild | None = None, late: tuple = ()) -> None:
        """After the batch before it: send the recommendations a child ranked (``forked``) and
        the messages held back behind an earlier child's (``late``: its users' older states must
        not come last), wait until the broker has this batch's messages, then write its profiles
        to the changelog, wait for those, and commit its offsets.  A saved "published" profile
        therefore always had its message sent, and a committed offset always had its profile
        saved."""
        if previous is not None:
            await previous
        if forked is not None:
            topic = self.rt.settings.topic("recommendations")
            outputs = outputs + [await self.producer.send(topic, doc, key=user.encode())
                                 for user, doc in await self.scoring.collect(forked)]
        outputs = outputs + [await send for send in late]
        if outputs:
            await asyncio.gather(*outputs)
        changelog = changelog_topic(self.rt.settings)
        acks = [await self.producer.send(changelog, value, key=key, partition=p) for key, value, p in saves]
        if acks:
            await asyncio.gather(*acks)
        if offsets:
            await self._commit(offsets)

    def _record(self, folded: FoldedBatch) -> None:
        """The batch's counts, as metrics."""
        for (topic, kind), n in folded.consumed.items():
            metrics.record_consumed(topic, kind, n)
        metrics.record_model_update("profile", folded.counts["applied"])
        metrics.record_model_update("factors", folded.counts["factor_updates"])
        metrics.record_engine_outcomes(folded.counts)
        for user, ts in folded.seen:
            self.rt.rec_clock.saw(user, ts)
        throttle = self.rt.recommender.throttle
        metrics.record_recommendations_deferred(throttle.owed - self.owed_reported)
        self.owed_reported = throttle.owed
        self._report_blend()
        metrics.set_recommendations_owed(len(throttle))

    def _report_blend(self) -> None:
        """The blend the worker ranks with (learnt or configured), and the lists labelled since
        the last report."""
        rec = self.rt.recommender
        rank = rec.config.rank if rec.blend is None else rec.blend.rank_config(rec.config.rank)
        labels = {} if rec.blend is None else dict(rec.blend.labels)
        metrics.record_blend({k: n - self.blend_reported.get(k, 0) for k, n in labels.items()},
                             {f: getattr(rank, w) for f, w in RANK_WEIGHTS.items()})
        self.blend_reported = labels

    async def _commit_transactions(self, outgoing: list, saves: list, offsets: dict) -> None:
        """``exactly_once``: the batch's messages, profile records and offsets, one transaction per
        partition number.  A partition whose transaction failed loses this batch's effects on its
        profiles (they are read back from the changelog, and its records are read again from the
        committed offsets), or, when another worker fenced it, the partition itself."""
        batches: dict[int, PartitionBatch] = defaultdict(PartitionBatch)
        for home, message in outgoing:
            batches[home].messages.append(message)
        changelog = changelog_topic(self.rt.settings)
        for key, value, p in saves:
            batches[p].messages.append(Outgoing(changelog, value, key, p))
        for tp, offset in offsets.items():
            batches[tp.partition].offsets[tp] = offset
        failed = await self.transactions.commit(batches)
        lost = {f.partition for f in failed}
        self.committed.update({tp: o for tp, o in offsets.items() if tp.partition not in lost})
        for failure in failed:
            await self._transaction_failed(failure)

    async def _transaction_failed(self, failure: TransactionFailed) -> None:
        p = failure.partition
        self._drop_partitions({p})
        if failure.fenced:  # another worker owns p now: stop writing for it; the rebalance takes it away
            log.warning("engage: partition %d was fenced by another worker; its state is dropped", p)
            await self.transactions.stop([p])
            return
        log.warning("engage: the transaction of partition %d was aborted (%s); reading its state back",
                    p, type(failure.cause).__name__)
        await self.transactions.stop([p])  # a fresh producer: the old one may be in a fatal state
        await self._try_assign({p})

    async def settled(self) -> None:
        """Wait until every processed batch has finished (outputs, profiles and offsets written)."""
        if self.finishing is not None:
            await self.finishing

    def _restored_only(self, batch: dict) -> dict:
        """The records of partitions whose profiles are restored.  aiokafka may hand out records
        of a newly assigned partition before ``on_partitions_assigned`` has read its profiles back;
        folding them into empty profiles would publish and save a state without the user's
        history.  They are fetched again (seek back) and not committed."""
        out = {}
        for tp, records in batch.items():
            if tp.partition in self.store.ready:
                out[tp] = records
            elif records:
                try:
                    self.consumer.seek(tp, records[0].offset)
                except Exception:  # no longer assigned: its next owner reads it from the committed offset
                    pass
        return out

    def _unseen(self, batch: dict) -> dict:
        """``batch`` without records before each partition's :attr:`position`: a fetch that was
        under way when :meth:`_seek_committed` moved the partition delivers them twice."""
        out = {}
        for tp, records in batch.items():
            start = self.position.get(tp)
            out[tp] = records if start is None or not records or records[0].offset >= start \
                else [r for r in records if r.offset >= start]
        return out

    def lags(self) -> dict[tuple[str, int], int]:
        """Records behind per owned partition: the end of the partition the consumer last saw
        (no request) minus the next offset this engine committed; partitions not fetched yet or
        never committed are left out."""
        if self.consumer is None:
            return {}
        out = {}
        for tp in self.consumer.assignment():
            end, done = self.consumer.highwater(tp), self.committed.get(tp)
            if end is not None and done is not None:
                out[(tp.topic, tp.partition)] = max(0, end - done)
        return out

    async def _commit(self, offsets: dict) -> None:
        try:
            await self.consumer.commit(offsets)
            self.committed.update(offsets)
        except KafkaError as exc:  # a rebalance under way: the records are replayed, and replays are no-ops
            log.warning("offset commit failed (%s); the batch will be replayed by the partitions' next owner",
                        type(exc).__name__)

    # -- rebalancing -------------------------------------------------------------------
    async def on_partitions_revoked(self, revoked) -> None:
        async with self.lock:  # the batch in flight finishes and commits first
            gone = {tp.partition for tp in revoked}
            try:
                await self.settled()
            finally:  # the partitions are gone whatever happened to the last batch
                self.unrestored -= gone
                self._drop_partitions(gone)
                if self.transactions is not None:
                    await self.transactions.stop(gone)
                self._report_partitions()

    def _drop_partitions(self, gone: set[int]) -> None:
        """Forget the profiles, positions and readiness of partition numbers ``gone``."""
        self.store.drop(gone)
        for positions in (self.committed, self.position):
            for tp in [tp for tp in positions if tp.partition in gone]:
                positions.pop(tp, None)

    async def on_partitions_assigned(self, assigned) -> None:
        async with self.lock:  # no batch is folded while profiles are being read back
            await self._try_assign({tp.partition for tp in assigned})

    async def _try_assign(self, partitions: set[int]) -> None:
        """:meth:`_assign`, never raising: a partition whose profiles could not be read back stays
        not ready (its records are fetched again, not folded) and is tried again next batch."""
        try:
            await self._assign(partitions)
            self.unrestored -= partitions
        except Exception as exc:  # the broker away, a transactional producer that cannot start, ...
            self.unrestored |= partitions - self.store.ready
            metrics.record_engine_outcomes({"restore_failed": 1})
            log.error("engage: reading back partitions %s failed (%s: %s); trying again with the next batch",
                      sorted(partitions - self.store.ready), type(exc).__name__, exc)
        self._report_partitions()

    def _report_partitions(self) -> None:
        assigned = {tp.partition for tp in self.consumer.assignment()} if self.consumer is not None else set()
        metrics.set_engine_partitions(len(assigned), len(assigned & self.store.ready))

    async def _assign(self, partitions: set[int]) -> None:
        parts = sorted(partitions - self.store.ready)
        if not parts:
            return
        t0 = time.perf_counter()
        if self.transactions is not None:  # fence the previous owner (its open transaction is aborted) ...
            await self.transactions.start(parts)
            await self._seek_committed(parts)  # ... then read from what it committed
        restored = await self._restore(parts)
        owed = self.rt.recommender.resume(self.store.restore(parts, restored, time.time()))
        log.info("engage: restored %d profiles of partitions %s in %.1f s; %d owed a recommendation",
                 len(restored), parts, time.perf_counter() - t0, owed)

    async def _seek_committed(self, parts: list[int]) -> None:
        """Position the engagement topics' partitions ``parts`` at their committed offsets (the
        first offset when none is committed), read after the previous owner was fenced."""
        for tp in [tp for tp in self.consumer.assignment() if tp.partition in parts]:
            offset = await self.consumer.committed(tp)
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)
            self.position[tp] = await self.consumer.position(tp)
            self.committed.pop(tp, None)

    async def _restore(self, parts: list[int]) -> list[UserProfile]:
        """The newest profile of every user in changelog ``parts`` (tombstones honoured); a record
        that is not a profile is logged by position and skipped, never fatal.  Keys are the user
        id's bytes; a user found under two keys (an older release wrote JSON-quoted keys) keeps
        the profile with the most events (a profile's count only grows), and is saved under its
        own key with its next change."""
        latest = await self.io.latest_values(changelog_topic(self.rt.settings), parts)
        profiles: dict[str, UserProfile] = {}
        for raw in latest.values():
            if not raw:
                continue
            try:
                profile = UserProfile.from_dict(json.loads(raw))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                metrics.record_engine_outcomes({"unreadable_profile": 1})
                log.error("engage: a profile record in partitions %s cannot be read (%s); skipped", parts,
                          type(exc).__name__)
                continue
            known = profiles.get(profile.user_id)
            if known is None or (profile.events, profile.last_ts) > (known.events, known.last_ts):
                profiles[profile.user_id] = profile
        return list(profiles.values())


def register(rt: Runtime, *ready: asyncio.Event) -> EngagementEngine:
    """Run the engine as a task of ``rt.app`` (started and cancelled with the Faust worker), once
    every event of ``ready`` is set (the catalog and the item-side model state are read back)."""
    engine = EngagementEngine(rt)

    @rt.app.task
    async def engage_batches():
        for event in ready:  # every post and item state written before the start is in first
            await event.wait()
        await engine.run()

    return engine
