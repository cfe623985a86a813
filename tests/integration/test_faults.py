"""Fault tests on real brokers: a worker killed with SIGKILL, a broker restarted, a node of a
3-broker KRaft cluster killed — each in the middle of a stream of engagement events.

After each fault every valid input record must be reflected exactly once: a user's final
recommendation shows exactly the number of events in the input topics for that user
(``based_on_events``), the profile in the changelog carries the same count, nothing is
dead-lettered, and the recommendations can be de-duplicated by ``rec_id``.  The figures each test
measures (recovery time, duplicates) are printed (``pytest -s``) and summarised in
``docs/reliability.md``.

The helpers here (worker subprocess, paced producer, topic reader) are shared by
``test_security.py`` and ``test_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from processors.events import validate
from ripple.settings import Settings
from streams.engagement_engine import consumer_group
from streams.topics import ensure_topics

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

ENGAGEMENT_TOPICS = ("likes", "comments", "shares", "follows")
#: Faust settings read from the worker's environment (not RIPPLE_*): a killed worker's group
#: membership expires after this, instead of Faust's default 60 s.
FAST_GROUP_ENV = {"BROKER_SESSION_TIMEOUT": "10", "BROKER_HEARTBEAT_INTERVAL": "1", "RIPPLE_SESSION_TIMEOUT_S": "10"}


def _say(msg: str) -> None:
    print(f"[faults] {msg}", flush=True)


# --------------------------------------------------------------------------------------------------
# worker subprocess
# --------------------------------------------------------------------------------------------------
def settings_env(settings: Settings) -> dict[str, str]:
    """Every field of ``settings`` as the RIPPLE_* variable an operator would set."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"RIPPLE_{name.upper()}"] = str(value)
    return env


