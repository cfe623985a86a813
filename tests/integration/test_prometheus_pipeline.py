"""Every dashboard query returns data from a real Prometheus scraping a real worker on real Kafka.

A ``prometheus`` binary (Debian package ``prometheus``) is started on loopback with a generated
config that scrapes the worker's ``/metrics`` every second; then a worker subprocess runs the
pipeline on the session's Kafka broker with the sample stream (posts, likes, comments, shares,
malformed messages), and each PromQL expression of ``deploy/grafana/build_dashboards.py`` is
asked of ``/api/v1/query``.  An expression passes when it returns at least one series with a
finite value; the panels that only make sense with traffic must also show the traffic the test
caused (see :data:`ACTIVE`).

Prometheus starts *before* the worker, so it usually also sees the worker's first samples (counters
at zero).  Missing ``prometheus``: skip locally, FAIL when ``CI`` is set.

Set ``RIPPLE_DASHBOARD_PNG=docs/img/dashboard.png`` to also draw the panels from this run with
``deploy/grafana/render_panels.py`` (needs matplotlib).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml

from processors.sample_data import generate_stream
from streams.client import consume, produce

try:  # pytest's default "prepend" import mode puts this directory on sys.path
    from test_deploy import require
except ImportError:  # another import mode: load the sibling module by path
    _spec = importlib.util.spec_from_file_location("_ripple_test_deploy", Path(__file__).with_name("test_deploy.py"))
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    require = _module.require

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana"
JOB = "ripple-worker"

#: Panels whose queries must show the traffic this test produced, not just a series: for
#: ``(panel title, fragment of the PromQL)``, the ``label`` values that must have a finite value
#: > 0 (``None``: the label-less series itself).  Every other expression — e.g. consumer lag and
#: the embedding queue, which are legitimately 0 once the worker caught up ("0" is data) — must
#: still return at least one series with a finite value.
ACTIVE: dict[tuple[str, str], tuple[str | None, set[str]]] = {
    ("Events consumed by topic", "ripple_events_consumed_total"): ("topic", {"posts", "likes", "comments", "shares"}),
    ("Events consumed by kind", "ripple_events_consumed_total"): ("kind", {"post", "like", "comment", "share", "invalid"}),
    ("Recommendations and suggestions published", "ripple_recommendations_published_total"): (None, set()),
    ("Recommendations and suggestions published", "ripple_suggestions_published_total"): (None, set()),
    ("Workers up", "up{"): (None, set()),
    ("Processing latency per agent", "0.5,"): ("agent", {"embed_posts", "engage", "suggest_replies"}),
    ("Processing latency per agent", "0.95,"): ("agent", {"embed_posts", "engage", "suggest_replies"}),
    ("Processing latency per agent", "0.99,"): ("agent", {"embed_posts", "engage", "suggest_replies"}),
    ("Event to recommendation latency", "0.5,"): (None, set()),
    ("Event to recommendation latency", "0.95,"): (None, set()),
    ("Event to recommendation latency", "0.99,"): (None, set()),
    ("Dead letters by reason", "ripple_dead_letters_total"): ("reason", {"invalid_json", "schema"}),
    ("Dead-letter ratio by topic", "ripple_dead_letters_total"): ("topic", {"likes"}),
    ("Model updates", "ripple_model_updates_total"): ("kind", {"profile", "factors"}),
    ("ONNX throughput", "ripple_onnx_batch_size_sum"): ("kind", {"post", "comment"}),
    ("ONNX throughput", "ripple_onnx_inference_seconds_count"): ("kind", {"post", "comment"}),
    ("ONNX mean batch size and embedding queue", "ripple_onnx_batch_size_count"): ("kind", {"post", "comment"}),
    ("ONNX inference time", "0.5,"): ("kind", {"post", "comment"}),
    ("ONNX inference time", "0.95,"): ("kind", {"post", "comment"}),
    ("ONNX inference time", "0.99,"): ("kind", {"post", "comment"}),
    ("Faust producer send and commit latency p95", "ripple_faust_producer_send_latency"): (None, set()),
    ("Faust producer send and commit latency p95", "ripple_faust_consumer_commit_latency"): (None, set()),
    ("Faust messages received and sent", "ripple_faust_messages_received_total"): (None, set()),
    ("Faust messages received and sent", "ripple_faust_total_sent_messages_total"): (None, set()),
}

#: alert conditions that must be quiet while the one worker is healthy (the other alerts' thresholds
#: depend on machine speed, so for them the test only checks that Prometheus evaluates them)
QUIET_ALERTS = {"RippleWorkerDown", "RippleNoWorkers"}


# --- helpers ------------------------------------------------------------------------------------
def _dashboards():
    spec = importlib.util.spec_from_file_location("build_dashboards", DASHBOARDS / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(base: str, expr: str) -> dict:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # 400/422 with a PromQL error message
        return json.load(e)


def _values(result: list[dict], label: str | None) -> dict[str | None, float]:
    return {(r["metric"].get(label) if label else None): float(r["value"][1]) for r in result}


def check(title: str, expr: str, answer: dict) -> str | None:
    """``None`` if the answer shows what the panel needs, else why not."""
    if answer.get("status") != "success":
        return f"query failed: {answer.get('error')}"
    result = answer["data"]["result"]
    if not result:
        return "empty result"
    if not any(math.isfinite(float(r["value"][1])) for r in result):
        return f"no finite value: {result}"
    for (t, fragment), (label, wanted) in ACTIVE.items():
        if t != title or fragment not in expr:
            continue
        values = _values(result, label)
        if label is None:
            if not any(math.isfinite(v) and v > 0 for v in values.values()):
                return f"no activity: {values}"
        else:
            idle = {w: values.get(w) for w in wanted if not (math.isfinite(values.get(w, math.nan)) and values[w] > 0)}
            if idle:
                return f"no activity for {label} {idle} (all: {values})"
    return None


def _brief(answer: dict) -> str:
    return ", ".join(f"{r['metric'] or '{}'}={float(r['value'][1]):.4g}" for r in answer["data"]["result"])


def _engagements(events: list[dict]) -> Counter:
    return Counter(e["key"] for e in events if e["topic"] != "posts")


async def _traffic(bootstrap: str, prefix: str, stream, seconds: float) -> None:
    """About 6 events/s for ``seconds`` (likes, comments, shares, a post now and then, a malformed
    message every 10 s) with a burst of 300 events half-way; only used to draw docs/img/dashboard.png."""
    from aiokafka import AIOKafkaProducer

    from processors.sample_data import COMMENTS

    rng = random.Random(7)
    users, post_ids = sorted(stream.user_themes), list(stream.post_text)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        ticks = int(seconds * 2)
        for tick in range(ticks):
            for n in range(300 if tick == ticks // 2 else 3):
                user, post = rng.choice(users), rng.choice(post_ids)
                topic = rng.choices(["likes", "comments", "shares"], weights=[6, 3, 1])[0]
                value = {"schema_version": 1, "user_id": user, "post_id": post}
                if topic == "comments":
                    value.update(comment_id=f"t{tick}-{n}", text=rng.choice(COMMENTS))
                await producer.send(prefix + topic, key=user.encode(), value=json.dumps(value).encode())
            if tick % 10 == 0:
                pid = f"t-post-{tick}"
                post_ids.append(pid)
                text = stream.post_text[rng.choice(list(stream.post_text))] + f" (again, {tick})"
                await producer.send(prefix + "posts", key=pid.encode(), value=json.dumps(
                    {"schema_version": 1, "post_id": pid, "author_id": rng.choice(users), "text": text}).encode())
            if tick % 20 == 5:
                await producer.send(prefix + "likes", key=b"user0", value=b'{"schema_version": 1,')
            await asyncio.sleep(0.5)
        await producer.flush()
    finally:
        await producer.stop()


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def prometheus(metrics_port, tmp_path):
    """Base URL of a real Prometheus on loopback scraping ``127.0.0.1:<metrics_port>`` every second."""
    binary = require("prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }))
    log_path = tmp_path / "prometheus.log"
    proc = base = None
    with log_path.open("w") as log:
        try:
            for _attempt in range(3):  # the free port may be taken between probing and binding
                port = _free_port()
                proc = subprocess.Popen(
                    [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                     f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                base = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 60
                while proc.poll() is None and time.monotonic() < deadline:
                    try:
                        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
                            if r.status == 200:
                                break
                    except OSError:
                        time.sleep(0.2)
                if proc.poll() is None and time.monotonic() < deadline:
                    break
                _stop(proc)
                proc = None
            assert proc is not None, f"prometheus did not become ready:\n{log_path.read_text()[-3000:]}"
            yield base
        finally:
            if proc is not None:
                _stop(proc)
            tail = log_path.read_text(errors="replace").splitlines()[-40:]
            print(f"--- prometheus.log: last {len(tail)} lines ---\n" + "\n".join(tail))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for_query(base: str, expr: str, timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = query(base, expr)
        if answer.get("status") == "success" and answer["data"]["result"]:
            return answer["data"]["result"]
        time.sleep(0.5)
    return []


def wait_until_reflected(bootstrap: str, topic: str, expected: Counter, timeout_s: float) -> None:
    """Until each user's latest recommendation is based on ``expected[user]`` events."""

    def done(msgs):
        latest = {m["user_id"]: m for m in msgs}
        return all(latest.get(u, {}).get("based_on_events") == n for u, n in expected.items())

    msgs = asyncio.run(consume(bootstrap, topic, until=done, timeout_s=timeout_s))
    latest = {m["user_id"]: m.get("based_on_events") for m in msgs}
    assert done(msgs), f"recommendations did not catch up: {({u: (latest.get(u), n) for u, n in expected.items()})}"


