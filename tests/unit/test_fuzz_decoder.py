"""Hostile input, property-tested: the decoder never raises, rejects with a reason, and what it
accepts is safe to fold; dead letters always match their schema; profile folding ignores the
order of timestamps and applies a producer retry (same ``event_id``) once; state stays bounded.
"""

from __future__ import annotations

import json
import math
import random
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from processors.catalog import PostCatalog
from processors.events import ID_FIELDS, INPUT_TOPICS, Engagement, Follow, Post, Rejected, dead_letter, decode, validate
from processors.eviction import RecencyIndex
from processors.profiles import UserProfile

TOPICS = sorted(INPUT_TOPICS)
MAX_TEXT = 200
MAX_BYTES = 4096
MAX_FUTURE = 3600.0
NOW = 1_700_000_000.0
LIMITS = {"max_text_chars": MAX_TEXT, "max_bytes": MAX_BYTES, "max_future_s": MAX_FUTURE}
FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ---------------------------------------------------------------------------
#: unicode edge cases: NUL and C0/C1 controls, lone surrogates, RTL/bidi overrides, zero-width
#: joiners, combining marks, emoji (astral plane), BOM, non-characters
EDGE_CHARS = ["\x00", "\x1f", "\x7f", "\x85", "\ud800", "\udfff", "\u202e", "\u200f", "\u200d", "\u0301", "\ufeff",
              "\uffff", "😀", "👩‍👩‍👧", "🇫🇷", "𝔘", "ß", "İ", "\n", "\t", "\"", "\\", "'", "{", "\u2028"]
edge_text = st.lists(st.one_of(st.sampled_from(EDGE_CHARS), st.characters()), max_size=20).map("".join)
any_text = st.one_of(st.text(max_size=30), edge_text)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**320),
                        st.floats(allow_nan=False, allow_infinity=False), any_text)
json_value = st.recursive(json_scalar, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                                st.dictionaries(any_text, kids, max_size=4)), max_leaves=12)
good_id = st.text(alphabet=string.ascii_letters + string.digits + "-_.:é漢😀", min_size=1, max_size=128)
good_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=MAX_TEXT)
good_ts = st.floats(min_value=0, max_value=NOW + MAX_FUTURE, allow_nan=False)

FIELDS = {  # topic → (required fields, optional fields)
    "posts": (("post_id", "author_id", "text"), ()),
    "likes": (("user_id", "post_id"), ()),
    "shares": (("user_id", "post_id"), ()),
    "comments": (("comment_id", "user_id", "post_id", "text"), ("reply_to",)),
    "follows": (("user_id", "followee_id"), ()),
}


@st.composite
def valid_doc(draw, topic: str | None = None) -> tuple[str, dict]:
    topic = topic or draw(st.sampled_from(TOPICS))
    required, optional = FIELDS[topic]
    doc: dict = {"schema_version": 1}
    for name in required + tuple(o for o in optional if draw(st.booleans())):
        doc[name] = draw(good_text if name == "text" else good_id)
    if topic == "follows":
        assume(doc["user_id"] != doc["followee_id"])
    if draw(st.booleans()):
        doc["ts"] = draw(good_ts)
    if draw(st.booleans()):
        doc["event_id"] = draw(good_id)
    return topic, doc


