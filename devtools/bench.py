"""``ripple bench``: throughput and latency on a real local Kafka broker, with same-run baselines.

Every figure is printed next to a baseline measured in the same run on the same broker:

* worker engagement throughput  vs  raw aiokafka consume → json → produce pass-through, and vs
  bare Faust agents (decode → send; with a table write per event; the same in take_events
  batches), the framework's own ceiling
* the worker under ``exactly_once`` (Kafka transactions)  vs  the same worker under ``at_least_once``
* event → recommendation latency (p50/p99) at a fixed offered rate
* post embedding inside the pipeline  vs  a raw onnxruntime session at the same batch size
* the same drain with 2 workers  vs  1 worker, with the model-sync traffic per worker
  (:mod:`devtools.bench_scale`)

The worker runs as a subprocess exactly as in production (``ripple worker``).  The posts are
written, then embedded by the worker, alone (phase 1); then the worker is stopped, the engagements
are written, and the restarted worker drains them (phase 2), so neither figure is diluted by the
other and the bench's own producer takes no CPU from the worker.  Outputs are read back once the
worker (or bare agent) has committed every input offset, so the bench's reader takes none either.
How a run is timed from its outputs (start-up and recovery left out): :mod:`devtools.bench_timing`.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devtools.bench_kafka import produce_fast, read_until, wait_committed
from devtools.bench_timing import engine_start, per_second, steady_rate
from processors.sample_data import post_texts
from ripple.settings import Settings
from streams import engagement_engine, wire
from streams.security import kafka_client_kwargs
from streams.topics import create_topics, ensure_topics, partition_counts


@dataclass
class BenchConfig:
    events: int = 20_000  # engagement events for the throughput run
    users: int = 2_000
    posts: int = 2_000
    rate: float = 1_000.0  # offered events/s for the latency run
    latency_seconds: float = 10.0
    batch_size: int = Settings.model_fields["embed_batch_size"].default  # of the raw ORT baselines (ripple bench passes the worker's)
    #: processing guarantees measured, each with its own worker, topics and state
    guarantees: tuple[str, ...] = ("at_least_once", "exactly_once")
    #: worker counts whose drain of the same likes is measured (devtools/bench_scale.py)
    scale_workers: tuple[int, ...] = (1, 2)


def _posts(n: int, seed: int = 0) -> list[dict]:
    return [{"topic": "posts", "key": f"p{i}", "value": {"schema_version": 1, "post_id": f"p{i}",
             "author_id": f"a{i % 50}", "text": text, "ts": time.time()}} for i, text in enumerate(post_texts(n, seed))]


def _likes(n: int, users: int, posts: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        u = f"u{rng.randrange(users)}"
        out.append({"topic": "likes", "key": u, "value": {"schema_version": 1, "user_id": u,
                    "post_id": f"p{rng.randrange(posts)}", "ts": time.time()}})
    return out


async def _applied_events(bootstrap: str, changelog: str, expected: int, timeout_s: float,
                          **client_kwargs) -> tuple[int, list[tuple[int, int]]]:
    """Events folded into profiles (the growth of users' ``events`` counts over the changelog
    records; the engagement engine saves a profile once per batch, so one record may carry several)
    and, per record that grew, its timestamp and growth (for :func:`steady_rate`)."""
    points: list[tuple[int, int]] = []
    last: dict[str, int] = {}
    read = applied = 0  # records of the growing list already looked at; events found so far

    def done(records) -> bool:
        nonlocal read, applied
        for r in records[read:]:
            doc = json.loads(r.value) if r.value else None
            if doc and doc.get("events", 0) > last.get(doc["user_id"], 0):
                grew = doc["events"] - last.get(doc["user_id"], 0)
                applied += grew
                last[doc["user_id"]] = doc["events"]
                points.append((r.timestamp, grew))
        read = len(records)
        return applied >= expected

    await read_until(bootstrap, changelog, done, timeout_s, **client_kwargs)
    return applied, points


async def passthrough_baseline(bootstrap: str, n: int, **client_kwargs) -> float:
    """Events/s of a raw aiokafka consumer → json.loads → wire.dumps → producer loop (no Faust, no state)."""
    src, dst = f"bench-src-{uuid.uuid4().hex[:6]}", f"bench-dst-{uuid.uuid4().hex[:6]}"
    await create_topics(bootstrap, [src, dst], partitions=4, **client_kwargs)
    await produce_fast(bootstrap, [{"topic": src, "key": e["key"], "value": e["value"]} for e in _likes(n, 1000, 100)], "",
                        **client_kwargs)
    consumer = AIOKafkaConsumer(src, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
                                **client_kwargs)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, **client_kwargs)
    await consumer.start()
    await producer.start()
    seen = 0
    start = None
    try:
        while seen < n:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                start = start or time.perf_counter()
                for r in records:
                    doc = json.loads(r.value)
                    await producer.send(dst, wire.dumps(doc), key=r.key)  # the worker's codec
                    seen += 1
        await producer.flush()
        return n / (time.perf_counter() - start)
    finally:
        await consumer.stop()
        await producer.stop()


async def faust_baseline(bootstrap: str, n: int, *, table: bool, log_path: Path, batch: int = 0,
                         timeout_s: float = 600, gc_threshold: int = 0) -> float:
    """Events/s of a bare Faust agent (:mod:`devtools.faust_baseline`) over ``n`` likes written
    beforehand: decode → (table write) → send, one event at a time or, with ``batch``, in
    ``stream.take_events(batch)`` micro-batches, with the worker's garbage-collector tuning
    (``gc_threshold``).  Measured like the worker: the output is read back once the agent has
    committed every input, and the rate runs from the first to the last output record's Kafka
    timestamp, so start-up is excluded."""
    from ripple.demo import stop_worker

    tag = uuid.uuid4().hex[:6]
    src, dst = f"bench-fsrc-{tag}", f"bench-fdst-{tag}"
    await create_topics(bootstrap, [src, dst], partitions=4)
    await produce_fast(bootstrap, [{"topic": src, "key": e["key"], "value": e["value"]} for e in _likes(n, 1000, 100)], "")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "devtools.faust_baseline", bootstrap, f"bench-faust-{tag}", src, dst,
                                 *(["--table"] if table else []), "--batch", str(batch), "--gc-threshold", str(gc_threshold),
                                 "--datadir", str(log_path.parent / f"faust-{tag}")],
                                stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:  # read back once everything is processed (as the worker's drain): the reader takes no CPU from it
        await wait_committed(bootstrap, f"bench-faust-{tag}", [src], timeout_s=timeout_s, alive=lambda: proc.poll() is None)
        got = await read_until(bootstrap, dst, lambda rs: len(rs) >= n or proc.poll() is not None, 60)
    finally:
        stop_worker(proc)
        shutil.rmtree(log_path.parent / f"faust-{tag}", ignore_errors=True)
    return steady_rate([(r.timestamp, 1) for r in got])[0] if len(got) >= n else float("nan")


def run_bench(settings: Settings, config: BenchConfig, *, say=print) -> dict:
    from models.bench_embed import bench as bench_embed
    from models.embedder import OnnxEmbedder, ensure_model
    results: dict = {}
    b, auth = settings.broker, kafka_client_kwargs(settings)
    say("baseline: raw aiokafka consume → json → produce pass-through")
    results["passthrough_eps"] = asyncio.run(passthrough_baseline(b, config.events, **auth))
    faust_baselines = [  # result key, what it is, table write per event, take_events batch (0: per event)
        ("faust_eps", "bare Faust agent, decode → send, one event at a time", False, 0),
        ("faust_table_eps", "bare Faust agent with a table write per event", True, 0),
        ("faust_batch_eps", "bare Faust agent with a table write per event, events taken in batches of 256", True, 256),
    ]
    if auth:  # the bare Faust app speaks PLAINTEXT only
        say("Faust baselines skipped: they support PLAINTEXT brokers only")
        results.update({key: float("nan") for key, *_ in faust_baselines})
    else:
        for key, what, table, batch in faust_baselines:
            say(f"baseline: {what}")
            results[key] = asyncio.run(faust_baseline(b, config.events, table=table, batch=batch,
                                                      log_path=settings.home / "bench" / "faust-baseline.log",
                                                      gc_threshold=settings.gc_threshold))

    posts = _posts(config.posts)
    results["guarantees"] = {}
    for guarantee in config.guarantees:
        say(f"worker with processing_guarantee={guarantee}")
        s = settings.model_copy(update={"topic_prefix": f"bench{uuid.uuid4().hex[:6]}.", "log_level": "info",
                                        "app_id": f"bench-{uuid.uuid4().hex[:6]}", "processing_guarantee": guarantee})
        results["guarantees"][guarantee] = _worker_run(s, config, posts, say, **auth)

    if config.scale_workers:
        from devtools.bench_scale import scale_run

        say(f"the same drain with {', '.join(map(str, config.scale_workers))} worker(s), and their model-sync traffic")
        likes = _likes(config.events, config.users, config.posts)
        results["scale"] = [scale_run(settings, n, posts, likes, say, **auth) for n in config.scale_workers]

    # raw onnxruntime at the same batch size on the same texts: a default session, and the worker's threading
    emb = OnnxEmbedder(ensure_model(settings.resolved_model_path, model=settings.model), provider=settings.onnx_provider,
                       parallel=settings.onnx_cpu_parallel)
    texts = [p["value"]["text"] for p in posts]
    r = bench_embed(emb, texts, batch_size=config.batch_size)
    results.update(raw_ort_sps=r["raw_sps"], raw_threaded_sps=r["raw_threaded_sps"], embedder_sps=r["embedder_sps"],
                   onnx_provider=emb.provider, onnx_parallel=emb.parallel)
    return results


def _worker_run(s: Settings, config: BenchConfig, posts: list[dict], say, **auth) -> dict:
    """Pipeline embedding, drain throughput and latency of one worker configured by ``s``."""
    from ripple.demo import start_worker, stop_worker

    b, out = s.broker, {}
    asyncio.run(ensure_topics(s))
    log_path = s.home / "bench" / f"worker-{s.processing_guarantee}.log"
    worker = None
    try:
        # 1) post embedding inside the pipeline, alone: posts topic → embed agent → posts table.  As
        # in the drain below, the posts are written before the worker starts and read back once it
        # has committed them all, so neither the bench's producer nor its reader takes CPU from it
        say(f"  pipeline embedding: {config.posts} posts, written first, then embedded")
        asyncio.run(produce_fast(b, posts, s.topic_prefix, **auth))
        worker = start_worker(s, log_path)
        asyncio.run(wait_committed(b, s.app_id, [s.topic("posts")], timeout_s=600, alive=lambda: worker.poll() is None,
                                   **auth))
        got = asyncio.run(read_until(b, f"{s.app_id}-posts-changelog", lambda rs: len(rs) >= config.posts,
                                      timeout_s=60, **auth))
        out["pipeline_embed_sps"] = steady_rate([(r.timestamp, 1) for r in got])[0]

        # 2) throughput: the engagements are written while the worker is stopped, then drained by the
        # restarted worker (its catalog rebuilt from the posts table), and read back only once the
        # worker has committed them all
        say(f"  throughput: {config.events} likes from {config.users} users, written first, then drained")
        stop_worker(worker)
        asyncio.run(produce_fast(b, _likes(config.events, config.users, config.posts), s.topic_prefix, **auth))
        restarted = time.time()
        worker = start_worker(s, log_path)
        group = engagement_engine.consumer_group(s)
        asyncio.run(wait_committed(b, group, [s.topic("likes")], timeout_s=600, alive=lambda: worker.poll() is None, **auth))
        n, points = asyncio.run(_applied_events(b, engagement_engine.changelog_topic(s), config.events, timeout_s=60, **auth))
        start = engine_start(log_path, after=restarted)
        if start is not None and points:  # from the first batch's start to its last profile written
            t0, t1 = int(start * 1000), max(t for t, _ in points)
            out["worker_eps"] = per_second(n, (t1 - t0) / 1000.0)
        else:
            say(f"  no 'engage: first batch' line in {log_path}: drain timed from the changelog's bursts")
            out["worker_eps"], (t0, t1) = steady_rate(points)
        out["worker_events_seen"] = n
        recs = asyncio.run(read_until(b, s.topic("recommendations"), lambda rs: False, timeout_s=5, **auth))
        in_window = sum(1 for r in recs if t0 < r.timestamp <= t1)
        out["worker_recs_per_s"] = per_second(in_window, (t1 - t0) / 1000.0)

        # 3) latency at a fixed offered rate: every event from a new user → an immediate recommendation
        say(f"  latency: {config.rate:.0f} events/s for {config.latency_seconds:.0f} s (one event per new user)")
        out.update(asyncio.run(_latency_run(b, s, config, **auth)))
    finally:
        if worker is not None:
            stop_worker(worker)
    return out


async def _latency_run(bootstrap: str, s: Settings, config: BenchConfig, **client_kwargs) -> dict:
    """Offer ``config.rate`` events/s, each from a new user, and time each user's first
    recommendation twice: to its ``generated_at`` (scored) and to the moment a downstream
    consumer, reading the whole time, received it (delivered: adds the worker's send, the broker
    round trip and the fetch)."""
    n = int(config.rate * config.latency_seconds)
    tag = uuid.uuid4().hex[:6]
    topic = s.topic("recommendations")
    tps = [TopicPartition(topic, p) for p in range((await partition_counts(bootstrap, [topic], **client_kwargs))[topic])]
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                              fetch_max_wait_ms=50, **client_kwargs)
    await reader.start()
    reader.assign(tps)
    await reader.seek_to_end(*tps)
    for tp in tps:
        await reader.position(tp)  # from here on, before the first event is sent
    sent_at: dict[str, float] = {}
    got: dict[str, tuple[float, float]] = {}  # user → (generated_at, received at)

    async def read() -> None:
        while True:
            batch = await reader.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for r in records:
                    m = json.loads(r.value)
                    if m["user_id"] in sent_at and m["user_id"] not in got:
                        got[m["user_id"]] = (m["generated_at"], now)

    reading = asyncio.ensure_future(read())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1, **client_kwargs)
    await producer.start()
    try:
        start = time.perf_counter()
        for i in range(n):
            target = start + i / config.rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            u = f"lat{tag}-{i}"
            sent_at[u] = time.time()
            doc = {"schema_version": 1, "user_id": u, "post_id": f"p{i % config.posts}", "ts": sent_at[u]}
            await producer.send(s.topic("likes"), json.dumps(doc).encode(), key=u.encode())
        await producer.flush()
        burst_end = time.time()
        deadline = time.monotonic() + 120
        while len(got) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        reading.cancel()
        await producer.stop()
        await reader.stop()
    scored = np.array([g - sent_at[u] for u, (g, _) in got.items()]) * 1000
    delivered = np.array([r - sent_at[u] for u, (_, r) in got.items()]) * 1000

    def pct(x: np.ndarray, q: float) -> float:
        return float(np.percentile(x, q)) if x.size else float("nan")

    last = max((r for _, r in got.values()), default=float("nan"))
    return {"latency_events": n, "latency_received": len(got), "latency_last_after_end_s": last - burst_end,
            "latency_p50_ms": pct(scored, 50), "latency_p99_ms": pct(scored, 99),
            "delivered_p50_ms": pct(delivered, 50), "delivered_p99_ms": pct(delivered, 99)}


def format_results(r: dict, config: BenchConfig) -> str:
    threaded = "  the embedder's pieces, at once"
    out = [f"{'measure':40} {'Ripple':>16}   {'baseline (same run)':34} {'value':>16} {'ratio':>7}", "-" * 118]
    for guarantee, e in r["guarantees"].items():
        rows = [
            (f"worker throughput, {guarantee}", f"{e['worker_eps']:,.0f} ev/s", "raw aiokafka pass-through",
             f"{r['passthrough_eps']:,.0f} ev/s", e["worker_eps"] / r["passthrough_eps"]),
            ("", "", "bare Faust agent (decode → send)", f"{r['faust_eps']:,.0f} ev/s", e["worker_eps"] / r["faust_eps"]),
            ("", "", "bare Faust agent + table write", f"{r['faust_table_eps']:,.0f} ev/s",
             e["worker_eps"] / r["faust_table_eps"]),
            ("", "", "  the same, take_events(256)", f"{r['faust_batch_eps']:,.0f} ev/s",
             e["worker_eps"] / r["faust_batch_eps"]),
            (f"pipeline post embedding ({guarantee} run)", f"{e['pipeline_embed_sps']:,.0f} sent/s",
             f"raw ORT session (batch {config.batch_size})", f"{r['raw_ort_sps']:,.0f} sent/s",
             e["pipeline_embed_sps"] / r["raw_ort_sps"]),
            ("", "", threaded, f"{r['raw_threaded_sps']:,.0f} sent/s",
             e["pipeline_embed_sps"] / r["raw_threaded_sps"]),
        ]
        out += [f"{a:40} {b:>16}   {c:34} {d:>16} {x:7.2f}" for a, b, c, d, x in rows]
    out.append(f"{'OnnxEmbedder.embed (tokenise+run)':40} {r['embedder_sps']:>11,.0f} sent/s   "
               f"{'raw ORT session (batch ' + str(config.batch_size) + ')':34} {r['raw_ort_sps']:>9,.0f} sent/s "
               f"{r['embedder_sps'] / r['raw_ort_sps']:7.2f}")
    out.append(f"{'':40} {'':>16}   {threaded:34} {r['raw_threaded_sps']:>9,.0f} sent/s "
               f"{r['embedder_sps'] / r['raw_threaded_sps']:7.2f}")
    runs = r["guarantees"]
    if {"at_least_once", "exactly_once"} <= set(runs):
        alo, eos = runs["at_least_once"]["worker_eps"], runs["exactly_once"]["worker_eps"]
        out.append(f"{'worker throughput, exactly_once':40} {eos:>11,.0f} ev/s   {'the same worker, at_least_once':34} "
                   f"{alo:>11,.0f} ev/s {eos / alo:7.2f}")
    for guarantee, e in runs.items():
        out.append(f"{guarantee}: while draining, {e['worker_events_seen']:,} events applied and "
                   f"{e['worker_recs_per_s']:,.0f} recommendations/s published (per-user rate limit); "
                   f"event→recommendation latency at {config.rate:,.0f} ev/s offered: p50 {e['latency_p50_ms']:.1f} ms, "
                   f"p99 {e['latency_p99_ms']:.1f} ms scored, p50 {e['delivered_p50_ms']:.1f} ms, "
                   f"p99 {e['delivered_p99_ms']:.1f} ms delivered ({e['latency_received']}/{e['latency_events']} users "
                   f"answered, the last {e['latency_last_after_end_s']:.1f} s after the last event was sent)")
    if r.get("scale"):
        from devtools.bench_scale import format_scale

        out += format_scale(r["scale"])
    out.append(f"ONNX provider {r['onnx_provider']}, {r['onnx_parallel']} run(s) at once per call "
               "(RIPPLE_ONNX_CPU_PARALLEL); raw ORT session = onnxruntime's default options")
    return "\n".join(out)
