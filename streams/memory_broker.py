"""An in-memory stand-in for the part of Kafka the engagement engine uses, for fast contract tests.

:class:`MemoryBroker` keeps partitioned logs, consumer groups with committed offsets and eager
rebalances (every member revokes, then the range assignment is handed out), and transactions
(records pending until commit, invisible to ``read_committed`` readers when aborted, offsets
committed with the transaction, fencing by transactional id and epoch).  :class:`MemoryIO` hands
out consumers and producers with the same methods as aiokafka's, so :class:`streams.engagement_engine.
EngagementEngine` runs unchanged on it; ``tests/contract`` runs one suite against this and a real
broker.  Errors are aiokafka's exception types, so the engine's handlers see the same ones.

Not modelled: replication, retention, compaction (readers keep the newest value per key, as a
compacted topic's reader does), quotas, timeouts other than a crashed member leaving at once.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalOperation, KafkaConnectionError, ProducerFenced


@dataclass
class Entry:
    """One record of a partition log, shaped like aiokafka's ``ConsumerRecord`` where read."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int  # ms
    txn: "Transaction | None" = None

    def visible(self, read_committed: bool) -> bool:
        return self.txn is None or not read_committed or self.txn.state == "committed"


@dataclass
class Transaction:
    txn_id: str
    epoch: int
    state: str = "open"  # open → committed | aborted
    offsets: dict[str, dict[TopicPartition, int]] = field(default_factory=lambda: defaultdict(dict))


class Group:
    def __init__(self):
        self.committed: dict[TopicPartition, int] = {}
        self.members: list["MemoryConsumer"] = []
        self.revoked: set["MemoryConsumer"] = set()
        self.assigned = asyncio.Event()


class MemoryBroker:
    def __init__(self, clock=None):
        self.logs: dict[str, list[list[Entry]]] = {}
        self.groups: dict[str, Group] = defaultdict(Group)
        self.epochs: dict[str, int] = {}
        self.open: dict[str, Transaction] = {}
        self.clock = clock or time.time
        self.changed = asyncio.Condition()

    def create_topic(self, name: str, partitions: int) -> None:
        self.logs.setdefault(name, [[] for _ in range(partitions)])

    def partitions(self, topic: str) -> list[TopicPartition]:
        return [TopicPartition(topic, p) for p in range(len(self.logs[topic]))]

    def append(self, topic: str, key, value, partition: int | None, txn: Transaction | None, now_ms: int) -> Entry:
        logs = self.logs[topic]
        if partition is None:
            partition = zlib.crc32(key) % len(logs) if key is not None else 0
        log = logs[partition]
        entry = Entry(topic, partition, len(log), key, value, now_ms, txn)
        log.append(entry)
        return entry

    def stable_end(self, tp: TopicPartition, read_committed: bool) -> int:
        """The end a reader may read to: the first open transaction's record (read_committed) or the log end."""
        log = self.logs[tp.topic][tp.partition]
        if read_committed:
            for entry in log:
                if entry.txn is not None and entry.txn.state == "open":
                    return entry.offset
        return len(log)

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    # -- transactions -------------------------------------------------------------------
    def init_transactions(self, txn_id: str) -> int:
        """Bump ``txn_id``'s epoch (fencing older producers) and abort what it left open."""
        old = self.open.pop(txn_id, None)
        if old is not None:
            old.state = "aborted"
        self.epochs[txn_id] = self.epochs.get(txn_id, 0) + 1
        return self.epochs[txn_id]

    def check_epoch(self, txn_id: str, epoch: int) -> None:
        if self.epochs.get(txn_id) != epoch:
            raise ProducerFenced()

    # -- consumer groups ----------------------------------------------------------------
    def rebalance(self, group: Group) -> None:
        group.revoked = set()
        group.assigned = asyncio.Event()
        for member in group.members:
            member.rebalance_due = True
        if not group.members:
            group.assigned.set()

    def assign_range(self, group: Group) -> None:
        """Kafka's range assignor: each topic's partitions split in order over the members."""
        members = sorted(group.members, key=lambda m: m.member_id)
        for m in members:
            m.next_assignment = set()
        topics = sorted({t for m in members for t in m.topics})
        for topic in topics:
            subs = [m for m in members if topic in m.topics]
            tps = self.partitions(topic)
            per, extra = divmod(len(tps), len(subs))
            start = 0
            for i, m in enumerate(subs):
                n = per + (1 if i < extra else 0)
                m.next_assignment |= set(tps[start:start + n])
                start += n
        group.assigned.set()


