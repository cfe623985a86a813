"""``ripple bench`` glue: start a local broker unless one is given, run, print the table."""

from __future__ import annotations

import logging
from contextlib import nullcontext

from ripple.settings import Settings


def bench_command(settings: Settings, args, *, broker_given: bool) -> int:
    from devtools.bench import BenchConfig, format_results, run_bench
    from devtools.local_kafka import LocalKafka
    from models.embedder import ensure_model

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    config = BenchConfig(events=args.events, users=args.users, posts=args.posts, rate=args.rate,
                         latency_seconds=args.seconds, guarantees=_guarantees(args.guarantees),
                         scale_workers=_worker_counts(args.scale_workers),
                         batch_size=settings.embed_batch_size)  # the raw ORT baseline at the worker's batch size
    ensure_model(settings.resolved_model_path, progress=True, model=settings.model)
    with (nullcontext() if broker_given else LocalKafka(home=settings.home)) as kafka:
        if kafka is not None:
            settings = settings.model_copy(update={"broker": kafka.bootstrap, "security_protocol": "PLAINTEXT"})
        print(f"[ripple bench] broker {settings.broker}", flush=True)
        results = run_bench(settings, config, say=lambda m: print(f"[ripple bench] {m}", flush=True))
    print(format_results(results, config))
    return 0


def _guarantees(text: str) -> tuple[str, ...]:
    guarantees = tuple(g.strip() for g in text.split(",") if g.strip())
    unknown = set(guarantees) - {"at_least_once", "exactly_once"}
    if unknown or not guarantees:
        raise SystemExit(f"--guarantees: expected a comma-separated list of at_least_once and exactly_once, got {text!r}")
    return guarantees


def _worker_counts(text: str) -> tuple[int, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        counts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise SystemExit(f"--scale-workers: expected worker counts like 1,2 (or none), got {text!r}")
    return counts