@st.composite
def hostile_doc(draw) -> tuple[str, bytes]:
    """A valid document with one to three mutations, serialised (possibly with raw JSON tricks)."""
    topic, doc = draw(valid_doc())
    fields = sorted(doc) + ["ts", "text", "event_id", "extra"]
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(fields))
        how = draw(st.sampled_from(["drop", "wrong_type", "unicode", "huge_text", "long_id", "number_id", "nested",
                                    "ts_edge"]))
        if how == "drop":
            doc.pop(name, None)
        elif how == "wrong_type":
            doc[name] = draw(json_value)
        elif how == "unicode":
            doc[name] = draw(edge_text)
        elif how == "huge_text":
            doc["text"] = draw(st.sampled_from(["a", "😀", "\u202e", " "])) * draw(st.integers(MAX_TEXT - 2, 40_000))
        elif how == "long_id":
            doc[name] = "x" * draw(st.integers(120, 5000))
        elif how == "number_id":
            doc[name] = draw(st.one_of(st.integers(), st.floats(allow_nan=False)))
        elif how == "nested":
            doc[name] = json.loads("[" * 50 + "]" * 50)
        else:
            doc["ts"] = draw(st.one_of(st.floats(max_value=-1e-9), st.integers(10**20, 10**400), st.just(NOW + 2 * MAX_FUTURE),
                                       st.just(-0.0), st.just(1e308)))
    raw = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", errors="surrogatepass")
    trick = draw(st.sampled_from(["none", "nan", "inf", "truncate", "bom", "deep"]))
    if trick == "nan":
        raw = raw.replace(b'"schema_version": 1', b'"schema_version": 1, "ts": NaN')
    elif trick == "inf":
        raw = raw.replace(b'"schema_version": 1', b'"schema_version": 1, "ts": -Infinity')
    elif trick == "truncate":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    elif trick == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif trick == "deep":
        raw = b"[" * 3000 + b"]" * 3000
    return topic, raw


# -- helpers ------------------------------------------------------------------------------
def check_outcome(result, topic: str) -> None:
    """The contract of :func:`decode`: a safe domain event, or a rejection with a reason."""
    if isinstance(result, Rejected):
        assert isinstance(result.reason, str) and result.reason.strip()
        assert len(result.reason) <= 500
        return
    assert isinstance(result, {"posts": Post, "follows": Follow}.get(topic, Engagement))
    for name in ID_FIELDS:
        value = getattr(result, name, None)
        if value is not None:
            assert isinstance(value, str) and 1 <= len(value) <= 128
            value.encode("utf-8")  # no lone surrogates: ids become Kafka keys
            assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)
    text = getattr(result, "text", None)
    if text is not None:
        assert 1 <= len(text) <= MAX_TEXT
        text.encode("utf-8")
    assert math.isfinite(result.ts) and 0 <= result.ts <= NOW + MAX_FUTURE


# -- the decoder --------------------------------------------------------------------------
@FUZZ
@given(st.sampled_from(TOPICS + ["unknown", ""]), st.binary(max_size=300))
def test_random_bytes_never_raise(topic, raw):
    result = decode(topic, raw, default_ts=NOW, **LIMITS)
    check_outcome(result, topic) if topic in INPUT_TOPICS else None
    if topic not in INPUT_TOPICS:
        assert isinstance(result, Rejected)


@FUZZ
@given(st.sampled_from(TOPICS), json_value)
def test_random_json_of_any_shape_never_raises(topic, value):
    raw = json.dumps(value).encode()
    check_outcome(decode(topic, raw, default_ts=NOW, **LIMITS), topic)


@FUZZ
@given(hostile_doc())
def test_mutated_documents_are_decoded_or_rejected_with_a_reason(case):
    topic, raw = case
    first = decode(topic, raw, default_ts=NOW, **LIMITS)
    check_outcome(first, topic)
    assert decode(topic, raw, default_ts=NOW, **LIMITS) == first  # deterministic


@FUZZ
@given(valid_doc(), st.booleans())
def test_valid_documents_are_always_accepted_as_sent(case, ascii_only):
    topic, doc = case
    raw = json.dumps(doc, ensure_ascii=ascii_only).encode()
    ev = decode(topic, raw, default_ts=NOW, **LIMITS)
    check_outcome(ev, topic)
    assert not isinstance(ev, Rejected), ev
    assert ev.ts == doc.get("ts", NOW) and ev.event_id == doc.get("event_id")
    for name in ("user_id", "post_id", "author_id", "followee_id", "text", "comment_id", "reply_to"):
        if name in doc:
            assert getattr(ev, name) == doc[name]


