"""The edges users touch, on the real broker: a Flask back-end sending through the producer
client, a worker, ``ripple serve`` answering on demand, the trending topic, ``ripple produce``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from conftest import free_port, wait_for
from ripple.demo import stop_worker
from ripple.settings import Settings
from ripple_client import InvalidEvent, RecommendationsClient, RippleProducer
from streams.client import consume
from streams.topics import ensure_topics

pytestmark = pytest.mark.kafka

POSTS = [
    ("r1", "runner", "Marathon training: long run of 32 kilometres done today"),
    ("r2", "runner", "Trail running in the hills, my calves are burning"),
    ("r3", "sprinter", "Interval sprints on the athletics track tonight"),
    ("c1", "chef", "Baked a loaf of sourdough bread with a crunchy crust"),
    ("c2", "chef", "Homemade lasagne with slow-cooked tomato sauce"),
]


def flask_backend(producer: RippleProducer):
    """What a platform's back-end does: its own routes, events sent through the client."""
    from flask import Flask, jsonify, request

    app = Flask("backend")

    @app.post("/posts")
    def new_post():
        body = request.get_json()
        try:
            delivery = producer.post(body["post_id"], body["author_id"], body["text"])
        except InvalidEvent as exc:
            return jsonify(error=str(exc), field=exc.field), 400
        return jsonify(offset=delivery.offset, event_id=delivery.event_id), 201

    @app.post("/users/<user_id>/likes/<post_id>")
    def like(user_id, post_id):
        try:
            delivery = producer.like(user_id, post_id)
        except InvalidEvent as exc:
            return jsonify(error=str(exc), field=exc.field), 400
        return jsonify(offset=delivery.offset), 201

    return app


def start_serve(settings, port: int, log_path) -> subprocess.Popen:
    env = dict(os.environ, RIPPLE_BROKER=settings.broker, RIPPLE_TOPIC_PREFIX=settings.topic_prefix)
    return subprocess.Popen([sys.executable, "-m", "ripple", "serve", "--port", str(port)], env=env,
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)
    except OSError:
        return 0, {}


def test_a_flask_backend_feeds_the_worker_and_serve_answers_on_demand(bootstrap, worker_factory, monkeypatch,
                                                                     tmp_path):
    monkeypatch.setenv("RIPPLE_TRENDING_INTERVAL_S", "1")
    settings, worker = worker_factory()
    producer = RippleProducer(bootstrap, topic_prefix=settings.topic_prefix)
    backend = flask_backend(producer).test_client()
    port = free_port()
    serve = start_serve(settings, port, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        for post_id, author, text in POSTS:
            assert backend.post("/posts", json={"post_id": post_id, "author_id": author, "text": text}).status_code == 201
        # a bad event raises in the client: the back-end answers 400 naming the field, nothing reaches Kafka
        bad = backend.post("/posts", json={"post_id": "x1", "author_id": "chef", "text": ""})
        assert bad.status_code == 400 and bad.get_json()["field"] == "text", bad.get_json()
        assert backend.post("/users/u1/likes/r1").status_code == 201
        assert backend.post("/users/u1/likes/r2").status_code == 201
        assert backend.post("/users/u2/likes/r1").status_code == 201

        client = RecommendationsClient(base)
        assert wait_for(lambda: get(f"{base}/readyz")[0] == 200, 60)
        assert wait_for(lambda: get(f"{base}/v1/users/u1/recommendations")[1].get("based_on_events") == 2, 90), \
            get(f"{base}/v1/users/u1/recommendations")
        mine = client.recommendations("u1")
        assert mine["source"] == "personal" and mine["age_s"] >= 0
        recommended = [i["post_id"] for i in mine["items"]]
        assert recommended and not {"r1", "r2"} & set(recommended), recommended  # liked posts are not repeated
        assert recommended[0] == "r3", recommended  # the other running post first

        # trends from the trending topic: r1 (two likes) leads; a user never seen gets that list
        assert wait_for(lambda: (get(f"{base}/v1/trending")[1].get("posts") or [{}])[0].get("post_id") == "r1", 60)
        trends = client.trending("24h")
        assert trends["posts"][0] == {"post_id": "r1", "author_id": "runner", "score": pytest.approx(2.0, rel=0.01)}
        assert trends["authors"][0]["author_id"] == "runner"
        stranger = client.recommendations("someone-new")
        assert stranger["source"] == "trending" and stranger["items"][0]["post_id"] == "r1"
        assert get(f"{base}/v1/trending?window=1y")[0] == 404

        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=2).read().decode()
        assert 'ripple_serve_requests_total{code="200",route="recommendations"}' in metrics
        assert "u1" not in metrics and "someone-new" not in metrics  # no user ids in labels
    finally:
        producer.close()
        stop_worker(serve)
    # nothing of the refused post reached Kafka: no dead letter for it either
    letters = asyncio.run(consume(bootstrap, settings.topic("dead-letter"), until=lambda m: False, timeout_s=2))
    posts = asyncio.run(consume(bootstrap, settings.topic("posts"), until=lambda m: len(m) >= len(POSTS), timeout_s=10,
                                settle_s=1))
    assert not letters and sorted(p["post_id"] for p in posts) == sorted(p for p, _, _ in POSTS)
    stop_worker(worker)


def test_ripple_produce_sends_valid_lines_and_reports_invalid_ones(bootstrap, topic_prefix):
    asyncio.run(ensure_topics(Settings(broker=bootstrap, topic_prefix=topic_prefix, partitions=2)))
    lines = "\n".join([
        json.dumps({"user_id": "u1", "post_id": "p1"}),
        json.dumps({"user_id": "u1"}),
        "not json",
        json.dumps({"user_id": "u2", "post_id": "p1", "ts": 5.0}),
    ])
    env = dict(os.environ, RIPPLE_BROKER=bootstrap, RIPPLE_TOPIC_PREFIX=topic_prefix)
    done = subprocess.run([sys.executable, "-m", "ripple", "produce", "--topic", "likes"], input=lines, text=True,
                          capture_output=True, env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "line 2: likes: 'post_id' is a required property" in done.stderr and "line 3: not JSON" in done.stderr
    assert "sent 2 events" in done.stdout
    likes = asyncio.run(consume(bootstrap, f"{topic_prefix}likes", until=lambda m: len(m) >= 2, timeout_s=20))
    assert sorted(m["user_id"] for m in likes) == ["u1", "u2"] and all(m["schema_version"] == 1 and m["event_id"]
                                                                      for m in likes)
