"""Item-side model state on the real broker: what one worker's users teach reaches the other
worker's rankings, and a worker killed and restarted with no new events ranks as before."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time

import pytest
from aiokafka.partitioner import DefaultPartitioner

from conftest import wait_for
from processors.learned_blend import FEATURES
from streams.client import consume, latest_values, produce
from test_pipeline import engagement
from test_scale_out import _posts, _wait_until_split

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

THEMES = {
    "run": ["morning run in the park", "marathon training long run", "trail running in the hills",
            "interval sprints on the track", "best running shoes for races", "recovery jog after the race"],
    "cook": ["sourdough bread with a crunchy crust", "homemade lasagne with tomato sauce", "thai green curry recipe",
             "slow cooked beef stew", "fresh pasta by hand", "lemon cake for the weekend"],
    "code": ["debugging a race condition in python", "rust borrow checker explained", "writing unit tests first",
             "kafka consumer groups in practice", "profiling a slow sql query", "refactoring a legacy module"],
    "garden": ["planting tomatoes in spring", "pruning the apple tree", "compost heap tips",
               "growing herbs on a balcony", "watering the lawn in summer", "roses in full bloom"],
}
POSTS = [(f"{theme}{i}", text) for theme, texts in THEMES.items() for i, text in enumerate(texts)]


def _follow(user: str, followee: str) -> dict:
    return {"topic": "follows", "key": user,
            "value": {"schema_version": 1, "user_id": user, "followee_id": followee}}


def _latest(bootstrap, topic, users, events, timeout_s=120) -> dict[str, dict]:
    def done(msgs):
        latest = {m["user_id"]: m for m in msgs}
        return all(latest.get(u, {}).get("based_on_events") == events for u in users)
    msgs = asyncio.run(consume(bootstrap, topic, until=done, timeout_s=timeout_s))
    latest = {m["user_id"]: m for m in msgs}
    assert done(msgs), {u: latest.get(u, {}).get("based_on_events") for u in users}
    return latest


def _features(message: dict, name: str) -> int:
    return sum(1 for item in message["items"] if item["reasons"][name] != 0)


def _quick_failover(monkeypatch) -> dict:
    """A killed worker's partitions move after 10 s, in both groups (Faust's and the engine's),
    not after the default 60 s; the settings a test's workers get for that."""
    for name, value in (("BROKER_SESSION_TIMEOUT", "10"), ("BROKER_HEARTBEAT_INTERVAL", "1")):
        monkeypatch.setenv(name, value)
    return {"session_timeout_s": 10, "sync_interval_s": 0.5, "snapshot_interval_s": 1.0}


def test_a_restarted_worker_ranks_with_the_item_state_it_had(bootstrap, worker_factory, monkeypatch, tmp_path):
    quick = _quick_failover(monkeypatch)
    settings, worker = worker_factory(**quick)
    t = settings.topic
    asyncio.run(_posts(bootstrap, t("posts"), [(p, text, i % settings.partitions) for i, (p, text) in enumerate(POSTS)]))
    rng = random.Random(5)
    users = [f"reader{i}" for i in range(24)]
    likes = []
    for u in users:  # each reader likes posts of two themes, so items are co-engaged and factors learnt
        themes = rng.sample(sorted(THEMES), 2)
        liked = rng.sample([p for p, _ in POSTS if p.rstrip("0123456789") in themes], 8)
        likes += [engagement("likes", u, p) for p in liked]
    asyncio.run(produce(bootstrap, likes, settings.topic_prefix))
    _latest(bootstrap, t("recommendations"), users, 8)
    asyncio.run(produce(bootstrap, [_follow(u, "nobody-1") for u in users], settings.topic_prefix))  # a new list
    shown = _latest(bootstrap, t("recommendations"), users, 9)
    # each reader likes the third item of the list it was sent: an engaged list for the ranking blend
    asyncio.run(produce(bootstrap, [engagement("likes", u, shown[u]["items"][2]["post_id"]) for u in users],
                        settings.topic_prefix))
    before = _latest(bootstrap, t("recommendations"), users, 10)
    log = tmp_path / "worker-0.log"
    wait = asyncio.run(_until(lambda: log.read_text(errors="replace").count("a checkpoint written") >= 2, 30))
    assert wait, "no snapshot was written"
    # the ranking blend learnt from those lists reaches the snapshot too (within a few intervals)
    def blend_in_snapshot() -> dict:
        state = asyncio.run(latest_values(bootstrap, f"{settings.app_id}-model-state", range(settings.partitions)))
        return json.loads(state.get("\x03blend") or b"{}")

    deadline = time.monotonic() + 30
    while blend_in_snapshot().get("lists") != len(users) and time.monotonic() < deadline:
        time.sleep(0.5)
    blend = blend_in_snapshot()
    assert blend.get("lists") == len(users) and set(blend["coef"]) == set(FEATURES), blend

    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    worker_factory(app_id=settings.app_id, **quick)
    asyncio.run(produce(bootstrap, [_follow(u, "nobody-2") for u in users], settings.topic_prefix))
    after = _latest(bootstrap, t("recommendations"), users, 11)

    overlap = [len({i["post_id"] for i in before[u]["items"]} & {i["post_id"] for i in after[u]["items"]})
               for u in users]
    assert sum(overlap) / len(users) >= 9.0, overlap
    for name in ("coengagement", "factors", "popularity"):
        had = sum(_features(before[u], name) for u in users)
        has = sum(_features(after[u], name) for u in users)
        assert had > 0 and has >= 0.9 * had, (name, had, has)


