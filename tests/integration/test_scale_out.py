"""Two workers on four partitions: each ranks the whole catalog, a new post reaches both, and the
survivor of a kill -9 still ranks every partition's posts for every user."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from streams.client import consume, produce
from test_pipeline import COOKING, RUNNING, engagement

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

PARTITIONS = 4
MORE_RUNNING = ["Hill repeats on the running track until my legs gave up",
                "Ran ten kilometres along the river before breakfast",
                "Night run through the city, new personal best on the 10k"]
RUNNING_POSTS = RUNNING + MORE_RUNNING[:2]  # 8: two per partition
LATE_POST = MORE_RUNNING[2]


def _partition_of(key: str) -> int:
    return DefaultPartitioner()(key.encode(), list(range(PARTITIONS)), list(range(PARTITIONS)))


def _users() -> list[str]:
    """Two users on each engagement partition, so both workers serve some."""
    users, per = [], {p: 0 for p in range(PARTITIONS)}
    i = 0
    while len(users) < 2 * PARTITIONS:
        user, i = f"fan{i}", i + 1
        if per[_partition_of(user)] < 2:
            per[_partition_of(user)] += 1
            users.append(user)
    return users


async def _posts(bootstrap: str, topic: str, posts: list[tuple[str, str, int]]) -> None:
    """``(post_id, text, partition)``: each post written to the partition given."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for post_id, text, partition in posts:
            doc = {"schema_version": 1, "post_id": post_id, "author_id": f"author-{post_id}", "text": text}
            await producer.send_and_wait(topic, json.dumps(doc).encode(), key=post_id.encode(),
                                         partition=partition)
    finally:
        await producer.stop()


def _latest(bootstrap: str, topic: str, want) -> dict[str, dict]:
    """Latest recommendation per user once ``want(latest)`` holds (or fail)."""
    def done(msgs):
        return want({m["user_id"]: m for m in msgs})
    msgs = asyncio.run(consume(bootstrap, topic, until=done, timeout_s=120))
    latest = {m["user_id"]: m for m in msgs}
    assert want(latest), {u: [i["post_id"] for i in m["items"]] for u, m in latest.items()}
    return latest


def _engine_partitions(log: Path) -> list[int] | None:
    """The engagement partitions a worker took at its latest assignment, from its log."""
    found = re.findall(r"engage: restored \d+ profiles of partitions \[([0-9, ]*)\]", log.read_text(errors="replace"))
    return [int(p) for p in found[-1].split(",")] if found else None


def _wait_until_split(tmp_path: Path, timeout_s: float = 90.0) -> None:
    """Until each of the two workers owns two of the four engagement partitions."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owned = [_engine_partitions(tmp_path / f"worker-{i}.log") for i in (0, 1)]
        if all(o is not None and len(o) == PARTITIONS // 2 for o in owned):
            return
        time.sleep(0.2)
    raise AssertionError(f"the engine group did not split over the two workers: {owned}")


def _partitions_of_running_items(message: dict, where: dict[str, int]) -> set[int]:
    return {where[i["post_id"]] for i in message["items"] if i["post_id"].startswith("run")}


def test_two_workers_rank_the_whole_catalog_and_the_survivor_of_a_kill_too(bootstrap, worker_factory, monkeypatch,
                                                                            tmp_path):
    for name, value in (("BROKER_SESSION_TIMEOUT", "10"), ("BROKER_HEARTBEAT_INTERVAL", "1")):
        monkeypatch.setenv(name, value)  # Faust's group: a killed worker's partitions move after 10 s
    settings, first = worker_factory(partitions=PARTITIONS, session_timeout_s=10)
    _, second = worker_factory(app_id=settings.app_id, partitions=PARTITIONS, session_timeout_s=10)
    t = settings.topic
    posts = [(f"run{i}", text, i % PARTITIONS) for i, text in enumerate(RUNNING_POSTS)]
    posts += [(f"cook{i}", text, i % PARTITIONS) for i, text in enumerate(COOKING)]
    where = {post_id: partition for post_id, _, partition in posts} | {"run-late": 3}
    asyncio.run(_posts(bootstrap, t("posts"), posts))
    users = _users()
    _wait_until_split(tmp_path)

    # (a) every user, whichever worker serves them, gets running posts of all four posts partitions
    asyncio.run(produce(bootstrap, [engagement("likes", u, "run0") for u in users], settings.topic_prefix))
    latest = _latest(bootstrap, t("recommendations"), lambda latest: all(
        u in latest and _partitions_of_running_items(latest[u], where) == set(range(PARTITIONS)) for u in users))

    # a post embedded by one worker reaches the other's catalog: every user is recommended it
    asyncio.run(_posts(bootstrap, t("posts"), [("run-late", LATE_POST, 3)]))
    asyncio.run(produce(bootstrap, [engagement("likes", u, "run1") for u in users], settings.topic_prefix))
    _latest(bootstrap, t("recommendations"), lambda latest: all(
        latest.get(u, {}).get("based_on_events") == 2 and "run-late" in [i["post_id"] for i in latest[u]["items"]]
        for u in users))

    # (b) kill -9 one worker: the survivor serves every user, from every partition's posts
    os.killpg(second.pid, signal.SIGKILL)
    second.wait()
    asyncio.run(produce(bootstrap, [engagement("likes", u, "run2") for u in users], settings.topic_prefix))
    latest = _latest(bootstrap, t("recommendations"), lambda latest: all(
        latest.get(u, {}).get("based_on_events") == 3 for u in users))
    assert first.poll() is None, "the survivor died"
    for u in users:
        assert _partitions_of_running_items(latest[u], where) == set(range(PARTITIONS)), \
            (u, [i["post_id"] for i in latest[u]["items"]])
