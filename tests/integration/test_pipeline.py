"""The whole pipeline on the real Apache Kafka broker: worker subprocess, plain Kafka clients."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
from aiokafka import AIOKafkaProducer

from devtools.bench_timing import engine_start
from processors.events import validate
from ripple.demo import stop_worker
from streams.client import consume, produce
from test_faults import group_offsets  # the engagement group's committed offsets (either engine)

pytestmark = pytest.mark.kafka

RUNNING = [
    "Just ran my fastest 5k ever at the park this morning",
    "Marathon training: long run of 32 kilometres done today",
    "Trail running in the hills, my calves are burning",
    "Interval sprints on the athletics track tonight",
    "Which running shoes are best for long distance races?",
    "Recovery jog after yesterday's half marathon",
]
COOKING = [
    "Baked a loaf of sourdough bread with a crunchy crust",
    "Homemade lasagne with slow-cooked tomato sauce",
    "Trying a Thai green curry recipe with coconut milk",
]


def scripted_posts() -> list[dict]:
    events = []
    for i, text in enumerate(RUNNING, 1):
        events.append(("posts", f"r{i}", {"post_id": f"r{i}", "author_id": f"runner{i % 2}", "text": text}))
    for i, text in enumerate(COOKING, 1):
        events.append(("posts", f"c{i}", {"post_id": f"c{i}", "author_id": "chef", "text": text}))
    events.append(("posts", "own", {"post_id": "own", "author_id": "u1", "text": "My own post about running a marathon"}))
    return [{"topic": t, "key": k, "value": {"schema_version": 1, **v}} for t, k, v in events]


def engagement(topic: str, user: str, post: str, **extra) -> dict:
    return {"topic": topic, "key": user, "value": {"schema_version": 1, "user_id": user, "post_id": post, **extra}}


async def send_raw(bootstrap: str, topic: str, key: bytes, value: bytes):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        return await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


def latest_for(bootstrap, topic, expected: dict[str, int], timeout_s=90.0) -> dict[str, dict]:
    """Latest recommendation per user once every user's message reflects ``expected`` events."""

    def done(msgs):
        latest = {m["user_id"]: m for m in msgs}
        return all(latest.get(u, {}).get("based_on_events") == n for u, n in expected.items())

    msgs = asyncio.run(consume(bootstrap, topic, until=done, timeout_s=timeout_s, settle_s=2.0))
    latest = {m["user_id"]: m for m in msgs}
    got = {u: latest.get(u, {}).get("based_on_events") for u in expected}
    assert got == expected, f"recommendations did not catch up: {got}"
    for m in msgs:
        assert validate("recommendation", {k: v for k, v in m.items() if k != "_meta"}) is None
        assert m["_meta"]["key"] == m["user_id"]
    return latest


@pytest.mark.parametrize("guarantee,fork_min", [("at_least_once", 128), ("at_least_once", 1), ("exactly_once", 128)],
                         ids=["at_least_once", "at_least_once_forked", "exactly_once"])
def test_recommendations_dead_letters_and_restart_recovery(bootstrap, worker_factory, guarantee, fork_min, tmp_path):
    """``at_least_once_forked``: every batch's recommendations are scored in a forked child
    (streams/forked.py); ``exactly_once``: every batch commits in Kafka transactions."""
    started = time.time()
    settings, worker = worker_factory(processing_guarantee=guarantee, engage_fork_min_users=fork_min)
    t = settings.topic
    asyncio.run(produce(bootstrap, scripted_posts(), settings.topic_prefix))
    bad = asyncio.run(send_raw(bootstrap, t("likes"), b"u1", b'{"schema_version": 1, "user_id": "u1"'))
    asyncio.run(produce(bootstrap, [
        engagement("likes", "u1", "r1"),
        engagement("comments", "u1", "r2", comment_id="k1", text="Great run!"),
        engagement("shares", "u1", "r3"),
        engagement("likes", "u2", "c1"),
        engagement("likes", "u2", "c2"),
    ], settings.topic_prefix))

    latest = latest_for(bootstrap, t("recommendations"), {"u1": 3, "u2": 2})
    u1 = [i["post_id"] for i in latest["u1"]["items"]]
    u2 = [i["post_id"] for i in latest["u2"]["items"]]
    assert u1 and u2
    assert not {"r1", "r2", "r3", "own"} & set(u1), u1  # engaged and own posts are excluded
    assert not {"c1", "c2"} & set(u2), u2
    assert u1.index("r4") < u1.index("c1"), u1  # running fan: a running post above a cooking one
    assert u2.index("c3") < u2.index("r4"), u2

    dead = asyncio.run(consume(bootstrap, t("dead-letter"), until=lambda m: len(m) >= 1, timeout_s=30))
    assert len(dead) == 1
    d = dead[0]
    assert (d["topic"], d["partition"], d["offset"]) == (t("likes"), bad.partition, bad.offset)
    assert d["reason"].startswith("invalid JSON") and d["raw"].startswith('{"schema_version": 1')
    assert validate("dead_letter", {k: v for k, v in d.items() if k != "_meta"}) is None

    # ripple bench times the engine's drain from its first-batch log line
    first = engine_start(tmp_path / "worker-0.log", after=started)
    assert first is not None and started <= first <= time.time()
    forked = "scored in a forked child" in (tmp_path / "worker-0.log").read_text()
    assert forked == (fork_min == 1 and guarantee == "at_least_once")

    # restart: a new worker process of the same app recovers profiles and catalog from changelogs
    assert stop_worker(worker) == 0
    worker_factory(app_id=settings.app_id, processing_guarantee=guarantee, engage_fork_min_users=fork_min)
    like = engagement("likes", "u1", "r4")
    sent = asyncio.run(send_raw(bootstrap, t("likes"), b"u1", json.dumps(like["value"]).encode()))
    try:
        latest = latest_for(bootstrap, t("recommendations"), {"u1": 4}, timeout_s=120)
    except AssertionError as exc:  # say whether the group's committed offset had already passed the like
        committed = asyncio.run(group_offsets(bootstrap, settings)).get(f"{t('likes')}:{sent.partition}")
        raise AssertionError(f"{exc}; the like is {t('likes')}[{sent.partition}]@{sent.offset}, "
                             f"the group's committed offset there is {committed}") from exc
    after = [i["post_id"] for i in latest["u1"]["items"]]
    assert not {"r1", "r2", "r3", "r4", "own"} & set(after), after  # seen set survived the restart
    assert after[0] in {"r5", "r6"}, after  # interest needs the recovered post embeddings


