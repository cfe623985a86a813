"""The scale-out part of ``ripple bench``: the same drain with 1 and with N workers, and the
model-sync traffic each worker sends while it drains.

Per worker count, on fresh topics: the posts are written and embedded by that many workers,
which are then stopped; the likes are written; the workers are started together and drain them.
The drain runs from the first engine's first batch (its log line) to the last profile written;
the sync traffic is read back from the model-sync topic (records and bytes per sending worker
over the same span).  With several workers on one machine they share its cores: the figure says
what the sync and the rebalances cost, not what more machines would add.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

from devtools.bench_kafka import produce_fast, read_until, wait_committed
from devtools.bench_timing import engine_start, per_second, steady_rate
from ripple.settings import Settings
from streams import engagement_engine, model_sync
from streams.topics import ensure_topics


def scale_run(settings: Settings, workers: int, posts: list[dict], likes: list[dict], say, **auth) -> dict:
    """Drain events/s of ``workers`` workers and the model-sync traffic per worker."""
    from devtools.bench import _applied_events
    from ripple.demo import start_worker, stop_worker

    s = settings.model_copy(update={"topic_prefix": f"scale{uuid.uuid4().hex[:6]}.", "log_level": "info",
                                    "app_id": f"scale-{uuid.uuid4().hex[:6]}", "processing_guarantee": "at_least_once"})
    b = s.broker
    asyncio.run(ensure_topics(s))
    logs = [s.home / "bench" / f"scale-{workers}-worker-{i}.log" for i in range(workers)]
    procs = []
    try:
        say(f"  {workers} worker(s): {len(posts)} posts embedded first")
        asyncio.run(produce_fast(b, posts, s.topic_prefix, **auth))
        procs = [start_worker(s, log) for log in logs]
        asyncio.run(wait_committed(b, s.app_id, [s.topic("posts")], timeout_s=600,
                                   alive=lambda: all(p.poll() is None for p in procs), **auth))
        for p in procs:
            stop_worker(p)
        say(f"  {workers} worker(s): {len(likes)} likes written, then drained")
        asyncio.run(produce_fast(b, likes, s.topic_prefix, **auth))
        restarted = time.time()
        procs = [start_worker(s, log) for log in logs]
        asyncio.run(wait_committed(b, engagement_engine.consumer_group(s), [s.topic("likes")], timeout_s=600,
                                   alive=lambda: all(p.poll() is None for p in procs), **auth))
        n, points = asyncio.run(_applied_events(b, engagement_engine.changelog_topic(s), len(likes), timeout_s=60,
                                                **auth))
        starts = [t for t in (engine_start(log, after=restarted) for log in logs) if t is not None]
        if starts and points:
            t0, t1 = int(min(starts) * 1000), max(t for t, _ in points)
            eps = per_second(n, (t1 - t0) / 1000.0)
        else:
            eps, (t0, t1) = steady_rate(points)
        time.sleep(s.sync_interval_s * 2)  # the last deltas of the drain
        sync = asyncio.run(read_until(b, model_sync.sync_topic(s), lambda rs: False, timeout_s=5, **auth))
    finally:
        for p in procs:
            stop_worker(p)
    span = max((t1 - t0) / 1000.0, 1e-9)
    during = [r for r in sync if t0 <= r.timestamp <= t1 + s.sync_interval_s * 1000]
    senders = Counter(r.key for r in during)
    return {"workers": workers, "eps": eps, "events": n, "sync_senders": len(senders),
            "sync_messages_per_s": len(during) / span / workers,
            "sync_kb_per_s": sum(len(r.value or b"") for r in during) / span / workers / 1e3,
            "sync_mean_kb": (sum(len(r.value or b"") for r in during) / len(during) / 1e3) if during else 0.0}


def format_scale(runs: list[dict]) -> list[str]:
    """Lines of the bench table: each worker count's drain against one worker's, and its sync traffic."""
    one = next((r["eps"] for r in runs if r["workers"] == 1), None)
    out = []
    for r in runs:
        ratio = f", {r['eps'] / one:.2f}x one worker" if one and r["workers"] != 1 else ""
        out.append(f"drain with {r['workers']} worker(s) on this machine: {r['eps']:,.0f} ev/s{ratio}; model sync per "
                   f"worker {r['sync_messages_per_s']:.2f} messages/s, {r['sync_kb_per_s']:.1f} kB/s "
                   f"(mean message {r['sync_mean_kb']:.1f} kB)")
    return out
