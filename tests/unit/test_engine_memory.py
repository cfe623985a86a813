"""The engagement engine, unchanged, on the in-memory broker: batches, crashes, rebalances and
transactions in milliseconds.  The same cases on a real broker are in tests/integration."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter

import numpy as np
import pytest

from processors.events import Post
from processors.recommender import Recommender, RecommenderConfig
from ripple.settings import Settings
from streams import metrics
from streams.app import ENGAGEMENT_TOPICS, OUTPUT_TOPICS, Runtime
from streams.engagement_engine import EngagementEngine, changelog_topic, consumer_group
from streams.memory_broker import MemoryBroker, MemoryIO

PARTITIONS = 2


def _settings(guarantee: str, **overrides) -> Settings:
    return Settings(app_id="mem", partitions=PARTITIONS, processing_guarantee=guarantee, rec_min_interval_s=0.0,
                    engage_fork_min_users=0, **overrides)


def _broker(settings: Settings) -> MemoryBroker:
    broker = MemoryBroker()
    for name in (*ENGAGEMENT_TOPICS, *OUTPUT_TOPICS, "posts"):
        broker.create_topic(settings.topic(name), PARTITIONS)
    broker.create_topic(changelog_topic(settings), PARTITIONS)
    return broker


def _recommender() -> Recommender:
    rec = Recommender(dim=4, config=RecommenderConfig(k=3, min_interval_s=0.0))
    rng = np.random.default_rng(0)
    posts = [Post(f"p{i}", f"a{i % 3}", "", 1.0) for i in range(12)]
    vectors = rng.normal(size=(12, 4)).astype(np.float32)
    rec.on_posts(posts, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return rec


class Worker:
    """One engine on ``broker``, as a worker process would run it."""

    def __init__(self, broker: MemoryBroker, settings: Settings, io: MemoryIO | None = None):
        self.io = io or MemoryIO(broker)
        rt = Runtime(settings=settings, app=None, embedder=None, recommender=_recommender(), replies=None,
                     sentiment=None, topics={}, posts=None)
        self.engine = EngagementEngine(rt, self.io)
        self.task = asyncio.ensure_future(self.engine.run())

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def kill(self) -> None:
        """``kill -9``: nothing more is written, nothing is committed or revoked."""
        self.io.crash()
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task


async def _produce(broker: MemoryBroker, settings: Settings, likes: list[tuple[str, str]], raw: bytes | None = None):
    for user, post in likes:
        doc = {"schema_version": 1, "user_id": user, "post_id": post}
        broker.append(settings.topic("likes"), user.encode(), json.dumps(doc).encode(), None, None, 1_000)
    bad = broker.append(settings.topic("likes"), b"x", raw, None, None, 1_000) if raw is not None else None
    await broker.notify()
    return bad


def _read(broker: MemoryBroker, topic: str, *, committed_only: bool) -> list:
    return [e for log in broker.logs[topic] for e in log if e.visible(read_committed=committed_only)]


def _latest_profiles(broker: MemoryBroker, settings: Settings) -> dict[str, dict]:
    out = {}
    for e in _read(broker, changelog_topic(settings), committed_only=True):
        out[e.key.decode()] = json.loads(e.value) if e.value else None
    return out


async def _until(condition, timeout_s: float = 5.0) -> None:
    """Wait until ``condition()`` holds (checked after every broker write), or fail."""
    async def wait():
        while not condition():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(wait(), timeout_s)


def _committed_all(broker: MemoryBroker, settings: Settings) -> bool:
    group = broker.groups[consumer_group(settings)]
    return all(group.committed.get(tp, 0) == len(broker.logs[tp.topic][tp.partition])
               for tp in broker.partitions(settings.topic("likes")))


def _replays() -> float:
    return metrics.REGISTRY.get_sample_value("ripple_engine_records_total", {"outcome": "replay"})


def _events(broker, settings, users) -> dict:
    profiles = _latest_profiles(broker, settings)
    return {u: (profiles.get(u) or {}).get("events") for u in users}


LIKES = [(f"u{i % 5}", f"p{i % 12}") for i in range(40)]
EXPECTED = dict(Counter(u for u, _ in LIKES))


async def _one_worker_through_the_first_half(guarantee: str) -> tuple[Settings, MemoryBroker, Worker]:
    """A broker and one worker that has processed and committed the first half of :data:`LIKES`."""
    settings = _settings(guarantee)
    broker = _broker(settings)
    worker = Worker(broker, settings)
    await _produce(broker, settings, LIKES[:20])
    await _until(lambda: _committed_all(broker, settings))
    return settings, broker, worker


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_batch_is_folded_published_saved_and_committed(guarantee):
    async def run():
        settings = _settings(guarantee)
        broker = _broker(settings)
        worker = Worker(broker, settings)
        bad = await _produce(broker, settings, LIKES, raw=b'{"schema_version": 1')
        await _until(lambda: _committed_all(broker, settings) and _events(broker, settings, EXPECTED) == EXPECTED)
        recs = _read(broker, settings.topic("recommendations"), committed_only=True)
        dead = [json.loads(e.value) for e in _read(broker, settings.topic("dead-letter"), committed_only=True)]
        await worker.stop()
        return recs, dead, bad

    recs, dead, bad = asyncio.run(run())
    latest = {json.loads(e.value)["user_id"]: json.loads(e.value) for e in recs}
    assert {u: m["based_on_events"] for u, m in latest.items()} == EXPECTED
    assert all(len(m["items"]) == 3 for m in latest.values())
    assert [(d["topic"], d["partition"], d["offset"]) for d in dead] == [(bad.topic, bad.partition, bad.offset)]
    assert dead[0]["reason"].startswith("invalid JSON")


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_worker_killed_before_its_commit_is_replaced_without_losing_or_repeating_state(guarantee):
    """The kill lands after a batch's messages and profiles were written, before its commit."""
    async def run():
        settings, broker, first = await _one_worker_through_the_first_half(guarantee)
        first.io.kill_at_next_commit()
        await _produce(broker, settings, LIKES[20:])
        await _until(lambda: first.task.done())  # the run loop ended on the kill
        assert not _committed_all(broker, settings)  # the kill landed before the batch's commit
        replays = _replays()
        second = Worker(broker, settings)
        await _until(lambda: _committed_all(broker, settings) and _events(broker, settings, EXPECTED) == EXPECTED)
        await second.stop()
        topic = settings.topic("recommendations")
        return ([json.loads(e.value) for e in _read(broker, topic, committed_only=True)],
                [json.loads(e.value) for e in _read(broker, topic, committed_only=False)], _replays() - replays)

    committed, everything, replayed = asyncio.run(run())
    versions = Counter((m["user_id"], m["based_on_events"]) for m in committed)
    assert {u: max(n for (v, n) in versions if v == u) for u in EXPECTED} == EXPECTED
    if guarantee == "at_least_once":  # the killed batch's profiles were saved: its records replay as no-ops
        assert replayed == 20
    else:  # its transaction was aborted: the records are applied again, and read_committed sees each version once
        assert replayed == 0
        aborted = Counter((m["user_id"], m["based_on_events"]) for m in everything)
        assert max(aborted.values()) > 1, "no aborted message was written before the kill: the test proves nothing"
        assert max(versions.values()) == 1, versions


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_second_worker_takes_half_the_partitions_and_nothing_is_lost(guarantee):
    async def run():
        settings, broker, first = await _one_worker_through_the_first_half(guarantee)
        second = Worker(broker, settings)
        await _until(lambda: first.engine.store.ready and second.engine.store.ready)
        await _produce(broker, settings, LIKES[20:])
        await _until(lambda: _committed_all(broker, settings) and _events(broker, settings, EXPECTED) == EXPECTED)
        owned = (set(first.engine.store.ready), set(second.engine.store.ready))
        users = (set(first.engine.store.profiles), set(second.engine.store.profiles))
        await first.stop()
        await second.stop()
        return owned, users

    (a, b), (users_a, users_b) = asyncio.run(run())
    assert a | b == set(range(PARTITIONS)) and not a & b
    assert not users_a & users_b  # each profile lives in one worker


