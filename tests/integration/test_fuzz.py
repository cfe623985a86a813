"""Hostile input on the real broker: a seeded batch of malformed, oversized, mistyped and
unicode-edge messages interleaved with valid traffic on every input topic.

The worker must stay up, dead-letter every hostile message exactly once (with a reason and its
source topic/partition/offset), and the valid users' recommendations must reflect exactly their
valid events: a producer retry (same ``event_id``) counts once; an engagement with a post id
nobody published is accepted and counted (posts may arrive late), it is never recommended.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest
from aiokafka import AIOKafkaProducer

from processors.events import Rejected, decode, validate
from streams.client import consume

pytestmark = pytest.mark.kafka

SEED = 20240601
N_HOSTILE = 300
MAX_TEXT = 5000  # the defaults the worker runs with
MAX_BYTES = 256 * 1024
TOPICS = ("posts", "likes", "comments", "shares", "follows")
REQUIRED = {
    "posts": {"post_id": "hp", "author_id": "ha", "text": "a hostile post"},
    "likes": {"user_id": "h", "post_id": "p0"},
    "shares": {"user_id": "h", "post_id": "p0"},
    "comments": {"comment_id": "hc", "user_id": "h", "post_id": "p0", "text": "hostile"},
    "follows": {"user_id": "h", "followee_id": "a0"},
}
POST_TEXTS = [
    "Morning run along the river, 10k in under fifty minutes", "Marathon training plan for the spring season",
    "Best trail running shoes for muddy hills", "Slow-cooked tomato sauce for a family lasagne",
    "Sourdough starter tips: feeding schedule and flour", "A quick Thai green curry with coconut milk",
    "Jazz piano voicings every beginner should learn", "Practising guitar scales for an hour every day",
    "Watercolour landscapes: painting skies and clouds", "Sketching portraits with charcoal and a kneaded eraser",
]


def _hostile(rng: random.Random, i: int) -> tuple[str, bytes | None]:
    """One message that the worker must reject (``user_id``s start with ``h``: never a real user)."""
    topic = rng.choice(TOPICS)
    doc = {"schema_version": 1, **REQUIRED[topic]}
    if "user_id" in doc:
        doc["user_id"] = f"h{i}"
    kind = rng.randrange(22)
    dumps = lambda d: json.dumps(d).encode()  # noqa: E731
    if kind == 0:
        return topic, rng.randbytes(rng.randrange(1, 200))
    if kind == 1:
        raw = dumps(doc)
        return topic, raw[: rng.randrange(1, len(raw) - 1)]  # truncated
    if kind == 2:
        return topic, dumps(rng.choice([[doc], "text", 42, None, True, [], {}]))  # not an object
    if kind == 3:
        field = rng.choice(sorted(REQUIRED[topic]))
        doc[field] = rng.choice([7, 3.5, True, None, [doc[field]], {"id": doc[field]}])  # wrong type, number as id
        return topic, dumps(doc)
    if kind == 4:
        del doc[rng.choice(sorted(REQUIRED[topic]) + ["schema_version"])]  # missing field
        return topic, dumps(doc)
    if kind == 5:
        doc["schema_version"] = rng.choice([2, "1", 0, 1.5, True])
        return topic, dumps(doc)
    if kind == 6:  # huge text (posts/comments), or text as an id
        if "text" in doc:
            doc["text"] = rng.choice(["😀", "ب", "a", "\u202e"]) * rng.randrange(MAX_TEXT + 1, 3 * MAX_TEXT)
        else:
            doc[rng.choice(sorted(REQUIRED[topic]))] = "x" * rng.randrange(129, 4000)
        return topic, dumps(doc)
    if kind == 7:
        doc[rng.choice(sorted(REQUIRED[topic]))] = "x" * rng.randrange(129, 1000)  # id too long
        return topic, dumps(doc)
    if kind == 8:  # lone surrogate (escaped: valid JSON, not encodable as UTF-8)
        field = rng.choice([f for f in REQUIRED[topic] if f != "text"] + (["text"] if "text" in doc else []))
        doc[field] = rng.choice(["\ud800", "ok\udfff", "\udbff\ud800"])
        return topic, dumps(doc)
    if kind == 9:  # control characters in an id
        field = rng.choice([f for f in REQUIRED[topic] if f != "text"])
        doc[field] = rng.choice(["a\x00b", "\x1b[31mred", "tab\tid", "nl\n", "\x85"])
        return topic, dumps(doc)
    if kind == 10:
        return topic, dumps(doc)[:-1] + rng.choice([b', "ts": NaN}', b', "ts": Infinity}', b', "ts": -Infinity}'])
    if kind == 11:
        return topic, dumps(doc)[:-1] + b', "ts": 1' + b"0" * rng.randrange(330, 1000) + b"}"  # > float max
    if kind == 12:
        doc["ts"] = time.time() + rng.uniform(3, 300) * 86_400  # days in the future
        return topic, dumps(doc)
    if kind == 13:
        doc["ts"] = rng.choice([-1, -1e9, "yesterday", True, [1], None])
        return topic, dumps(doc)
    if kind == 14:
        depth = rng.randrange(2000, 20_000)
        doc["extra"] = "@"
        return topic, dumps(doc).replace(b'"@"', b"[" * depth + b"]" * depth)  # nested too deeply to parse
    if kind == 15:
        return topic, b" " * (MAX_BYTES + rng.randrange(1, 50_000)) + dumps(doc)  # too large
    if kind == 16:
        return topic, None  # tombstone
    if kind == 17:
        return "follows", dumps({"schema_version": 1, "user_id": f"h{i}", "followee_id": f"h{i}"})  # self-follow
    if kind == 18:  # invalid UTF-8 inside a JSON string
        return topic, dumps(doc).replace(b'"h', b'"\xff\xfeh', 1) if b'"h' in dumps(doc) else b'{"\xc3\x28": 1}'
    if kind == 19:
        doc["text" if "text" in doc else "post_id" if "post_id" in doc else "followee_id"] = ""  # empty
        return topic, dumps(doc)
    if kind == 20:  # valid JSON, then garbage (or two objects)
        return topic, dumps(doc) + rng.choice([b"}", b" {}", b"\x00", b"garbage"])
    return topic, rng.choice([b"", b"null", b"{", b"\xef\xbb\xbf", b"{}" * 3, b"[1,2,3]"])


def hostile_messages(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    i = 0
    while len(out) < n:
        i += 1
        topic, raw = _hostile(rng, i)
        expected = decode(topic, raw, default_ts=time.time(), max_text_chars=MAX_TEXT, max_bytes=MAX_BYTES,
                          max_future_s=86_400.0)
        if not isinstance(expected, Rejected):  # a mutation that happened to stay valid: not hostile
            continue
        key = rng.choice([f"h{i}".encode(), None, rng.randbytes(8), "😀\u202e".encode()])
        if raw is None:
            key = key or b"tombstone"  # Kafka needs a key or a value
        out.append({"topic": topic, "key": key, "value": raw, "reason": expected.reason, "hostile": True})
    return out


def valid_traffic(seed: int) -> tuple[list[dict], dict[str, int], list[dict]]:
    """Posts and engagements of well-behaved users, with retries, out-of-order times and ghost posts."""
    rng = random.Random(seed)
    now = time.time()
    msgs = [{"topic": "posts", "key": f"p{i}".encode(), "value": {
        "schema_version": 1, "post_id": f"p{i}", "author_id": f"a{i % 4}", "text": text,
        "ts": now - rng.uniform(0, 3600)}} for i, text in enumerate(POST_TEXTS)]
    users = [f"v{i}" for i in range(8)] + ["ü😀\u202eרות", "x" * 128]  # unicode and longest-allowed ids too
    expected: dict[str, int] = {}
    engagements, retries = [], []
    for u in users:
        n = rng.randrange(3, 8)
        expected[u] = n
        for j in range(n):
            topic = rng.choice(["likes", "likes", "comments", "shares", "follows"])
            post = rng.choice([f"p{rng.randrange(len(POST_TEXTS))}"] * 4 + [f"ghost-{users.index(u)}-{j}"])  # unknown post id
            value = {"schema_version": 1, "user_id": u, "ts": now - rng.uniform(0, 86_400)}  # out-of-order times
            if topic == "follows":
                value["followee_id"] = f"a{rng.randrange(4)}"
            else:
                value["post_id"] = post
            if topic == "comments":
                value.update(comment_id=f"c-{users.index(u)}-{j}", text=rng.choice(["Love this!", "So useful 👍", "שלום, thanks",
                                                                         "Great tips\u200d", "I tried it \u202eyesterday"]))
            if rng.random() < 0.7:
                value["event_id"] = f"e-{users.index(u)}-{j}"
                if rng.random() < 0.4:
                    retries.append({"topic": topic, "key": u.encode(), "value": value})  # a producer retry
            if rng.random() < 0.3:
                value["unknown_extra"] = {"nested": [1, None, "x" * 50]}
            engagements.append({"topic": topic, "key": u.encode(), "value": value})
    return msgs + engagements, expected, retries


async def _produce(bootstrap: str, prefix: str, messages: list[dict]) -> list:
    """Send in order; the (partition, offset) of each message."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=2 * MAX_BYTES)
    await producer.start()
    try:
        futures = []
        for m in messages:
            value = m["value"] if m["value"] is None or isinstance(m["value"], bytes) else json.dumps(m["value"]).encode()
            futures.append(await producer.send(prefix + m["topic"], value=value, key=m["key"]))
        return [await f for f in futures]
    finally:
        await producer.stop()