def test_what_one_workers_users_teach_reaches_the_other_worker(bootstrap, worker_factory, monkeypatch, tmp_path):
    for name, value in (("BROKER_SESSION_TIMEOUT", "10"), ("BROKER_HEARTBEAT_INTERVAL", "1")):
        monkeypatch.setenv(name, value)
    settings, _ = worker_factory(partitions=4, session_timeout_s=10, sync_interval_s=0.5)
    worker_factory(app_id=settings.app_id, partitions=4, session_timeout_s=10, sync_interval_s=0.5)
    t = settings.topic
    asyncio.run(_posts(bootstrap, t("posts"), [(p, text, i % 4) for i, (p, text) in enumerate(POSTS)]))
    _wait_until_split(tmp_path)
    owned = _owned(tmp_path)
    part = DefaultPartitioner()

    def users_of(worker: int, n: int, prefix: str) -> list[str]:
        out, i = [], 0
        while len(out) < n:
            u, i = f"{prefix}{i}", i + 1
            if part(u.encode(), [0, 1, 2, 3], [0, 1, 2, 3]) in owned[worker]:
                out.append(u)
        return out

    teachers, learner = users_of(0, 12, "teacher"), users_of(1, 1, "learner")[0]
    # worker 0's users like a running post together with a cooking post, again and again
    asyncio.run(produce(bootstrap, [e for u in teachers for e in (engagement("likes", u, "run0"),
                                                                   engagement("likes", u, "cook3"))],
                        settings.topic_prefix))
    _latest(bootstrap, t("recommendations"), teachers, 2)
    asyncio.run(asyncio.sleep(2.0))  # a few sync intervals
    # worker 1's user likes the running post only: the stew is co-engaged with it, learnt on worker 0
    asyncio.run(produce(bootstrap, [engagement("likes", learner, "run0")], settings.topic_prefix))
    got = _latest(bootstrap, t("recommendations"), [learner], 1)[learner]
    stew = [i for i in got["items"] if i["post_id"] == "cook3"]
    assert stew and stew[0]["reasons"]["coengagement"] > 0, got["items"]
    assert stew[0]["reasons"]["popularity"] > 0


def test_a_reply_to_a_comment_read_before_a_restart_reaches_its_author(bootstrap, worker_factory, monkeypatch,
                                                                      tmp_path):
    quick = _quick_failover(monkeypatch)
    settings, worker = worker_factory(**quick)
    t = settings.topic
    asyncio.run(produce(bootstrap, [{"topic": "posts", "key": "r1", "value": {
        "schema_version": 1, "post_id": "r1", "author_id": "runner", "text": "Finished my first marathon today!"}}],
        settings.topic_prefix))
    asyncio.run(produce(bootstrap, [engagement("comments", "fan", "r1", comment_id="k1",
                                               text="Congratulations on the marathon, amazing!")], settings.topic_prefix))
    first = asyncio.run(consume(bootstrap, t("suggested-replies"), until=lambda m: len(m) >= 1, timeout_s=90))
    assert first and first[0]["recipient_id"] == "runner", first
    log = tmp_path / "worker-0.log"
    written = log.read_text(errors="replace").count("a checkpoint written")
    assert asyncio.run(_until(lambda: log.read_text(errors="replace").count("a checkpoint written") >= written + 2, 30))
    # the comments agent's group has committed k1's partition and nothing of the other one, where k2
    # will land: the restarted worker must still read that partition from its beginning
    part = DefaultPartitioner()
    assert part(b"fan", [0, 1], [0, 1]) != part(b"friend", [0, 1], [0, 1])
    assert wait_for(lambda: asyncio.run(_committed(bootstrap, settings.app_id, t("comments"))), 30)

    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    worker_factory(app_id=settings.app_id, **quick)
    asyncio.run(produce(bootstrap, [engagement("comments", "friend", "r1", comment_id="k2", reply_to="k1",
                                               text="Thank you so much for the kind words!")], settings.topic_prefix))
    msgs = asyncio.run(consume(bootstrap, t("suggested-replies"), until=lambda m: any(
        x["comment_id"] == "k2" for x in m), timeout_s=90))
    reply = [m for m in msgs if m["comment_id"] == "k2"]
    assert reply and reply[0]["recipient_id"] == "fan", msgs


def _owned(tmp_path) -> list[set[int]]:
    from test_scale_out import _engine_partitions

    return [set(_engine_partitions(tmp_path / f"worker-{i}.log")) for i in (0, 1)]


async def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The partitions of ``topic`` with an offset committed by ``group``, and those offsets."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: md.offset for tp, md in offsets.items() if tp.topic == topic and md.offset >= 0}


async def _until(predicate, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.2)
    return False