# --- the test ------------------------------------------------------------------------------------
def test_every_dashboard_expression_returns_data_from_a_real_prometheus(bootstrap, prometheus, metrics_port,
                                                                        worker_factory):
    dashboards = _dashboards()
    expressions = dashboards.expressions()
    for title, fragment in ACTIVE:  # the expectations above must not silently outlive a panel
        assert any(t == title and fragment in e for t, e in expressions), f"ACTIVE names no dashboard query: {title}"
    t_start = time.time()

    settings, worker = worker_factory()
    assert wait_for_query(prometheus, f'up{{job="{JOB}"}} == 1', 90), \
        f"Prometheus never scraped the worker on 127.0.0.1:{metrics_port} (did RIPPLE_METRICS_PORT reach it?)"
    # The worker counts the rebalance in which it joined its group.  (Whether the "rebalances (15m)"
    # panel shows it depends on a race: increase() sees it only if Prometheus stored a sample from
    # before the join, so that panel is only required to return a finite series.)
    assert wait_for_query(prometheus, f'ripple_rebalances_total{{job="{JOB}"}} >= 1', 60), \
        "the worker never counted the rebalance in which it joined its consumer group"

    # Wave 1 creates every labelled series (posts, engagements, comments, one malformed message) ...
    stream = generate_stream(n_users=6, engagements_per_user=5)
    posts = [e for e in stream.events if e["topic"] == "posts"]
    engagements = [e for e in stream.events if e["topic"] != "posts"]
    bad_json = {"topic": "likes", "key": "user0", "value": b'{"schema_version": 1, "user_id": "user0"'}
    asyncio.run(produce(bootstrap, [*posts, *engagements, bad_json], settings.topic_prefix))
    expected = _engagements(engagements)
    wait_until_reflected(bootstrap, settings.topic("recommendations"), expected, timeout_s=120)
    # ... and Prometheus stores them: a labelled histogram series first appears with its first
    # observation(s), and rate() only sees increases after the first stored sample, so a burst that
    # falls entirely before that sample is invisible (the worker may process all of wave 1 within one
    # scrape interval when it joins its group after the messages arrived).
    wave1_done = time.time()
    assert wait_for_query(prometheus, f'timestamp(up{{job="{JOB}"}} == 1) > {wave1_done + 0.05:.3f}', 20), \
        "Prometheus stopped scraping the worker"

    # Wave 2 then makes every one of them grow again while Prometheus watches.
    wave2 = [
        {"topic": "posts", "key": "w2-run", "value": {"schema_version": 1, "post_id": "w2-run", "author_id": "author1",
                                                      "text": "Finished my first ultra marathon in the mountains today"}},
        {"topic": "posts", "key": "w2-cook", "value": {"schema_version": 1, "post_id": "w2-cook", "author_id": "author2",
                                                       "text": "Roasted vegetables with garlic and rosemary for dinner"}},
    ]
    for i, user in enumerate(sorted(expected)):
        wave2.append({"topic": "likes", "key": user, "value": {"schema_version": 1, "user_id": user,
                                                               "post_id": "w2-cook" if i % 2 else "w2-run"}})
    wave2 += [
        {"topic": "comments", "key": "user1", "value": {"schema_version": 1, "user_id": "user1", "post_id": "running-0",
                                                        "comment_id": "w2-k1", "text": "Congratulations on the new personal best, what an amazing achievement!"}},
        {"topic": "comments", "key": "user2", "value": {"schema_version": 1, "user_id": "user2", "post_id": "w2-run",
                                                        "comment_id": "w2-k2", "text": "Congratulations, that is a huge achievement!"}},
        {"topic": "shares", "key": "user3", "value": {"schema_version": 1, "user_id": "user3", "post_id": "cooking-1"}},
        bad_json,
        {"topic": "likes", "key": "user4", "value": {"schema_version": 1, "user_id": "user4"}},  # schema: no post_id
    ]
    asyncio.run(produce(bootstrap, wave2, settings.topic_prefix))
    expected += _engagements([e for e in wave2 if isinstance(e["value"], dict) and "post_id" in e["value"]])
    wait_until_reflected(bootstrap, settings.topic("recommendations"), expected, timeout_s=90)
    replies = asyncio.run(consume(bootstrap, settings.topic("suggested-replies"), until=lambda m: len(m) >= 1, timeout_s=30))
    assert replies, "no suggested replies were published"
    dead = asyncio.run(consume(bootstrap, settings.topic("dead-letter"), until=lambda m: len(m) >= 3, timeout_s=30))
    assert len(dead) == 3, dead

    # Every dashboard query: poll (1 s scrapes) until each has shown its data once, within 60 s.
    pending = dict(enumerate(expressions))
    why: dict[int, str] = {}
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for i, (title, expr) in list(pending.items()):
            answer = query(prometheus, expr)
            problem = check(title, expr, answer)
            if problem is None:
                print(f"[{title}] {expr}\n    {_brief(answer)}")
                del pending[i]
                why.pop(i, None)
            else:
                why[i] = problem
        if pending:
            time.sleep(1.0)
    assert not pending, "dashboard queries without data:\n" + "\n".join(
        f"  [{pending[i][0]}] {pending[i][1]}\n      -> {why[i]}" for i in pending)

    # Alert expressions evaluate on real data; the worker-health ones are quiet.
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    for rule in (r for g in rules["groups"] for r in g["rules"] if "alert" in r):
        answer = query(prometheus, rule["expr"])
        assert answer["status"] == "success", (rule["alert"], answer)
        if rule["alert"] in QUIET_ALERTS:
            assert answer["data"]["result"] == [], (rule["alert"], answer["data"]["result"])

    # Privacy: no series of the worker carries a user id, post id or message text.
    series = query(prometheus, f'{{job="{JOB}"}}')["data"]["result"]
    leaked = [s["metric"] for s in series
              if any(re.search(r"user\d|w2-|running-|cooking-|congrat", str(v), re.I) for v in s["metric"].values())]
    assert not leaked, leaked

    out = os.environ.get("RIPPLE_DASHBOARD_PNG")
    if out:  # picture mode: some steady traffic with one burst, so the panels show more than start-up
        asyncio.run(_traffic(bootstrap, settings.topic_prefix, stream, float(os.environ.get("RIPPLE_DASHBOARD_SECONDS", "90"))))
        spec = importlib.util.spec_from_file_location("render_panels", DASHBOARDS / "render_panels.py")
        render_panels = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(render_panels)
        render_panels.render(prometheus, ROOT / out, t_start, time.time(), step=1.0,
                             title="Ripple overview — rendered from the Prometheus of tests/integration/test_prometheus_pipeline.py")
