"""Load test of ``ripple serve``: requests/s and latency against a bare aiohttp baseline.

    python -m devtools.bench_serve [--users 20000] [--requests 20000] [--concurrency 32]

Starts a local Kafka broker (unless ``--broker``), writes one recommendations message per user
and one trending message, starts ``ripple serve`` as its own process and, once it is ready,
sends a bounded number of ``GET /v1/users/{id}/recommendations`` from ``--concurrency``
connections (``--unknown`` of them for users it has never seen, answered from the trends).
The baseline is a bare aiohttp server answering a constant JSON body of the same size, in its
own process, loaded the same way in the same run: the ratio says what Ripple's lookup, JSON
and metrics cost on top of the HTTP stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from contextlib import nullcontext

import numpy as np

BASELINE = """
import sys
from aiohttp import web
body = sys.stdin.read().encode()
async def answer(request):
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/v1/users/{user_id}/recommendations", answer)
app.router.add_get("/readyz", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _message(user: str, rng: random.Random) -> bytes:
    items = [{"post_id": f"p{rng.randrange(50_000)}", "author_id": f"a{rng.randrange(5_000)}",
              "score": round(rng.random(), 4), "reasons": {"similarity": 0.5, "popularity": 0.2}} for _ in range(10)]
    return json.dumps({"schema_version": 1, "rec_id": uuid.uuid4().hex, "user_id": user, "generated_at": time.time(),
                       "model_version": "bench", "based_on_events": rng.randrange(1, 50), "items": items}).encode()


async def _fill(bootstrap: str, prefix: str, users: int, partitions: int) -> None:
    from aiokafka import AIOKafkaProducer

    from ripple.settings import Settings
    from streams.topics import ensure_topics

    await ensure_topics(Settings(broker=bootstrap, topic_prefix=prefix, partitions=partitions))
    rng = random.Random(0)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        for i in range(users):
            await producer.send(f"{prefix}recommendations", key=f"u{i}".encode(), value=_message(f"u{i}", rng))
        posts = [{"post_id": f"p{i}", "author_id": f"a{i}", "score": 10.0 - i / 10} for i in range(50)]
        windows = {w: {"window_s": s, "posts": posts, "authors": []} for w, s in (("1h", 3600.0), ("24h", 86400.0))}
        await producer.send(f"{prefix}trending", key=b"all", value=json.dumps(
            {"schema_version": 1, "generated_at": time.time(), "as_of": time.time(), "windows": windows}).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _wait_ready(base: str, timeout_s: float) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{base}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{base} not ready after {timeout_s:g} s")


async def load(base: str, paths: list[str], concurrency: int) -> dict:
    """Send every path once from ``concurrency`` connections; requests/s and latency percentiles."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    queue = iter(paths)
    connector = aiohttp.TCPConnector(limit=concurrency)

    async def client(session):
        nonlocal errors
        for path in queue:
            start = time.perf_counter()
            async with session.get(base + path) as r:
                await r.read()
                errors += r.status != 200
            latencies.append(time.perf_counter() - start)

    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def _start(args: list[str], env: dict, stdin: str | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(args, env=env, stdin=subprocess.PIPE if stdin is not None else None,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    if stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.close()
    return proc


def run(args: argparse.Namespace) -> dict:
    from devtools.local_kafka import LocalKafka
    from ripple.settings import Settings

    home = Settings().home
    with (nullcontext() if args.broker else LocalKafka(home=home)) as kafka:
        bootstrap = args.broker or kafka.bootstrap
        prefix = f"bench-serve-{uuid.uuid4().hex[:6]}."
        print(f"[bench serve] writing {args.users} users' lists to {bootstrap}", flush=True)
        asyncio.run(_fill(bootstrap, prefix, args.users, args.partitions))
        rng = random.Random(1)
        paths = [f"/v1/users/{'stranger' if rng.random() < args.unknown else 'u'}{rng.randrange(args.users)}"
                 "/recommendations" for _ in range(args.requests)]
        env = dict(os.environ, RIPPLE_BROKER=bootstrap, RIPPLE_TOPIC_PREFIX=prefix, RIPPLE_LOG_LEVEL="warning")
        results = {}
        body = _message("u0", random.Random(2)).decode()
        for name, argv, stdin in [
            ("bare aiohttp", [sys.executable, "-c", BASELINE], body),
            ("ripple serve", [sys.executable, "-m", "ripple", "serve"], None),
        ]:
            port = _free_port()
            proc = _start(argv + ["--port", str(port)] if name == "ripple serve" else argv + [str(port)], env, stdin)
            try:
                base = f"http://127.0.0.1:{port}"
                started = time.monotonic()
                asyncio.run(_wait_ready(base, 120))
                ready_s = time.monotonic() - started
                results[name] = {**asyncio.run(load(base, paths, args.concurrency)), "ready_s": ready_s}
            finally:
                proc.terminate()
                proc.wait(10)
    base, ours = results["bare aiohttp"], results["ripple serve"]
    print(f"{'server':<14} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'ready s':>8}")
    for name, r in results.items():
        print(f"{name:<14} {r['rps']:>11,.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7} {r['ready_s']:>8.1f}")
    print(f"ripple serve ÷ bare aiohttp, same run: {ours['rps'] / base['rps']:.2f}× requests/s; "
          f"{args.users} users held, {args.unknown:.0%} of requests for unknown users")
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.bench_serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", help="an existing broker (default: start a local one)")
    p.add_argument("--users", type=int, default=20_000, help="users with a list (default 20000)")
    p.add_argument("--requests", type=int, default=20_000, help="requests per server (default 20000)")
    p.add_argument("--concurrency", type=int, default=32, help="connections at once (default 32)")
    p.add_argument("--unknown", type=float, default=0.1, help="share of requests for unknown users (default 0.1)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of the topics (default 4)")
    run(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
