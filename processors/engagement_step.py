"""The engagement engine's per-batch step, broker-free: records + profiles → what to send, save
and commit.

:class:`ProfileStore` holds the profiles of the partitions a worker owns, each filed under the
partition its events come from (its changelog partition), with a least-recently-active bound
per partition.  :meth:`EngagementStep.fold_batch` decodes and folds a batch of records into it
and returns one :class:`FoldedBatch`: the records to dead-letter (errors as data, with their
reason), the profiles to save and drop, the users due a recommendation, the counts for metrics,
and the input offsets to commit.  Kafka I/O (fetching, sending, committing, transactions) stays
in :mod:`streams.engagement_engine`; records are anything shaped like aiokafka's ``ConsumerRecord``
(``topic``, ``partition``, ``offset``, ``timestamp`` in ms, ``key``, ``value``).

Examples
--------
>>> from types import SimpleNamespace as Rec
>>> from processors.recommender import Recommender
>>> step = EngagementStep(Recommender(dim=4), ProfileStore(limit=100, ttl_s=0))
>>> step.store.ready.add(0)
>>> like = b'{"schema_version": 1, "user_id": "u1", "post_id": "p1"}'
>>> batch = {("likes", 0): [Rec(topic="likes", partition=0, offset=7, timestamp=10_000, key=b"u1", value=like),
...                         Rec(topic="likes", partition=0, offset=8, timestamp=10_000, key=b"u1", value=b"{")]}
>>> done = step.fold_batch(batch, now=10.0)
>>> done.dirty, [reason[:12] for _, reason in done.dead_letters], done.offsets
({'u1': 0}, ['invalid JSON'], {('likes', 0): 9})
>>> step.fold_batch(batch, now=11.0).counts["replay"]  # the same records again change nothing
1
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from processors.events import Follow, Rejected, decode
from processors.eviction import RecencyIndex
from processors.folding import fold
from processors.profiles import UserProfile
from processors.recommender import Recommender
from processors.sentiment_protocol import SentimentAnalyzer

log = logging.getLogger("ripple.worker")


class ProfileStore:
    """Profiles of the owned partitions (``ready``: read back and usable), bounded per partition
    by ``limit`` profiles and an idle ``ttl_s`` (least recently active dropped first)."""

    def __init__(self, limit: int, ttl_s: float):
        self.profiles: dict[str, UserProfile] = {}
        self.partition_of: dict[str, int] = {}
        self.index = RecencyIndex(limit, ttl_s)
        self.ready: set[int] = set()

    def __contains__(self, user: str) -> bool:
        return user in self.profiles

    def __getitem__(self, user: str) -> UserProfile:
        return self.profiles[user]

    def restore(self, partitions: Iterable[int], profiles: Iterable[UserProfile], now: float) -> list[UserProfile]:
        """Take ``profiles`` read back from the changelog of ``partitions``; returns those kept."""
        parts = set(partitions)
        kept = []
        for profile in sorted(profiles, key=lambda p: p.last_ts):  # oldest activity first, as the index expects
            part = min(profile.partitions() & parts, default=None)
            if part is None:
                continue
            self.profiles[profile.user_id] = profile
            self.partition_of[profile.user_id] = part
            self.index.touch(part, profile.user_id, now)
            kept.append(profile)
        self.ready |= parts
        return kept

    def drop(self, partitions: set[int]) -> None:
        """Forget the profiles of ``partitions`` (revoked, or to be read back again)."""
        for user in [u for u, p in self.partition_of.items() if p in partitions]:
            self.profiles.pop(user, None)
            self.partition_of.pop(user, None)
        self.ready -= partitions
        for p in partitions:
            for user in self.index.keys(p):
                self.index.discard(p, user)

    def touch(self, user: str, partition: int, now: float) -> tuple[UserProfile, list[str]]:
        """``user``'s profile (new if unknown), filed under ``partition``, and the users of that
        partition dropped to make room (their profiles are gone from the store)."""
        profile = self.profiles.get(user)
        if profile is None:
            profile = self.profiles[user] = UserProfile(user)
        self.partition_of[user] = partition
        evicted = [old for old in self.index.touch(partition, user, now)
                   if old != user and self.profiles.pop(old, None) is not None]
        for old in evicted:
            self.partition_of.pop(old, None)
        return profile, evicted


@dataclass
class FoldedBatch:
    """What one batch did: everything the I/O layer sends, saves, counts and commits.

    ``dirty``: user → partition of the profiles to save; ``publish``: users due a recommendation,
    in order; ``tombstones``: (user, partition) of dropped profiles; ``seen``: (user, event time)
    of applied events; ``offsets``: (topic, partition) → next offset to commit.
    """

    dead_letters: list[tuple[object, str]] = field(default_factory=list)
    dirty: dict[str, int] = field(default_factory=dict)
    publish: dict[str, None] = field(default_factory=dict)
    tombstones: list[tuple[str, int]] = field(default_factory=list)
    seen: list[tuple[str, float]] = field(default_factory=list)
    consumed: Counter = field(default_factory=Counter)  # (logical topic, kind) → records
    counts: Counter = field(default_factory=Counter)  # applied, replay, duplicate, out_of_order, evicted, owed_dropped, factor_updates
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


Decoder = Callable[[str, bytes | None, float, bytes | None], object]


class EngagementStep:
    """Decode and fold batches of engagement records into ``store`` and ``recommender``.

    ``decoder(topic, value, default_ts, key)`` gives an event or a :class:`Rejected` (default:
    :func:`processors.events.decode` with its default limits, key not checked); ``logical`` maps a topic as read
    to its logical name (``<prefix>likes`` → ``likes``).
    """

    def __init__(self, recommender: Recommender, store: ProfileStore, *, decoder: Decoder | None = None,
                 logical: Callable[[str], str] = str, sentiment: SentimentAnalyzer | None = None,
                 dedup_limit: int = 100):
        self.recommender, self.store = recommender, store
        self.decoder = decoder or (lambda topic, value, ts, key: decode(topic, value, default_ts=ts))
        self.logical, self.sentiment, self.dedup_limit = logical, sentiment, dedup_limit

    def fold_batch(self, batch: Mapping[object, Sequence], now: float, *, publish: Iterable[str] = ()) -> FoldedBatch:
        """Fold every record of ``batch`` (partition → records, in offset order); ``publish``:
        users already owed a recommendation, who come first.  A record that cannot be decoded or
        folded is a dead letter; nothing here raises for one record."""
        out = FoldedBatch()
        throttle = self.recommender.throttle
        for user in publish:
            if user in self.store:
                out.publish[user] = None
            elif throttle.forget(user):  # owed, but the profile was evicted since
                out.counts["owed_dropped"] += 1
        for records in batch.values():
            if not records:
                continue
            topic = self.logical(records[0].topic)
            for r in records:
                ev = self.decoder(topic, r.value, (r.timestamp / 1000.0) or now, r.key)
                if isinstance(ev, Rejected):
                    out.consumed[(topic, "invalid")] += 1
                    out.dead_letters.append((r, ev.reason))
                    continue
                out.consumed[(topic, "follow" if isinstance(ev, Follow) else ev.kind)] += 1
                try:
                    self._fold_one(ev, r, out, now)
                except Exception as exc:  # never crash the worker on one event
                    log.exception("processing failed for %s[%d]@%d", r.topic, r.partition, r.offset)
                    out.dead_letters.append((r, f"processing error: {type(exc).__name__}: {exc}"[:300]))
            out.offsets[(records[-1].topic, records[-1].partition)] = records[-1].offset + 1
        return out

    def _fold_one(self, ev, r, out: FoldedBatch, now: float) -> None:
        user = ev.user_id
        profile, evicted = self.store.touch(user, r.partition, now)
        for old in evicted:
            out.dirty.pop(old, None)
            out.publish.pop(old, None)
            out.tombstones.append((old, r.partition))
            if self.recommender.throttle.forget(old):
                out.counts["owed_dropped"] += 1
        out.counts["evicted"] += len(evicted)
        done = fold(self.recommender, profile, ev, f"{r.topic}:{r.partition}", r.offset,
                    sentiment=self.sentiment, dedup_limit=self.dedup_limit)
        if done.late and done.outcome == "applied":  # out-of-order delivery around a rebalance
            out.counts["out_of_order"] += 1
            log.info("applying %s[%d]@%d after a later offset of that partition (out-of-order delivery)",
                     r.topic, r.partition, r.offset)
        out.counts[done.outcome] += 1
        if done.outcome == "replay":  # saved before, but its message may never have left
            if profile.unpublished():
                self.recommender.throttle.defer(user)
            return
        out.dirty[user] = r.partition  # applied, or a duplicate whose position is recorded
        if done.outcome == "duplicate":
            return
        out.counts["factor_updates"] += done.factor_updates
        out.seen.append((user, (r.timestamp / 1000.0) or now))
        if done.due_now:
            out.publish[user] = None

    def publishing(self, users: Sequence[str], dirty: dict[str, int]) -> list[UserProfile]:
        """``users``' profiles, marked as published (so saved with this batch) and settled with
        the throttle, before they are scored (scoring may ask the throttle to retry a user)."""
        now = self.recommender.clock()
        profiles = [self.store[u] for u in users]
        for profile in profiles:
            profile.published_events = profile.events
            dirty[profile.user_id] = self.store.partition_of[profile.user_id]
            self.recommender.throttle.settle(profile.user_id, now)
        return profiles