def test_hostile_messages_are_dead_lettered_and_valid_users_are_unaffected(bootstrap, worker_factory):
    settings, worker = worker_factory()
    t = settings.topic
    valid, expected, retries = valid_traffic(SEED)
    hostile = hostile_messages(N_HOSTILE, SEED)
    rng = random.Random(SEED + 1)
    stream = valid[: len(POST_TEXTS)] + hostile[:20]  # posts first, then everything interleaved
    rest = valid[len(POST_TEXTS):] + hostile[20:]
    rng.shuffle(rest)
    # each user's events keep their order (a retry after its original); hostile ones go anywhere
    by_user = {}
    for m in rest:
        if not m.get("hostile"):
            by_user.setdefault(m["key"], []).append(m)
    ordered = {k: iter(v) for k, v in by_user.items()}
    stream += [m if m.get("hostile") else next(ordered[m["key"]]) for m in rest]
    stream += retries
    started = time.monotonic()
    meta = asyncio.run(_produce(bootstrap, settings.topic_prefix, stream))
    want = {(t(m["topic"]), md.partition, md.offset): m for m, md in zip(stream, meta) if m.get("hostile")}
    assert len(want) == N_HOSTILE

    dead = asyncio.run(consume(bootstrap, t("dead-letter"), until=lambda msgs: len(msgs) >= N_HOSTILE, timeout_s=90,
                               settle_s=3.0))
    got = {(d["topic"], d["partition"], d["offset"]): d for d in dead}
    assert len(got) == len(dead), "a message was dead-lettered twice"
    assert got.keys() == want.keys(), (f"missing {len(want.keys() - got.keys())}: {sorted(want.keys() - got.keys())[:5]}; "
                                       f"unexpected: {[got[k]['reason'] for k in sorted(got.keys() - want.keys())][:5]}")
    for pos, d in got.items():
        assert validate("dead_letter", {k: v for k, v in d.items() if k != "_meta"}) is None
        sent = want[pos]
        if sent["reason"].startswith("ts: ") and " s after " in sent["reason"]:
            assert d["reason"].startswith("ts: ") and " s after " in d["reason"]  # relative to the Kafka timestamp
        else:
            assert d["reason"] == sent["reason"], (pos, sent["value"][:80] if sent["value"] else None)
        raw = sent["value"] or b""
        assert d["raw_truncated"] == (len(raw) > settings.dead_letter_raw_bytes)
        assert d["raw"] == raw[: settings.dead_letter_raw_bytes].decode("utf-8", errors="replace")

    def caught_up(msgs):
        latest = {m["user_id"]: m for m in msgs}
        return all(latest.get(u, {}).get("based_on_events") == n for u, n in expected.items())

    recs = asyncio.run(consume(bootstrap, t("recommendations"), until=caught_up, timeout_s=60, settle_s=2.0))
    latest = {m["user_id"]: m for m in recs}
    assert {u: latest.get(u, {}).get("based_on_events") for u in expected} == expected  # retries counted once
    assert not [m["user_id"] for m in recs if m["user_id"] not in expected], "a rejected message reached a profile"
    for m in recs:
        assert validate("recommendation", {k: v for k, v in m.items() if k != "_meta"}) is None
        assert m["_meta"]["key"] == m["user_id"]
        assert all(not i["post_id"].startswith(("ghost-", "hp")) for i in m["items"])  # unknown posts never recommended
    assert worker.poll() is None, "the worker died"
    print(f"\n[fuzz] {N_HOSTILE} hostile + {len(stream) - N_HOSTILE} valid messages; "
          f"{len(dead)} dead letters, {len(expected)} users exact ({len(retries)} producer retries applied once); "
          f"{time.monotonic() - started:.1f} s")