def test_specific_hostile_inputs_have_specific_reasons():
    like = {"schema_version": 1, "user_id": "u1", "post_id": "p1"}

    def reason(raw, topic="likes", **kw):
        result = decode(topic, raw, default_ts=NOW, **{**LIMITS, **kw})
        assert isinstance(result, Rejected), result
        return result.reason

    assert reason(b"[" * 100_000, max_bytes=None) == "invalid JSON: nested too deeply"
    assert reason(b"[" * 100_000) == f"message too large: 100000 > {MAX_BYTES} bytes"
    assert reason(json.dumps(like)[:-1].encode() + b', "ts": NaN}') == "invalid JSON: NaN is not a number"
    assert reason(json.dumps(like)[:-1].encode() + b', "ts": Infinity}') == "invalid JSON: Infinity is not a number"
    assert reason(json.dumps({**like, "ts": 10**400}).encode()) == "ts: out of range"
    assert reason(json.dumps({**like, "ts": NOW + 2 * MAX_FUTURE}).encode()).startswith("ts: 7200 s after")
    assert reason(json.dumps({**like, "user_id": "\ud800"}).encode()) == "user_id: control character or lone surrogate in an id"
    assert reason(json.dumps({**like, "post_id": "p\x00"}).encode()) == "post_id: control character or lone surrogate in an id"
    assert reason(json.dumps({**like, "user_id": 5}).encode()) == "schema: user_id: 5 is not of type 'string'"
    assert reason(json.dumps({**like, "user_id": "u" * 129}).encode()).startswith("schema: user_id: ")
    assert reason(b'{"schema_version": 1}' + b" " * MAX_BYTES) == f"message too large: {MAX_BYTES + 21} > {MAX_BYTES} bytes"
    post = {"schema_version": 1, "post_id": "p", "author_id": "a", "text": "x" * (MAX_TEXT + 1)}
    assert reason(json.dumps(post).encode(), "posts") == f"text too long: {MAX_TEXT + 1} > {MAX_TEXT} characters"
    assert reason(json.dumps({**post, "text": "ok \udc00"}).encode(), "posts") == "text: lone surrogate (not encodable as UTF-8)"
    # accepted: old and out-of-order timestamps, extra fields, RTL text, emoji ids, NUL inside texts
    ok = decode("posts", json.dumps({**post, "text": "\u202eevil\x00 😀", "ts": 0, "x": [1, {"y": None}]}).encode(),
                default_ts=NOW, **LIMITS)
    assert isinstance(ok, Post) and ok.ts == 0.0
    # limits are off unless given (the defaults of the function keep the old behaviour)
    assert isinstance(decode("likes", json.dumps({**like, "ts": NOW * 10}).encode(), default_ts=NOW), Engagement)


# -- dead letters -------------------------------------------------------------------------
@FUZZ
@given(st.text(min_size=1), st.sampled_from(TOPICS), st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1),
       st.one_of(st.none(), st.binary(max_size=600)), st.integers(0, 300), edge_text)
def test_dead_letters_always_match_their_schema(reason, topic, partition, offset, raw, max_raw, extra_reason):
    doc = dead_letter(reason + extra_reason, topic, partition, offset, raw, now=NOW, max_raw=max_raw)
    assert validate("dead_letter", doc) is None
    wire = json.dumps(doc, ensure_ascii=False).encode("utf-8")  # encodable: no lone surrogates survive
    back = json.loads(wire)
    assert back["reason"] == (reason + extra_reason).encode("utf-8", errors="replace").decode("utf-8")
    assert (back["topic"], back["partition"], back["offset"]) == (topic, partition, offset)
    data = raw or b""
    assert back["raw_truncated"] == (len(data) > max_raw)
    assert back["raw"] == data[:max_raw].decode("utf-8", errors="replace")