def _metric(port: int, name: str) -> float:
    """The value of an unlabelled metric on the worker's /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = [float(line.split()[1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert values, f"{name} is not exported"
    return values[0]


def test_scoring_budget_puts_users_off_and_catches_up(bootstrap, worker_factory, metrics_port):
    """With a scoring budget spent by the first 64 users of a batch, the rest are put off to the
    next batches (and counted), yet every user still gets a recommendation with their newest state."""
    settings, worker = worker_factory(engage_rec_budget_s=1e-6)
    asyncio.run(produce(bootstrap, scripted_posts(), settings.topic_prefix))
    asyncio.run(produce(bootstrap, [engagement("likes", "warm", "r1")], settings.topic_prefix))
    latest_for(bootstrap, settings.topic("recommendations"), {"warm": 1})  # the posts are embedded
    assert _metric(metrics_port, "ripple_recommendations_deferred_total") == 0
    assert stop_worker(worker) == 0
    # written while no worker runs: the restarted worker reads them in a few large batches
    users = {f"b{i}": 2 for i in range(200)}
    asyncio.run(produce(bootstrap, [engagement("likes", u, p) for u in users for p in ("r2", "c1")],
                        settings.topic_prefix))
    worker_factory(app_id=settings.app_id, engage_rec_budget_s=1e-6)
    latest = latest_for(bootstrap, settings.topic("recommendations"), users, timeout_s=120)
    assert all(latest[u]["items"] for u in users)
    assert _metric(metrics_port, "ripple_recommendations_deferred_total") > 0, "the budget never put anyone off"


def test_suggested_replies_reach_the_recipient(bootstrap, worker_factory):
    settings, _ = worker_factory()
    t = settings.topic
    asyncio.run(produce(bootstrap, scripted_posts(), settings.topic_prefix))
    asyncio.run(produce(bootstrap, [engagement("comments", "fan", "r2", comment_id="k1",
                                               text="Congratulations on finishing the marathon, what an amazing achievement!")],
                        settings.topic_prefix))
    first = asyncio.run(consume(bootstrap, t("suggested-replies"), until=lambda m: len(m) >= 1, timeout_s=90))
    assert first, "no suggestion for the post author"
    # the reply comes later (keyed by another user, maybe another partition): its parent is known by then
    asyncio.run(produce(bootstrap, [engagement("comments", "friend", "r2", comment_id="k2", reply_to="k1",
                                               text="Thank you so much for the kind words!")], settings.topic_prefix))
    msgs = asyncio.run(consume(bootstrap, t("suggested-replies"), until=lambda m: len(m) >= 2, timeout_s=60, settle_s=1.0))
    by_comment = {m["comment_id"]: m for m in msgs}
    assert set(by_comment) == {"k1", "k2"}, msgs
    # a comment on a post goes to the post's author; a reply goes to the parent comment's author
    assert by_comment["k1"]["recipient_id"] == by_comment["k1"]["_meta"]["key"] == "runner0"
    assert by_comment["k2"]["recipient_id"] == by_comment["k2"]["_meta"]["key"] == "fan"
    for m in msgs:
        assert validate("suggested_replies", {k: v for k, v in m.items() if k != "_meta"}) is None
    # a comment that arrives before its post waits for the post (and its author) instead of being dropped
    asyncio.run(produce(bootstrap, [engagement("comments", "fan", "late", comment_id="k3", text="Happy birthday!!")],
                        settings.topic_prefix))
    asyncio.run(produce(bootstrap, [{"topic": "posts", "key": "late", "value": {
        "schema_version": 1, "post_id": "late", "author_id": "latecomer", "text": "It's my birthday today"}}],
        settings.topic_prefix))
    msgs = asyncio.run(consume(bootstrap, t("suggested-replies"), until=lambda m: len(m) >= 3, timeout_s=60))
    late = [m for m in msgs if m["comment_id"] == "k3"]
    assert late and late[0]["recipient_id"] == "latecomer", msgs
    thanks = [s["text"].lower() for s in by_comment["k1"]["suggestions"]]
    assert any("thank" in s for s in thanks), thanks  # a congratulation is answered with thanks
    assert not any("congrat" in s for s in thanks), thanks