def test_a_zombie_worker_is_fenced_and_its_writes_are_never_committed(caplog):
    """``exactly_once``: a worker whose session expired while it was paused still holds records
    and tries to commit them; the worker that took its partitions fenced it first."""
    async def run():
        settings, broker, zombie = await _one_worker_through_the_first_half("exactly_once")
        zombie.engine.consumer._leave()  # its session expired; it does not know yet
        heir = Worker(broker, settings)
        await _until(lambda: heir.engine.store.ready == set(range(PARTITIONS)))
        await _produce(broker, settings, LIKES[20:])  # both fetch these
        await _until(lambda: _committed_all(broker, settings) and _events(broker, settings, EXPECTED) == EXPECTED)
        await _until(lambda: not zombie.engine.store.ready)  # the zombie dropped what it was fenced from
        await heir.stop()
        await zombie.stop()
        return [json.loads(e.value) for e in _read(broker, settings.topic("recommendations"), committed_only=True)]

    committed = asyncio.run(run())
    versions = Counter((m["user_id"], m["based_on_events"]) for m in committed)
    assert max(versions.values()) == 1, versions
    assert "was fenced by another worker" in caplog.text


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_failed_read_back_is_retried_and_nothing_is_lost(caplog, guarantee):
    """The first read-back of the assigned partitions fails (the broker away for a moment): the
    engine neither stalls nor folds records into empty profiles; the next batch tries again."""
    async def run():
        settings = _settings(guarantee)
        broker = _broker(settings)
        io = MemoryIO(broker)
        failures = []
        real = io.latest_values

        async def flaky(topic, partitions):
            if not failures:
                failures.append(list(partitions))
                raise ConnectionError("broker away")
            return await real(topic, partitions)
        io.latest_values = flaky
        worker = Worker(broker, settings, io)
        await _produce(broker, settings, LIKES)
        await _until(lambda: _committed_all(broker, settings) and _events(broker, settings, EXPECTED) == EXPECTED)
        await worker.stop()
        return failures

    assert asyncio.run(run()) == [[0, 1]]
    assert "reading back partitions [0, 1] failed (ConnectionError" in caplog.text