@FUZZ
@given(hostile_doc())
def test_every_rejection_makes_a_valid_dead_letter(case):
    topic, raw = case
    result = decode(topic, raw, default_ts=NOW, **LIMITS)
    if isinstance(result, Rejected):
        doc = dead_letter(result.reason, topic, 0, 7, raw, now=NOW, max_raw=2048)
        assert validate("dead_letter", doc) is None
        json.dumps(doc, ensure_ascii=False).encode("utf-8")


# -- profile folding: timestamps out of order, producer retries ---------------------------
POSTS = [f"p{i}" for i in range(8)]
AUTHORS = {p: f"a{i % 3}" for i, p in enumerate(POSTS)}
EMB = np.random.default_rng(0).normal(size=(len(POSTS), 8)).astype(np.float32)


def lookup(ids):
    rows = [POSTS.index(p) for p in ids]
    return np.ones(len(rows), dtype=bool), EMB[rows]


engagement = st.tuples(st.sampled_from(["like", "comment", "share"]), st.sampled_from(POSTS),
                       st.floats(min_value=0, max_value=1e6, allow_nan=False))


def fold(events, dedup_limit=100) -> UserProfile:
    """Fold ``(kind, post, ts, event_id, position)`` as the engagement engine does (admit, then apply)."""
    p = UserProfile("u")
    for kind, post, ts, event_id, position in events:
        if p.admit("likes:0", position, event_id, dedup_limit=dedup_limit) is None:
            p.apply_engagement(kind, post, AUTHORS[post], ts)
    return p


def same_fold(a: UserProfile, b: UserProfile) -> None:
    """Equal counts, seen set, newest time, author affinities and interest vector (floats: to rounding)."""
    assert (a.events, a.counts, sorted(a.seen), a.last_ts, sorted(a.history)) == (
        b.events, b.counts, sorted(b.seen), b.last_ts, sorted(b.history))
    assert a.authors.keys() == b.authors.keys()
    assert all(math.isclose(a.authors[k], b.authors[k], rel_tol=1e-9) for k in a.authors)
    (va, ma), (vb, mb) = a.interest(lookup, now=2e6), b.interest(lookup, now=2e6)
    assert ma == mb and (va is None) == (vb is None)
    if va is not None:
        np.testing.assert_allclose(va, vb, atol=1e-5)