class Worker:
    """``python -m ripple worker`` configured through its environment; killed at teardown."""

    def __init__(self, settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None):
        self.settings, self.log_path = settings, log_path
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen | None = None
        self.started_at: float | None = None

    def start(self) -> "Worker":
        env = dict(os.environ)
        env.update(settings_env(self.settings))
        env.update(self.extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "ripple", "worker"], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                         cwd=str(Path(__file__).resolve().parents[2]))
        self.started_at = time.time()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int | None:
        """SIGKILL the worker's process group: no shutdown, no final commit."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.proc.wait()

    def stop(self, timeout_s: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def workers(tmp_path, ripple_home):
    """``spawn(settings, **extra_env)`` → started :class:`Worker`; all killed and their state removed at teardown."""
    started: list[Worker] = []

    def spawn(settings: Settings, **extra_env: str) -> Worker:
        w = Worker(settings, tmp_path / f"worker-{len(started)}.log", extra_env).start()
        started.append(w)
        return w

    yield spawn
    for w in started:
        w.stop(timeout_s=10)
    for app_id in {w.settings.app_id for w in started}:
        shutil.rmtree(Path(ripple_home) / "worker" / app_id, ignore_errors=True)
    for w in started:
        text = w.log_text()
        if "Traceback" in text:
            print(f"--- {w.log_path.name} (contains a traceback) ---\n{text[-3000:]}")


def base_settings(bootstrap: str, ripple_home: Path, **overrides) -> Settings:
    values = dict(broker=bootstrap, topic_prefix=f"f{uuid.uuid4().hex[:8]}.", app_id=f"ripple-{uuid.uuid4().hex[:8]}",
                  home=ripple_home, partitions=2, rec_min_interval_s=0.3, onnx_provider="cpu")
    values.update(overrides)
    return Settings(**values)


# --------------------------------------------------------------------------------------------------
# the event stream and a paced producer
# --------------------------------------------------------------------------------------------------
@dataclass
class Stream:
    posts: list[dict]
    engagements: list[dict]
    users: list[str]

    def expected(self) -> Counter:
        return Counter(e["key"] for e in self.engagements)


def make_stream(users: int, per_user: int, *, posts: int = 12, seed: int = 1, tag: str = "") -> Stream:
    """``posts`` posts, then ``users`` × ``per_user`` engagements (likes, comments, shares, follows) interleaved."""
    rng = random.Random(seed)
    tag = tag or uuid.uuid4().hex[:6]
    themes = ["running a marathon in the rain", "baking sourdough bread at home", "learning jazz piano chords",
              "hiking a mountain trail at dawn"]
    post_docs = [{"topic": "posts", "key": f"p{i}",
                  "value": {"schema_version": 1, "post_id": f"p{i}", "author_id": f"author{i % 4}",
                            "text": f"Post {i}: {themes[i % len(themes)]}"}} for i in range(posts)]
    names = [f"{tag}-user{i}" for i in range(users)]
    queue = [u for u in names for _ in range(per_user)]
    rng.shuffle(queue)
    events = []
    for n, user in enumerate(queue):
        kind = rng.choice(("likes", "likes", "comments", "shares", "follows"))
        value = {"schema_version": 1, "user_id": user, "event_id": f"{user}-{n}"}
        if kind == "follows":
            value["followee_id"] = f"author{rng.randrange(4)}"
        else:
            value["post_id"] = f"p{rng.randrange(posts)}"
            if kind == "comments":
                value.update(comment_id=f"c{n}", text=rng.choice(["Love this!", "Great post", "So true", "Nice one"]))
        events.append({"topic": kind, "key": user, "value": value})
    return Stream(post_docs, events, names)


class PacedProducer(threading.Thread):
    """Sends events at ``rate`` per second from a thread (its own event loop); records every ack.

    An idempotent producer (acks=all): broker-side retries after a restart do not duplicate input.
    ``acked`` counts delivered events; ``failed`` holds events whose delivery raised, resent once.
    """

    def __init__(self, bootstrap: str, prefix: str, events: list[dict], rate: float, **client_kwargs):
        super().__init__(daemon=True, name="paced-producer")
        self.bootstrap, self.prefix, self.events, self.rate = bootstrap, prefix, events, rate
        self.client_kwargs = client_kwargs
        self.acked = 0
        self.resent = 0
        self.errors: list[str] = []
        self.positions: list[tuple[str, int, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # surfaced by the test through .errors
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.done.set()

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                                    linger_ms=2, request_timeout_ms=30000, retry_backoff_ms=200, **self.client_kwargs)
        await producer.start()
        try:
            t0 = time.monotonic()
            pending = []
            for i, ev in enumerate(self.events):
                delay = t0 + i / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append((ev, await self._send(producer, ev)))
                pending = await self._reap(producer, pending, block=False)
            await self._reap(producer, pending, block=True)
        finally:
            await producer.stop()

    async def _send(self, producer, ev):
        value = ev["value"] if isinstance(ev["value"], bytes) else json.dumps(ev["value"]).encode()
        key = ev["key"].encode() if isinstance(ev["key"], str) else ev["key"]
        return await producer.send(self.prefix + ev["topic"], value=value, key=key)

    async def _reap(self, producer, pending, *, block: bool):
        left = []
        for ev, fut in pending:
            if not block and not fut.done():
                left.append((ev, fut))
                continue
            try:
                md = await fut
            except Exception as exc:  # delivery failed (e.g. the broker was down longer than the timeout)
                self.errors.append(f"send failed once ({type(exc).__name__}); resending")
                self.resent += 1
                md = await (await self._send(producer, ev))
            self.positions.append((md.topic, md.partition, md.offset))
            self.acked += 1
        return left

    def wait_acked(self, n: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.acked < n and time.monotonic() < deadline and not self.done.is_set():
            time.sleep(0.02)
        return self.acked >= n


def produce_now(bootstrap: str, prefix: str, events: list[dict], **client_kwargs) -> None:
    p = PacedProducer(bootstrap, prefix, events, rate=1e6, **client_kwargs)
    p.run()
    assert not p.errors, p.errors


# --------------------------------------------------------------------------------------------------
# reading topics
# --------------------------------------------------------------------------------------------------
async def read_topic(bootstrap: str, topic: str, *, isolation_level: str = "read_uncommitted",
                     timeout_s: float = 30.0, **client_kwargs) -> list:
    """Every record of ``topic`` from the beginning up to its end offsets as of now (LSO when read_committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level=isolation_level, **client_kwargs)
    await consumer.start()
    out = []
    try:
        deadline = time.monotonic() + timeout_s
        await consumer._client.add_topic(topic)  # fetch metadata for this topic (no subscription)
        parts = consumer.partitions_for_topic(topic)
        while not parts and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        if not tps:
            return out
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= end[tp] for pos, tp in zip(positions, tps)):
                break
            for records in (await consumer.getmany(timeout_ms=300)).values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