def test_user_ids_that_look_like_json_survive_a_restart_as_themselves():
    """A user id with a leading quote is stored and read back under its own bytes: it neither
    breaks the read-back of its partition nor merges with the unquoted id."""
    likes = [('"e_quote', "p1"), ('"e_base"', "p2"), ("e_base", "p3"), ("e_base", "p4"), ("e_base", "p5")]
    expected = dict(Counter(u for u, _ in likes))

    async def run():
        settings = _settings("at_least_once")
        broker = _broker(settings)
        first = Worker(broker, settings)
        await _produce(broker, settings, likes)
        await _until(lambda: _committed_all(broker, settings))
        await first.stop()
        second = Worker(broker, settings)
        await _produce(broker, settings, [(u, "p6") for u in expected])  # one more each, after the restart
        await _until(lambda: _committed_all(broker, settings)
                     and _events(broker, settings, expected) == {u: n + 1 for u, n in expected.items()})
        await second.stop()

    asyncio.run(run())


def test_a_mis_keyed_engagement_is_dead_lettered_and_the_rest_applied():
    async def run():
        settings = _settings("at_least_once")
        broker = _broker(settings)
        worker = Worker(broker, settings)
        await _produce(broker, settings, LIKES)
        doc = {"schema_version": 1, "user_id": "u0", "post_id": "p9"}
        bad = broker.append(settings.topic("likes"), b"someone-else", json.dumps(doc).encode(), None, None, 1_000)
        await broker.notify()
        await _until(lambda: _committed_all(broker, settings) and _events(broker, settings, EXPECTED) == EXPECTED)
        dead = [json.loads(e.value) for e in _read(broker, settings.topic("dead-letter"), committed_only=True)]
        await worker.stop()
        return dead, bad

    dead, bad = asyncio.run(run())
    assert [(d["partition"], d["offset"]) for d in dead] == [(bad.partition, bad.offset)]
    assert dead[0]["reason"].startswith("mis-keyed")