@FUZZ
@given(st.lists(engagement, min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_folding_does_not_depend_on_the_order_of_timestamps(events, rnd):
    shuffled = list(events)
    rnd.shuffle(shuffled)
    a = fold([(k, p, t, None, i) for i, (k, p, t) in enumerate(events)])
    b = fold([(k, p, t, None, i) for i, (k, p, t) in enumerate(shuffled)])
    same_fold(a, b)


@FUZZ
@given(st.lists(engagement, min_size=1, max_size=30), st.lists(st.integers(0, 29), max_size=15), st.randoms(use_true_random=False))
def test_producer_retries_are_applied_once(events, retried, rnd):
    """Each retry repeats an earlier event's ``event_id`` (and content) at a later offset."""
    unique = [(k, p, t, f"e{i}") for i, (k, p, t) in enumerate(events)]
    stream = list(unique)
    for r in retried:
        if r < len(unique):
            at = rnd.randrange(stream.index(unique[r]) + 1, len(stream) + 1)  # after the original
            stream.insert(at, unique[r])
    with_retries = fold([(*ev, pos) for pos, ev in enumerate(stream)])
    without = fold([(*ev, pos) for pos, ev in enumerate(unique)])
    same_fold(with_retries, without)
    assert with_retries.event_ids == [f"likes/{e[3]}" for e in unique][-100:]  # ids are kept per topic


def test_dedup_window_is_bounded_and_replays_are_skipped():
    p = UserProfile("u")
    for i in range(250):
        assert p.admit("likes:0", i, f"e{i}", dedup_limit=50) is None
    assert len(p.event_ids) == 50 and p.event_ids[0] == "likes/e200"
    assert p.admit("likes:0", 250, "e249", dedup_limit=50) == "duplicate"
    assert p.admit("likes:0", 251, "e10", dedup_limit=50) is None  # forgotten: outside the window
    assert p.admit("likes:0", 100, "new", dedup_limit=50) == "replay"
    assert p.admit("likes:1", 0, None) is None and p.admit("likes:1", 1, None) is None  # no id: never a duplicate
    assert p.admit("shares:0", 0, "e249", dedup_limit=50) is None  # the same id on another topic: another event
    assert UserProfile.from_dict(json.loads(json.dumps(p.to_dict()))) == p


# -- bounded state ------------------------------------------------------------------------
@FUZZ
@given(st.integers(1, 6), st.floats(0, 50), st.lists(st.tuples(st.integers(0, 2), st.integers(0, 30), st.floats(0, 10)),
                                                       max_size=200))
def test_recency_index_is_bounded_per_partition_and_evicts_lru_or_idle(capacity, ttl, touches):
    idx = RecencyIndex(capacity, ttl)
    model: dict[int, dict[str, float]] = {}
    now = 0.0
    for part, key, dt in touches:
        now += dt
        k = f"u{key}"
        evicted = idx.touch(part, k, now)
        keys = model.setdefault(part, {})
        keys.pop(k, None)
        keys[k] = now
        assert k not in evicted and len(evicted) == len(set(evicted))
        for old in evicted:  # only keys of this partition: over capacity (oldest) or idle
            assert old in keys and old != k
            del keys[old]
        assert len(idx.keys(part)) <= capacity and idx.keys(part) == list(keys)
        if ttl > 0:
            assert all(now - t <= ttl for kk, t in keys.items() if kk != k)
    assert len(idx) == sum(len(v) for v in model.values())


def test_catalog_reports_evictions_and_stays_bounded():
    cat = PostCatalog(dim=2, capacity=5)
    evicted = [cat.add(f"p{i}", "a", float(i), np.ones(2, dtype=np.float32)) for i in range(12)]
    assert evicted == [None] * 5 + [f"p{i}" for i in range(7)]
    assert len(cat) == 5 and cat.add("p11", "a", 0.0, np.ones(2, dtype=np.float32)) is None  # replace: no eviction


def test_factor_model_state_is_bounded():
    from models.factors import ImplicitMF

    mf = ImplicitMF(n_factors=4, max_users=50, max_items=30)
    rng = random.Random(0)
    for i in range(2000):
        mf.learn(f"u{i}", f"p{rng.randrange(500)}", negatives=[f"p{rng.randrange(500)}" for _ in range(3)])
    assert mf.n_users == 50 and mf.n_items <= 30
    assert mf.scores("u1999", ["x"]).shape == (1,)


def test_new_limits_are_settings(monkeypatch):
    from ripple.settings import Settings

    for name, value in {"PROFILE_LIMIT": "7", "PROFILE_TTL_S": "60", "DEDUP_LIMIT": "3", "MAX_MESSAGE_BYTES": "999",
                        "MAX_FUTURE_S": "5", "FACTOR_USERS_LIMIT": "11"}.items():
        monkeypatch.setenv(f"RIPPLE_{name}", value)
    s = Settings()
    assert (s.profile_limit, s.profile_ttl_s, s.dedup_limit, s.max_message_bytes, s.max_future_s, s.factor_users_limit) == (
        7, 60.0, 3, 999, 5.0, 11)


@pytest.mark.parametrize("topic", TOPICS)
def test_decoder_is_fast_enough_on_hostile_input(topic):
    """Rejecting must stay cheap: a hostile flood costs no more than valid traffic."""
    import time

    raws = [b"[" * 100_000, b"x" * MAX_BYTES * 4, json.dumps({"schema_version": 1, "text": "a" * 100_000}).encode()]
    start = time.perf_counter()
    for _ in range(20):
        for raw in raws:
            assert isinstance(decode(topic, raw, default_ts=NOW, **LIMITS), Rejected)
    assert time.perf_counter() - start < 5.0