def read_json(bootstrap: str, topic: str, **kw) -> list[dict]:
    docs = []
    for r in asyncio.run(read_topic(bootstrap, topic, **kw)):
        d = json.loads(r.value)
        d["_meta"] = {"partition": r.partition, "offset": r.offset, "key": r.key.decode() if r.key else None}
        docs.append(d)
    return docs


def valid_input_counts(bootstrap: str, settings: Settings, users: list[str], **client_kwargs) -> Counter:
    """Per user, the engagement records actually in the input topics (the ground truth)."""
    wanted = set(users)
    counts: Counter = Counter()
    for t in ENGAGEMENT_TOPICS:
        for r in asyncio.run(read_topic(bootstrap, settings.topic(t), **client_kwargs)):
            user = r.key.decode()
            if user in wanted:
                counts[user] += 1
    return counts


def wait_recommendations(bootstrap: str, settings: Settings, expected: dict[str, int], timeout_s: float,
                         *, isolation_level: str = "read_uncommitted", **client_kwargs) -> tuple[list[dict], float]:
    """Poll the recommendations topic until every user's latest message shows ``expected`` events.

    Returns (all messages, seconds waited).  Latest = highest offset in the user's partition.
    """
    t0 = time.monotonic()
    msgs: list[dict] = []
    while time.monotonic() - t0 < timeout_s:
        msgs = read_json(bootstrap, settings.topic("recommendations"), isolation_level=isolation_level, **client_kwargs)
        if latest_counts(msgs, expected) == expected:
            break
        time.sleep(1.0)
    return msgs, time.monotonic() - t0


def latest_counts(msgs: list[dict], users) -> dict[str, int | None]:
    latest: dict[str, dict] = {}
    for m in sorted(msgs, key=lambda m: (m["_meta"]["partition"], m["_meta"]["offset"])):
        latest[m["user_id"]] = m
    return {u: latest[u]["based_on_events"] if u in latest else None for u in users}


def profile_counts(bootstrap: str, settings: Settings, users, **client_kwargs) -> dict[str, dict]:
    """Latest profile per user in the ``profiles`` changelog (what a restarted worker recovers)."""
    latest = {}
    for r in asyncio.run(read_topic(bootstrap, f"{settings.app_id}-profiles-changelog", **client_kwargs)):
        if r.value is not None:  # Faust writes table keys JSON-encoded ('"user"')
            key = r.key.decode()
            latest[json.loads(key) if key.startswith('"') else key] = json.loads(r.value)
    return {u: latest.get(u) for u in users}


@dataclass
class OutputStats:
    messages: int = 0
    unique_rec_ids: int = 0
    duplicate_rec_ids: int = 0
    #: (user, based_on_events) published more than once (a replayed or re-sent profile version)
    repeated_versions: int = 0
    #: a user's based_on_events went down from one message to the next (an old version re-sent)
    regressions: int = 0
    per_user: dict = field(default_factory=dict)


def output_stats(msgs: list[dict]) -> OutputStats:
    s = OutputStats(messages=len(msgs))
    ids = Counter(m["rec_id"] for m in msgs)
    s.unique_rec_ids = len(ids)
    s.duplicate_rec_ids = sum(n - 1 for n in ids.values())
    seen_ids = set()
    versions: Counter = Counter()
    last: dict[str, int] = {}
    for m in sorted(msgs, key=lambda m: (m["_meta"]["partition"], m["_meta"]["offset"])):
        if m["rec_id"] in seen_ids:  # de-duplicated by rec_id, as a consumer would
            continue
        seen_ids.add(m["rec_id"])
        versions[(m["user_id"], m["based_on_events"])] += 1
        if m["user_id"] in last and m["based_on_events"] < last[m["user_id"]]:
            s.regressions += 1
        last[m["user_id"]] = m["based_on_events"]
    s.repeated_versions = sum(n - 1 for n in versions.values())
    return s