class MemoryConsumer:
    """The aiokafka ``AIOKafkaConsumer`` methods the engine and the contract suite use."""

    _ids = 0

    def __init__(self, broker: MemoryBroker, group_id: str | None = None, isolation_level: str = "read_uncommitted",
                 **_ignored):
        MemoryConsumer._ids += 1
        self.member_id = f"member-{MemoryConsumer._ids:06d}"
        self.broker, self.group_id = broker, group_id
        self.read_committed = isolation_level == "read_committed"
        self.topics: list[str] = []
        self.listener = None
        self.assigned: set[TopicPartition] = set()
        self.next_assignment: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.rebalance_due = False
        self.closed = self.dead = False
        self.before_commit = lambda: None  # fault injection (MemoryIO.kill_at_next_commit)

    @property
    def group(self) -> Group:
        return self.broker.groups[self.group_id]

    async def start(self) -> None:
        pass

    def subscribe(self, topics, listener=None) -> None:
        if listener is not None and not isinstance(listener, ConsumerRebalanceListener):
            raise TypeError("listener should be an instance of ConsumerRebalanceListener")  # as aiokafka says
        self.topics, self.listener = list(topics), listener
        self.group.members.append(self)
        self.broker.rebalance(self.group)

    def assign(self, tps) -> None:
        self.assigned = set(tps)
        for tp in tps:
            self.positions.setdefault(tp, 0)

    async def stop(self) -> None:
        """Leave the group (no revocation callback: the caller settled before stopping)."""
        self._leave()

    def crash(self) -> None:
        """A ``kill -9``: the member is gone at once, with nothing committed or revoked."""
        self._leave()
        self.dead = True

    def _leave(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.group_id is not None and self in self.group.members:
            self.group.members.remove(self)
            self.broker.rebalance(self.group)

    async def _rebalance(self, timeout_s: float) -> bool:
        """Take part in a pending rebalance: revoke everything, wait for every member, take the
        new assignment.  False: the others are not done yet (try again on the next poll)."""
        group = self.group
        if self.rebalance_due:
            self.rebalance_due = False
            if self.listener is not None:
                await self.listener.on_partitions_revoked(set(self.assigned))
            self.assigned, self.positions = set(), {}
            group.revoked.add(self)
            if all(m in group.revoked for m in group.members):
                self.broker.assign_range(group)
        if self not in group.revoked:
            return True
        try:
            await asyncio.wait_for(group.assigned.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        group.revoked.discard(self)
        self.assigned = set(self.next_assignment)
        for tp in self.assigned:
            self.positions[tp] = group.committed.get(tp, 0)
        if self.listener is not None:
            await self.listener.on_partitions_assigned(set(self.assigned))
        return True

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_beginning(self, *tps) -> None:
        for tp in tps:
            self.positions[tp] = 0

    async def end_offsets(self, tps) -> dict[TopicPartition, int]:
        return {tp: self.broker.stable_end(tp, self.read_committed) for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.group.committed.get(tp)

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.broker.logs[tp.topic][tp.partition])

    async def commit(self, offsets: dict) -> None:
        _alive(self)
        self.before_commit()
        if self.rebalance_due or any(tp not in self.assigned for tp in offsets):
            raise CommitFailedError("the group rebalanced: partitions are no longer assigned to this member")
        self.group.committed.update(offsets)

    async def getmany(self, *tps, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        _alive(self)
        await asyncio.sleep(0)  # a fetch always yields to the event loop, as a network read does
        timeout_s = timeout_ms / 1000
        if self.group_id is not None and self.topics and not await self._rebalance(timeout_s):
            return {}
        out = self._fetch(set(tps) or self.assigned, max_records)
        if not out and timeout_s > 0:
            async with self.broker.changed:
                try:
                    await asyncio.wait_for(self.broker.changed.wait(), timeout_s)
                except asyncio.TimeoutError:
                    pass
            if not self.rebalance_due:
                out = self._fetch(set(tps) or self.assigned, max_records)
        return out

    def _fetch(self, tps, max_records: int | None) -> dict:
        out, left = {}, max_records or 1 << 30
        for tp in sorted(tps):
            log = self.broker.logs[tp.topic][tp.partition]
            end = self.broker.stable_end(tp, self.read_committed)
            pos, got = self.positions.get(tp, 0), []
            while pos < end and len(got) < left:
                entry = log[pos]
                pos += 1
                if entry.txn is not None and entry.txn.state == "aborted" and self.read_committed:
                    continue
                got.append(entry)
            self.positions[tp] = pos
            if got:
                out[tp] = got
                left -= len(got)
        return out


class MemoryProducer:
    """The aiokafka ``AIOKafkaProducer`` methods the engine uses, transactions included."""

    def __init__(self, broker: MemoryBroker, transactional_id: str | None = None, **_ignored):
        self.broker, self.txn_id = broker, transactional_id
        self.epoch = 0
        self.txn: Transaction | None = None
        self.dead = False
        self.before_commit = lambda: None  # fault injection (MemoryIO.kill_at_next_commit)

    def crash(self) -> None:
        """A ``kill -9``: nothing more is written; an open transaction stays open until fenced."""
        self.dead = True

    async def start(self) -> None:
        if self.txn_id is not None:
            self.epoch = self.broker.init_transactions(self.txn_id)
            await self.broker.notify()

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value=None, key=None, partition=None) -> asyncio.Future:
        _alive(self)
        if self.txn_id is not None:
            self.broker.check_epoch(self.txn_id, self.epoch)
            if self.txn is None:
                raise IllegalOperation("a transactional producer sends inside a transaction only")
        entry = self.broker.append(topic, key, value, partition, self.txn, int(self.broker.clock() * 1000))
        await self.broker.notify()
        done = asyncio.get_running_loop().create_future()
        done.set_result(entry)
        return done

    async def begin_transaction(self) -> None:
        _alive(self)
        self.broker.check_epoch(self.txn_id, self.epoch)
        self.txn = self.broker.open[self.txn_id] = Transaction(self.txn_id, self.epoch)

    async def send_offsets_to_transaction(self, offsets: dict, group_id: str) -> None:
        _alive(self)
        self.broker.check_epoch(self.txn_id, self.epoch)
        self.txn.offsets[group_id].update(offsets)

    async def commit_transaction(self) -> None:
        _alive(self)
        self.before_commit()
        txn, self.txn = self.txn, None
        self.broker.check_epoch(self.txn_id, self.epoch)
        txn.state = "committed"
        self.broker.open.pop(self.txn_id, None)
        for group_id, offsets in txn.offsets.items():
            self.broker.groups[group_id].committed.update(offsets)
        await self.broker.notify()

    async def abort_transaction(self) -> None:
        _alive(self)
        txn, self.txn = self.txn, None
        if txn is not None and txn.state == "open":
            txn.state = "aborted"
            self.broker.open.pop(self.txn_id, None)
        await self.broker.notify()

    def transaction(self):
        return _TransactionContext(self)


def _alive(client) -> None:
    if client.dead:
        raise KafkaConnectionError("this client's process was killed")


class _TransactionContext:
    def __init__(self, producer: MemoryProducer):
        self.producer = producer

    async def __aenter__(self):
        await self.producer.begin_transaction()
        return self

    async def __aexit__(self, exc_type, exc, tb):
        if exc_type is None:
            await self.producer.commit_transaction()
        else:
            await self.producer.abort_transaction()
        return False


class MemoryIO:
    """What :class:`streams.engine_io.KafkaIO` gives the engine, on a :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker):
        self.broker = broker
        self.clients: list = []
        self.kill_pending = False

    def consumer(self, **kwargs) -> MemoryConsumer:
        return self._made(MemoryConsumer(self.broker, **kwargs))

    def producer(self, **kwargs) -> MemoryProducer:
        return self._made(MemoryProducer(self.broker, **kwargs))

    def _made(self, client):
        client.before_commit = self._before_commit
        self.clients.append(client)
        return client

    def kill_at_next_commit(self) -> None:
        """Fault injection: the next offset or transaction commit of these clients finds the
        process killed (everything before it was written; the commit never happens)."""
        self.kill_pending = True

    def _before_commit(self) -> None:
        if self.kill_pending:
            self.crash()
            raise KafkaConnectionError("killed before the commit")

    def crash(self) -> None:
        """``kill -9`` of the process that holds these clients."""
        for client in self.clients:
            client.crash()

    async def latest_values(self, topic: str, partitions) -> dict[str, bytes | None]:
        latest: dict[str, bytes | None] = {}
        for p in partitions:
            tp = TopicPartition(topic, p)
            for entry in self.broker.logs[topic][p][:self.broker.stable_end(tp, True)]:
                if entry.visible(read_committed=True) and entry.key is not None:
                    latest[entry.key.decode("utf-8", "replace")] = entry.value or None
        return latest