def _engine_partitions(outcome: str) -> float:
    return metrics.REGISTRY.get_sample_value("ripple_engine_partitions", {"outcome": outcome})


def test_partitions_whose_read_back_fails_show_as_assigned_not_ready_until_it_succeeds():
    async def run():
        settings = _settings("at_least_once")
        broker = _broker(settings)
        io = MemoryIO(broker)
        real, failures, away = io.latest_values, [], [True]

        async def failing_while_away(topic, partitions):
            if away[0]:  # the broker away during the read-back
                failures.append(topic)
                raise ConnectionError("broker away")
            return await real(topic, partitions)

        io.latest_values = failing_while_away
        await _produce(broker, settings, LIKES)
        worker = Worker(broker, settings, io)
        await _until(lambda: len(failures) >= 3)  # tried again with later batches
        await asyncio.sleep(0.05)
        stalled = (_engine_partitions("assigned"), _engine_partitions("ready"), _events(broker, settings, EXPECTED))
        away[0] = False
        await _until(lambda: _committed_all(broker, settings) and _events(broker, settings, EXPECTED) == EXPECTED)
        ready = (_engine_partitions("assigned"), _engine_partitions("ready"))
        await worker.stop()
        return stalled, ready

    stalled, ready = asyncio.run(run())
    assert stalled[0] == PARTITIONS and stalled[1] == 0
    assert all(v is None for v in stalled[2].values())  # nothing folded while not ready
    assert ready == (PARTITIONS, PARTITIONS)


def test_a_backlog_of_new_users_is_served_oldest_first_and_counted_once_each():
    async def run():
        settings = _settings("at_least_once", engage_rec_budget_s=1e-6)  # one chunk of users per batch
        broker = _broker(settings)
        users = [f"new{i:03d}" for i in range(400)]
        deferred = metrics.REGISTRY.get_sample_value("ripple_recommendations_deferred_total") or 0.0
        await _produce(broker, settings, [(u, "p1") for u in users])
        worker = Worker(broker, settings)
        await _until(lambda: len({json.loads(e.value)["user_id"] for e in _read(
            broker, settings.topic("recommendations"), committed_only=False)}) == len(users), timeout_s=20)
        await _until(lambda: metrics.REGISTRY.get_sample_value("ripple_recommendations_owed") == 0)
        # per partition (keyed by user, as the likes), users in the order of their first recommendation
        served = [list(dict.fromkeys(json.loads(e.value)["user_id"] for e in log))
                  for log in broker.logs[settings.topic("recommendations")]]
        await worker.stop()
        return users, served, metrics.REGISTRY.get_sample_value("ripple_recommendations_deferred_total") - deferred

    users, served, deferred = asyncio.run(run())
    assert sorted(u for part in served for u in part) == users
    for part in served:  # each partition's users served in the order their likes arrived
        assert part == sorted(part)
    assert 0 < deferred <= len(users)  # users, not batches × users


def test_a_profile_an_older_release_saved_under_a_quoted_key_is_migrated_not_merged_away():
    async def run():
        settings = _settings("at_least_once")
        broker = _broker(settings)
        first = Worker(broker, settings)
        await _produce(broker, settings, [("u1", "p1"), ("u1", "p2"), ("u1", "p3")])
        await _until(lambda: _committed_all(broker, settings) and _events(broker, settings, ["u1"]) == {"u1": 3})
        await first.stop()
        # the same user's older state under an older release's JSON-quoted key, written after it
        current = [e for e in _read(broker, changelog_topic(settings), committed_only=True) if e.key == b"u1"][-1]
        stale = dict(json.loads(current.value), events=1)
        broker.append(changelog_topic(settings), b'"u1"', json.dumps(stale).encode(), current.partition, None, 1_000)
        second = Worker(broker, settings)
        await _produce(broker, settings, [("u1", "p4")])
        await _until(lambda: _committed_all(broker, settings) and _events(broker, settings, ["u1"]).get("u1") == 4)
        await second.stop()

    asyncio.run(run())