def user_positions(bootstrap: str, settings: Settings, users, **client_kwargs) -> dict[str, dict[str, list[int]]]:
    """Per user, the input positions (``topic:partition`` → offsets) of their engagement records."""
    wanted, out = set(users), defaultdict(lambda: defaultdict(list))
    for t in ENGAGEMENT_TOPICS:
        for r in asyncio.run(read_topic(bootstrap, settings.topic(t), **client_kwargs)):
            if r.key.decode() in wanted:
                out[r.key.decode()][f"{r.topic}:{r.partition}"].append(r.offset)
    return out


def engagement_group(settings: Settings) -> str:
    """The consumer group that commits the engagement topics' offsets (the engagement engine's)."""
    return consumer_group(settings)


async def group_offsets(bootstrap: str, settings: Settings, **client_kwargs) -> dict[str, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(engagement_group(settings))
    finally:
        await admin.close()
    return {f"{tp.topic}:{tp.partition}": md.offset for tp, md in sorted(offsets.items())}


async def end_offsets(bootstrap: str, topics: list[str], **client_kwargs) -> dict[str, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **client_kwargs)
    await consumer.start()
    try:
        tps = []
        for t in topics:
            await consumer._client.add_topic(t)
            tps += [TopicPartition(t, p) for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {f"{tp.topic}:{tp.partition}": off for tp, off in ends.items()}


def check_exactly_once(bootstrap: str, settings: Settings, stream: Stream, *, timeout_s: float = 90.0,
                       isolation_level: str = "read_uncommitted", **client_kwargs) -> tuple[list[dict], float]:
    """The common post-fault assertions; returns (recommendation messages, seconds to converge)."""
    truth = valid_input_counts(bootstrap, settings, stream.users, **client_kwargs)
    assert truth == stream.expected(), "the input topics do not hold exactly the events sent (producer duplicates?)"
    expected = dict(truth)
    msgs, waited = wait_recommendations(bootstrap, settings, expected, timeout_s, isolation_level=isolation_level,
                                        **client_kwargs)
    got = latest_counts(msgs, expected)
    # at_least_once writes a batch's profiles to the changelog once its recommendations are acked,
    # so the changelog may trail the recommendations a moment (longer while a restarted broker's
    # leaders are re-learnt): it gets a few seconds to catch up
    deadline = time.monotonic() + 20.0
    while True:
        profiles = profile_counts(bootstrap, settings, expected, **client_kwargs)
        in_changelog = {u: (p or {}).get("events") for u, p in profiles.items()}
        if in_changelog == expected or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    if got != expected or in_changelog != expected:
        inputs = user_positions(bootstrap, settings, [u for u in expected if got[u] != expected[u]
                                                       or in_changelog[u] != expected[u]], **client_kwargs)
        lines = [f"{u}: sent {n}, latest recommendation {got[u]}, changelog profile {in_changelog[u]}; "
                 f"profile positions {(profiles[u] or {}).get('positions')}; input offsets "
                 f"{ {k: v[-3:] for k, v in inputs[u].items()} }"
                 for u, n in expected.items() if got[u] != n or in_changelog[u] != n]
        bad = {u for u, n in expected.items() if got[u] != n or in_changelog[u] != n}
        applied: dict[str, list] = defaultdict(list)  # each changelog record moves one position: the event applied
        before: dict[str, dict] = defaultdict(dict)
        for r in asyncio.run(read_topic(bootstrap, f"{settings.app_id}-profiles-changelog", **client_kwargs)):
            doc = json.loads(r.value) if r.value else {}
            u = doc.get("user_id")
            if u in bad:
                moved = {k: v for k, v in doc["positions"].items() if before[u].get(k) != v}
                applied[u].append((r.partition, r.offset, r.timestamp, doc["events"], moved))
                before[u] = doc["positions"]
        for u in sorted(bad):
            got_positions = {(src, off) for *_, moved in applied[u] for src, off in moved.items()}
            missing = sorted((src, off) for src, offs in inputs[u].items() for off in offs
                             if (src, off) not in got_positions)
            lines.append(f"  {u}: input events never applied: {missing}")
            lines.extend(f"    changelog p{p}@{o} ts={ts} events={ev} applied {mv}" for p, o, ts, ev, mv in applied[u])
        committed = asyncio.run(group_offsets(bootstrap, settings, **client_kwargs))
        lines.append(f"  committed offsets of group {engagement_group(settings)}: {committed}")
        raise AssertionError("not exactly once:\n" + "\n".join(lines))
    dead = read_json(bootstrap, settings.topic("dead-letter"), **client_kwargs)
    assert dead == [], f"valid events were dead-lettered: {dead[:3]}"
    for m in msgs[:50]:
        assert validate("recommendation", {k: v for k, v in m.items() if k != "_meta"}) is None
    return msgs, waited


def check_posts_catalog(bootstrap: str, settings: Settings, stream: Stream, *, isolation_level: str = "read_uncommitted",
                        timeout_s: float = 30.0, **client_kwargs) -> None:
    """Every post sent is in the posts table's changelog (its newest record, as ``isolation_level``
    sees it), on the partition the post was read from: so under ``exactly_once`` the record
    commits in the same transaction as the post's input offset.  Posts whose offsets were not
    committed before a kill are embedded again by the restarted worker, possibly after the
    recommendations converged: they get ``timeout_s`` to appear.  A post lost for good (its
    offset committed, its record aborted) never does."""
    read_from = {r.key.decode(): r.partition
                 for r in asyncio.run(read_topic(bootstrap, settings.topic("posts"), **client_kwargs))}
    assert set(read_from) == {d["key"] for d in stream.posts}
    deadline = time.monotonic() + timeout_s
    while True:
        newest: dict[str, tuple[int, bytes | None]] = {}
        for r in asyncio.run(read_topic(bootstrap, f"{settings.app_id}-posts-changelog",
                                        isolation_level=isolation_level, **client_kwargs)):
            newest[json.loads(r.key)] = (r.partition, r.value)
        missing = sorted(k for k in read_from if newest.get(k, (None, None))[1] is None)
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert not missing, f"posts missing from the posts changelog ({isolation_level}): {missing}"
    elsewhere = {k: (read_from[k], newest[k][0]) for k in read_from if newest[k][0] != read_from[k]}
    assert not elsewhere, f"posts' changelog records not on their input partition (input, changelog): {elsewhere}"


def warm_up(bootstrap: str, settings: Settings, worker: Worker, timeout_s: float = 90.0, **client_kwargs) -> float:
    """Block until the worker turns one like into a recommendation (model loaded, group joined)."""
    t0 = time.monotonic()
    user = f"warmup-{uuid.uuid4().hex[:6]}"
    produce_now(bootstrap, settings.topic_prefix, [{"topic": "likes", "key": user, "value": {
        "schema_version": 1, "user_id": user, "post_id": "p0"}}], **client_kwargs)
    while time.monotonic() - t0 < timeout_s:
        assert worker.alive, f"worker died during start-up:\n{worker.log_text()[-3000:]}"
        msgs = read_json(bootstrap, settings.topic("recommendations"), **client_kwargs)
        if any(m["user_id"] == user for m in msgs):
            return time.monotonic() - t0
        time.sleep(0.5)
    raise AssertionError(f"worker produced nothing within {timeout_s:.0f} s:\n{worker.log_text()[-3000:]}")


def reflected_before(msgs: list[dict], t: float) -> int:
    """Events reflected in recommendations generated before wall-clock ``t`` (sum of per-user maxima)."""
    best: dict[str, int] = {}
    for m in msgs:
        if m["generated_at"] < t and not m["user_id"].startswith("warmup-"):
            best[m["user_id"]] = max(best.get(m["user_id"], 0), m["based_on_events"])
    return sum(best.values())


def first_output_after(msgs: list[dict], t: float) -> float | None:
    """Seconds from wall-clock ``t`` to the first recommendation generated after it."""
    after = [m["generated_at"] for m in msgs if m["generated_at"] > t]
    return min(after) - t if after else None


def report(name: str, **figures) -> None:
    _say(name + ": " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))


def run_with_fault(bootstrap: str, settings: Settings, spawn, stream: Stream, fault, *, rate: float,
                   fault_at: float = 0.4, worker_env: dict | None = None, converge_s: float = 90.0,
                   isolation_level: str = "read_uncommitted", **client_kwargs) -> dict:
    """Start a worker, stream ``stream`` at ``rate``/s, call ``fault(worker)`` after ``fault_at`` of it, check.

    ``fault`` returns a dict of figures (and may replace the worker: return ``{"worker": new}``).
    """
    asyncio.run(ensure_topics(settings))
    worker = spawn(settings, **(worker_env or {}))
    produce_now(bootstrap, settings.topic_prefix, stream.posts, **client_kwargs)
    warm_up(bootstrap, settings, worker, **client_kwargs)
    producer = PacedProducer(bootstrap, settings.topic_prefix, stream.engagements, rate, **client_kwargs)
    t_start = time.time()
    producer.start()
    try:
        assert producer.wait_acked(int(len(stream.engagements) * fault_at), timeout_s=120), producer.errors
        figures = fault(worker) or {}
        worker = figures.pop("worker", worker)
        producer.join(timeout=180)
        assert not producer.is_alive(), "producer did not finish"
        assert producer.acked == len(stream.engagements), (producer.acked, producer.errors)
        t_sent = time.time()
        msgs, waited = check_exactly_once(bootstrap, settings, stream, timeout_s=converge_s,
                                          isolation_level=isolation_level, **client_kwargs)
        check_posts_catalog(bootstrap, settings, stream, isolation_level=isolation_level, **client_kwargs)
        assert worker.alive, f"worker died:\n{worker.log_text()[-3000:]}"
        stats = output_stats(msgs)
        figures.update(events=len(stream.engagements), stream_s=t_sent - t_start, converge_after_last_send_s=waited,
                       recs=stats.messages, duplicate_rec_ids=stats.duplicate_rec_ids,
                       repeated_versions=stats.repeated_versions, regressions=stats.regressions,
                       producer_resends=producer.resent, msgs=msgs)
        return figures
    finally:
        producer.join(timeout=5)


# --------------------------------------------------------------------------------------------------
# (a) kill -9 a worker mid-stream, restart it
# --------------------------------------------------------------------------------------------------
@pytest.mark.timeout(240)
@pytest.mark.parametrize("guarantee,fork_min", [("at_least_once", 128), ("at_least_once", 1), ("exactly_once", 128)],
                         ids=["at_least_once", "at_least_once_forked", "exactly_once"])
def test_worker_killed_mid_stream_and_restarted(bootstrap, ripple_home, onnx_model, workers, guarantee, fork_min):
    """``at_least_once_forked``: every batch is scored in a forked child, so the kill may land while
    one runs (the child then exits on its own: the worker's end of its pipe is gone).
    ``exactly_once``: a ``read_committed`` reader sees every profile version's message once."""
    settings = base_settings(bootstrap, ripple_home, processing_guarantee=guarantee, engage_fork_min_users=fork_min)
    env = dict(FAST_GROUP_ENV, PROCESSING_GUARANTEE=guarantee)  # Faust reads its own variable too
    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    stream = make_stream(users=12, per_user=25)

    logs = []

    def fault(worker: Worker) -> dict:
        time.sleep(random.Random(3).uniform(0.0, 0.5))
        t_kill = time.time()
        assert worker.kill() == -signal.SIGKILL
        time.sleep(1.0)
        new = workers(settings, **env)
        logs.extend([worker, new])
        return {"worker": new, "t_kill": t_kill, "t_restart": new.started_at}

    figs = run_with_fault(bootstrap, settings, workers, stream, fault, rate=30.0, worker_env=env,
                          isolation_level=isolation)
    msgs = figs.pop("msgs")
    figs["first_rec_after_restart_s"] = first_output_after(msgs, figs.pop("t_restart"))
    figs["reflected_before_kill"] = reflected_before(msgs, figs["t_kill"])
    figs["output_gap_after_kill_s"] = first_output_after(msgs, figs.pop("t_kill"))
    assert 0 < figs["reflected_before_kill"] < len(stream.engagements), "the kill did not land mid-stream"
    if guarantee == "exactly_once":
        everything = read_json(bootstrap, settings.topic("recommendations"))  # what read_uncommitted also sees
        figs["uncommitted_view_recs"] = len(everything)
        figs["uncommitted_view_repeated_versions"] = output_stats(everything).repeated_versions
        assert (figs["duplicate_rec_ids"], figs["repeated_versions"], figs["regressions"]) == (0, 0, 0), figs
    if fork_min == 1:  # both workers scored in children, and no child failed
        assert all("scored in a forked child" in w.log_text() for w in logs)
        assert not any("scoring in the worker instead" in w.log_text() for w in logs)
    report(f"worker kill -9 ({guarantee}{', forked scoring' if fork_min == 1 else ''})", **figs)


@pytest.mark.timeout(240)
def test_worker_killed_inside_a_throttle_interval(bootstrap, ripple_home, onnx_model, workers):
    """The newest state of a profile is applied and committed, but its (deferred) recommendation is
    not sent yet when the worker dies: the restarted worker must send it without any new input."""
    settings = base_settings(bootstrap, ripple_home, rec_min_interval_s=10.0)
    stream = make_stream(users=6, per_user=4)
    asyncio.run(ensure_topics(settings))
    worker = workers(settings, **FAST_GROUP_ENV)
    produce_now(bootstrap, settings.topic_prefix, stream.posts)
    warm_up(bootstrap, settings, worker)
    expected = dict(stream.expected())
    first_of: dict[str, dict] = {}
    for e in stream.engagements:
        first_of.setdefault(e["key"], e)
    first = list(first_of.values())
    rest = [e for e in stream.engagements if first_of[e["key"]] is not e]
    t_burst = time.monotonic()  # each user: 1 sent now, 3 deferred (in two steps: a batch could hold all 4)
    produce_now(bootstrap, settings.topic_prefix, first)
    msgs, _ = wait_recommendations(bootstrap, settings, {u: 1 for u in expected}, timeout_s=6.0)
    assert latest_counts(msgs, expected) == {u: 1 for u in expected}, "the first event of each user was not sent"
    produce_now(bootstrap, settings.topic_prefix, rest)

    def settled() -> bool:  # every event in the changelog and every input offset committed
        profiles = profile_counts(bootstrap, settings, expected)
        if {u: (p or {}).get("events") for u, p in profiles.items()} != expected:
            return False
        committed = asyncio.run(group_offsets(bootstrap, settings))
        ends = asyncio.run(end_offsets(bootstrap, [settings.topic(t) for t in ENGAGEMENT_TOPICS]))
        return all(committed.get(tp, -1) >= end for tp, end in ends.items() if end > 0)

    deadline = t_burst + 8.0
    while not settled():
        assert time.monotonic() < deadline, "the worker did not apply and commit the burst within 8 s"
        time.sleep(0.3)
    before = latest_counts(read_json(bootstrap, settings.topic("recommendations")), expected)
    assert worker.kill() == -signal.SIGKILL
    assert time.monotonic() - t_burst < 10.0, "too slow: the throttle interval may have passed"
    unsent = sorted(u for u, n in expected.items() if before[u] != n)
    assert unsent, f"nothing was left unsent at the kill ({before}); the test proves nothing"
    t_restart = time.time()
    workers(settings, **FAST_GROUP_ENV)
    msgs, waited = wait_recommendations(bootstrap, settings, expected, timeout_s=60)
    assert latest_counts(msgs, expected) == expected, f"unsent states were not published after the restart: " \
        f"{latest_counts(msgs, expected)} != {expected}"
    report("worker kill -9 inside a throttle interval", unsent_at_kill=len(unsent),
           sent_after_restart_s=first_output_after(msgs, t_restart))


# --------------------------------------------------------------------------------------------------
# (b) restart the (single) broker mid-stream
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def own_broker(ripple_home, tmp_path):
    from devtools.local_kafka import LocalKafka

    kafka = LocalKafka(ripple_home, workdir=tmp_path / "kafka", partitions=2)
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_broker_restarted_mid_stream(own_broker, ripple_home, onnx_model, workers, how):
    settings = base_settings(own_broker.bootstrap, ripple_home)
    stream = make_stream(users=12, per_user=20)

    def fault(worker: Worker) -> dict:
        t0 = time.time()
        if how == "sigkill":
            own_broker.kill()
        else:
            own_broker.stop()
        down = time.time() - t0
        time.sleep(2.0)  # the broker stays away for a moment: clients must retry, not give up
        own_broker.start()
        return {"t_back": time.time(), "broker_down_s": time.time() - t0, "broker_stop_s": down,
                "broker_start_s": own_broker.startup_s}

    figs = run_with_fault(own_broker.bootstrap, settings, workers, stream, fault, rate=40.0, worker_env=FAST_GROUP_ENV)
    msgs = figs.pop("msgs")
    figs["first_rec_after_broker_back_s"] = first_output_after(msgs, figs.pop("t_back"))
    report(f"broker restart ({how})", **figs)


# --------------------------------------------------------------------------------------------------
# (c) 3-node KRaft cluster, RF 3, min.insync.replicas 2: one broker killed mid-stream
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def cluster(ripple_home, tmp_path):
    from devtools.cluster import KafkaCluster

    c = KafkaCluster(ripple_home, nodes=3, heap="384m", workdir=tmp_path / "cluster", partitions=2)
    c.start()
    try:
        yield c
    finally:
        c.close()


def leader_counts(bootstrap: str, topics: list[str]) -> Counter:
    async def describe():
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return await admin.describe_topics(topics)
        finally:
            await admin.close()

    leaders: Counter = Counter()
    for t in asyncio.run(describe()):
        for p in t["partitions"]:
            leaders[p["leader"]] += 1
    return leaders


def topic_replication(bootstrap: str, topics: list[str]) -> dict[str, set[int]]:
    async def describe():
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return await admin.describe_topics(topics)
        finally:
            await admin.close()

    return {t["topic"]: {len(p["replicas"]) for p in t["partitions"]} for t in asyncio.run(describe())}


@pytest.mark.timeout(300)
def test_cluster_node_killed_mid_stream(cluster, ripple_home, onnx_model, workers):
    settings = base_settings(cluster.bootstrap, ripple_home, replication_factor=3)
    stream = make_stream(users=12, per_user=20)
    from streams.app import all_topics

    def fault(worker: Worker) -> dict:
        mine = all_topics(settings) + [f"{settings.app_id}-profiles-changelog", f"{settings.app_id}-posts-changelog"]
        replication = topic_replication(cluster.bootstrap, mine)
        assert all(r == {3} for r in replication.values()), replication  # inputs, outputs and changelogs
        victim = leader_counts(cluster.bootstrap, mine).most_common(1)[0][0]  # the busiest leader
        t0 = time.time()
        cluster.kill_node(victim)
        live = cluster.wait_for_brokers(2, timeout_s=30)
        return {"victim": victim, "fenced_after_s": time.time() - t0, "live": live, "t_kill": t0}

    figs = run_with_fault(cluster.bootstrap, settings, workers, stream, fault, rate=40.0, worker_env=FAST_GROUP_ENV,
                          converge_s=120)
    msgs = figs.pop("msgs")
    figs["first_rec_after_kill_s"] = first_output_after(msgs, figs.pop("t_kill"))
    report("cluster node kill -9", **figs)
