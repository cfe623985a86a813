"""Security and privacy on a real broker: SASL_PLAINTEXT with SCRAM-SHA-512, pseudonymised user ids.

One Apache Kafka 4.x broker per module whose client listener only accepts SCRAM-authenticated
clients (``LocalKafka(sasl_users=...)``).  A Ripple worker subprocess is configured through
``RIPPLE_*`` environment variables alone (``settings_env``), with SASL credentials and a
pseudonymisation key; a test client authenticates with the same credentials.  The tests assert:

* an authenticated worker turns events into recommendations and suggested replies;
* a client, and a worker, with a wrong password are refused (and the worker's log does not
  contain the password);
* with pseudonymisation on, no raw user id appears in any output topic, key or value, nor in the
  worker's tables' changelogs; the ids there are the keyed hashes (joins intact: the reply goes
  to the post author's pseudonym, the follow to the author's);
* the worker's log holds no comment text and no raw user id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from test_faults import Worker, base_settings, produce_now, read_topic, wait_recommendations, workers  # noqa: F401

from devtools.local_kafka import LocalKafka
from processors.events import validate
from processors.privacy import pseudonym
from streams.security import kafka_client_kwargs
from streams.topics import ensure_topics

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

USER, PASSWORD = "ripple", "scram-pw-7f3e1a"
KEY = "pseudonym-key-for-tests-only"
OUTPUTS = ("recommendations", "suggested-replies", "dead-letter")
COMMENT = "Congratulations on finishing the marathon, what an amazing achievement!"
REPLY = "Thank you so much for the kind words!"


@pytest.fixture(scope="module")
def sasl_kafka(ripple_home, tmp_path_factory):
    """A broker whose client listener is SASL_PLAINTEXT, SCRAM-SHA-256/512, user ``ripple``.

    A broker that cannot start raises ``BrokerError``: the tests ERROR, they never skip.
    """
    kafka = LocalKafka(ripple_home, workdir=tmp_path_factory.mktemp("kafka-sasl"), partitions=2,
                       sasl_users={USER: PASSWORD})
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.close()


def secure_settings(kafka: LocalKafka, ripple_home, **overrides):
    values = dict(security_protocol=kafka.security_protocol, sasl_mechanism="SCRAM-SHA-512", sasl_username=USER,
                  sasl_password=PASSWORD)
    values.update(overrides)
    return base_settings(kafka.bootstrap, ripple_home, **values)


async def _start_producer(bootstrap: str, **auth) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **auth)
    try:
        await asyncio.wait_for(producer.start(), 30)
    finally:
        await producer.stop()


def test_only_authenticated_clients_are_served(sasl_kafka, ripple_home, tmp_path, caplog):
    good = kafka_client_kwargs(secure_settings(sasl_kafka, ripple_home))
    assert good["security_protocol"] == "SASL_PLAINTEXT" and good["sasl_mechanism"] == "SCRAM-SHA-512"
    asyncio.run(_start_producer(sasl_kafka.bootstrap, **good))  # the right password: accepted

    caplog.set_level(logging.ERROR, logger="aiokafka")
    with pytest.raises(KafkaConnectionError):
        asyncio.run(_start_producer(sasl_kafka.bootstrap, **dict(good, sasl_plain_password="not-the-password")))
    assert "SaslAuthenticationFailed" in caplog.text and "invalid credentials" in caplog.text
    with pytest.raises(KafkaConnectionError):  # no SASL at all on the SASL listener
        asyncio.run(_start_producer(sasl_kafka.bootstrap))


def test_worker_with_a_wrong_password_fails_without_logging_it(sasl_kafka, ripple_home, onnx_model, workers):  # noqa: F811
    wrong = "wrong-pw-" + uuid.uuid4().hex[:8]
    worker = workers(secure_settings(sasl_kafka, ripple_home, sasl_password=wrong))
    deadline = time.monotonic() + 120
    while worker.alive and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not worker.alive, "a worker with a wrong SASL password kept running"
    assert worker.proc.returncode != 0
    text = worker.log_text()
    assert "cannot connect to Kafka" in text and "SASL_PLAINTEXT (SCRAM-SHA-512 as ripple)" in text, text[-2000:]
    assert "SaslAuthenticationFailed" in text  # aiokafka's log of the broker's answer
    assert wrong not in text and PASSWORD not in text


def _posts(tag: str) -> list[dict]:
    texts = ["Just ran my fastest 5k ever at the park this morning",
             "Marathon training: long run of 32 kilometres done today",
             "Trail running in the hills, my calves are burning",
             "Baked a loaf of sourdough bread with a crunchy crust"]
    return [{"topic": "posts", "key": f"p{i}", "value": {"schema_version": 1, "post_id": f"p{i}",
                                                        "author_id": f"author-{tag}-{i % 2}", "text": text}}
            for i, text in enumerate(texts)]


def _event(topic: str, user: str, **fields) -> dict:
    return {"topic": topic, "key": user, "value": {"schema_version": 1, "user_id": user, **fields}}


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_sasl_worker_publishes_pseudonymised_outputs_and_logs_no_private_data(
        sasl_kafka, ripple_home, onnx_model, workers, guarantee):  # noqa: F811
    """``exactly_once``: Faust's transactional producers authenticate over SASL too (outputs read committed)."""
    tag = uuid.uuid4().hex[:6]
    settings = secure_settings(sasl_kafka, ripple_home, pseudonymize_key=KEY, processing_guarantee=guarantee)
    auth = kafka_client_kwargs(settings)
    read = dict(auth, isolation_level="read_committed" if guarantee == "exactly_once" else "read_uncommitted")
    asyncio.run(ensure_topics(settings))  # over SASL, as the worker does
    worker = workers(settings)

    fan, friend, runner = f"fan-{tag}", f"friend-{tag}", f"runner-{tag}"
    authors = [f"author-{tag}-0", f"author-{tag}-1"]
    raw_ids = [fan, friend, runner, *authors]
    events = [
        _event("likes", runner, post_id="p0"), _event("likes", runner, post_id="p1"),
        _event("follows", runner, followee_id=authors[1]),
        _event("comments", fan, post_id="p0", comment_id=f"k1-{tag}", text=COMMENT),
        _event("shares", friend, post_id="p2"),
    ]
    produce_now(sasl_kafka.bootstrap, settings.topic_prefix, _posts(tag), **auth)
    produce_now(sasl_kafka.bootstrap, settings.topic_prefix, events, **auth)
    # a reply once its parent comment was handled (they are on different partitions); a malformed
    # like whose payload names a user
    first = _wait_json(sasl_kafka.bootstrap, settings.topic("suggested-replies"), lambda m: len(m) >= 1, 90, **read)
    assert first, f"no suggested reply for the post author:\n{worker.log_text()[-3000:]}"
    produce_now(sasl_kafka.bootstrap, settings.topic_prefix, [
        _event("comments", friend, post_id="p0", comment_id=f"k2-{tag}", reply_to=f"k1-{tag}", text=REPLY),
        {"topic": "likes", "key": fan, "value": json.dumps({"schema_version": 1, "user_id": fan}).encode()},
    ], **auth)

    key = KEY.encode()
    expected = {pseudonym(key, runner): 3, pseudonym(key, fan): 1, pseudonym(key, friend): 2}
    msgs, _ = wait_recommendations(sasl_kafka.bootstrap, settings, expected, timeout_s=120, **read)
    assert worker.alive, worker.log_text()[-3000:]
    latest = {m["user_id"]: m for m in sorted(msgs, key=lambda m: (m["_meta"]["partition"], m["_meta"]["offset"]))}
    assert {u: latest.get(u, {}).get("based_on_events") for u in expected} == expected, worker.log_text()[-3000:]
    for m in msgs:
        assert m["_meta"]["key"] == m["user_id"]
        assert validate("recommendation", {k: v for k, v in m.items() if k != "_meta"}) is None
    runner_items = latest[pseudonym(key, runner)]["items"]
    assert runner_items and {i["author_id"] for i in runner_items} <= {pseudonym(key, a) for a in authors}

    replies = _wait_json(sasl_kafka.bootstrap, settings.topic("suggested-replies"), lambda m: len(m) >= 2, 60, **read)
    by_comment = {m["comment_id"]: m for m in replies}
    assert by_comment[f"k1-{tag}"]["recipient_id"] == pseudonym(key, authors[0])  # the post author
    assert by_comment[f"k2-{tag}"]["recipient_id"] == pseudonym(key, fan)  # the parent comment's author
    dead = _wait_json(sasl_kafka.bootstrap, settings.topic("dead-letter"), lambda m: len(m) >= 1, 30, **read)
    assert [(d["topic"], d["raw"], d["raw_truncated"]) for d in dead] == [(settings.topic("likes"), "", True)]

    # no raw user id anywhere the worker writes: output topics and its tables' changelogs
    written = [*(settings.topic(t) for t in OUTPUTS), f"{settings.app_id}-profiles-changelog",
               f"{settings.app_id}-posts-changelog"]
    for topic in written:
        records = asyncio.run(read_topic(sasl_kafka.bootstrap, topic, **auth))
        assert records, f"nothing written to {topic}"
        blob = b"\n".join((r.key or b"") + b"\t" + (r.value or b"") for r in records)
        leaked = [u for u in raw_ids if u.encode() in blob]
        assert not leaked, f"raw user ids {leaked} in {topic}"
    inputs = asyncio.run(read_topic(sasl_kafka.bootstrap, settings.topic("likes"), **auth))
    assert any(runner.encode() in r.value for r in inputs)  # the check above would have seen them

    log = worker.log_text()
    assert f"SASL_PLAINTEXT (SCRAM-SHA-512 as {USER})" in log and "pseudonymised" in log, log[-3000:]
    assert f"processing guarantee {guarantee}" in log
    for private in (COMMENT, REPLY, "amazing achievement", "kind words", *raw_ids, PASSWORD, KEY):
        assert private not in log, f"{private!r} in the worker log"


def _wait_json(bootstrap: str, topic: str, until, timeout_s: float, **auth) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        docs = [json.loads(r.value) for r in asyncio.run(read_topic(bootstrap, topic, **auth))]
        if until(docs) or time.monotonic() > deadline:
            return docs
        time.sleep(1.0)
