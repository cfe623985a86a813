"""Pseudonymisation at the edge, redacted dead letters, and security settings (no broker)."""

import json

import numpy as np
import pytest
from pydantic import SecretStr, ValidationError

from processors.events import Engagement, Follow, Post, Rejected, decode, dead_letter, validate
from processors.privacy import Pseudonymizer, pseudonym, redact_dead_letter, redact_reason
from processors.profiles import UserProfile
from processors.recommender import Recommender, RecommenderConfig
from ripple.settings import Settings
from streams import security

KEY = b"test-key-0123456789"
RAW_IDS = ("alice", "bob", "carol")


def edge(topic: str, doc: dict, key: bytes = KEY):
    return Pseudonymizer(key)(decode(topic, json.dumps({"schema_version": 1, **doc}).encode(), default_ts=1.0))


# -- the keyed hash -----------------------------------------------------------------------
def test_pseudonym_is_deterministic_keyed_and_fixed_length_hex():
    p = pseudonym(KEY, "alice")
    assert p == pseudonym(KEY, "alice") and len(p) == 32 and int(p, 16) >= 0
    assert p != pseudonym(KEY, "alice ") and p != pseudonym(b"another-key-0123456", "alice")
    assert len({pseudonym(KEY, f"user{i}") for i in range(10_000)}) == 10_000
    assert "alice" not in p


def test_every_user_id_field_is_replaced_and_nothing_else():
    post = edge("posts", {"post_id": "p1", "author_id": "bob", "text": "alice wrote this", "event_id": "bob-1"})
    assert isinstance(post, Post)
    assert (post.post_id, post.author_id, post.text) == ("p1", pseudonym(KEY, "bob"), "alice wrote this")
    assert post.event_id == pseudonym(KEY, "bob-1")

    c = edge("comments", {"user_id": "alice", "post_id": "p1", "comment_id": "c1", "reply_to": "c0", "text": "Nice"})
    assert isinstance(c, Engagement)
    assert (c.user_id, c.post_id, c.comment_id, c.reply_to, c.text, c.event_id) == \
        (pseudonym(KEY, "alice"), "p1", "c1", "c0", "Nice", None)

    f = edge("follows", {"user_id": "alice", "followee_id": "bob"})
    assert isinstance(f, Follow) and (f.user_id, f.followee_id) == (pseudonym(KEY, "alice"), pseudonym(KEY, "bob"))
    assert f.followee_id == post.author_id  # joins survive: a followee is the author of their posts

    for topic in ("likes", "shares"):
        e = edge(topic, {"user_id": "carol", "post_id": "p9"})
        assert e.user_id == pseudonym(KEY, "carol") and e.post_id == "p9"


def test_rejected_events_pass_through_and_inputs_are_not_mutated():
    rejected = Rejected("schema: boom")
    assert Pseudonymizer(KEY)(rejected) is rejected
    like = Engagement("like", "alice", "p1", 0.0)
    Pseudonymizer(KEY)(like)
    assert like.user_id == "alice"


def test_pseudonymizer_refuses_an_empty_key_and_never_shows_it():
    with pytest.raises(ValueError):
        Pseudonymizer(b"")
    assert "test-key" not in repr(Pseudonymizer(KEY))


def test_outputs_built_from_pseudonymised_events_carry_no_raw_id():
    """The recommender and reply suggester downstream of the edge only ever see pseudonyms."""
    from fakes import BagOfWords

    from processors.replies import ReplyConfig, ReplySuggester
    from processors.reply_bank import ResponseBank
    from processors.reply_texts import SeedSet

    svc = Recommender(dim=2, config=RecommenderConfig(min_interval_s=0), clock=lambda: 10.0)
    posts = [edge("posts", {"post_id": f"p{i}", "author_id": RAW_IDS[i % 3], "text": "t"}) for i in range(6)]
    svc.on_posts(posts, np.array([[1, 0], [0.9, 0.2], [0, 1], [0.2, 0.9], [0.7, 0.7], [1, 0.1]], dtype=np.float32))
    profile = UserProfile(pseudonym(KEY, "alice"))
    svc.on_follow(edge("follows", {"user_id": "alice", "followee_id": "bob"}), profile)
    svc.on_engagement(edge("likes", {"user_id": "alice", "post_id": "p1"}), profile)
    doc = svc.recommendation(profile)
    assert validate("recommendation", doc) is None and doc["items"]
    assert doc["user_id"] == pseudonym(KEY, "alice")
    assert all(i["author_id"] in {pseudonym(KEY, u) for u in RAW_IDS} for i in doc["items"])
    # own posts are still filtered: alice's pseudonym never recommends posts by alice's pseudonym
    assert pseudonym(KEY, "alice") not in {i["author_id"] for i in doc["items"]}
    text = json.dumps([doc, profile.to_dict()])
    assert not any(raw in text for raw in RAW_IDS)

    seed = SeedSet(version="s", replies={"thanks": ["Thank you so much!"], "praise": ["Great shot!"]}, contexts={})
    bank = ResponseBank(seed, min_users=1)
    bank.embed_pending(BagOfWords())
    replies = ReplySuggester(bank, ReplyConfig(threshold=-1.0))
    first = edge("comments", {"user_id": "carol", "post_id": "p1", "comment_id": "c1", "text": "Great shot"})
    reply = edge("comments", {"user_id": "alice", "post_id": "p1", "comment_id": "c2", "reply_to": "c1",
                              "text": "Thank you"})
    out1 = replies.on_comment(first, BagOfWords().embed([first.text])[0], 0.5, post_author=posts[1].author_id)
    out2 = replies.on_comment(reply, BagOfWords().embed([reply.text])[0], 0.5, post_author=posts[1].author_id)
    assert out1["recipient_id"] == pseudonym(KEY, "bob")  # the post author
    assert out2["recipient_id"] == pseudonym(KEY, "carol")  # the parent comment's author
    assert not any(raw in json.dumps([out1, out2]) for raw in RAW_IDS)


# -- dead letters ---------------------------------------------------------------------------
def test_redacted_dead_letter_keeps_the_position_and_drops_the_payload():
    raw = b'{"schema_version": 1, "user_id": "alice", "post_id": 7}'
    reason = decode("likes", raw, default_ts=0).reason
    doc = redact_dead_letter(dead_letter(reason, "likes", 1, 42, raw, now=5.0, max_raw=2048))
    assert validate("dead_letter", doc) is None
    assert (doc["topic"], doc["partition"], doc["offset"], doc["raw"], doc["raw_truncated"]) == ("likes", 1, 42, "", True)
    assert "alice" not in json.dumps(doc) and doc["reason"].startswith("schema: post_id")


@pytest.mark.parametrize("reason, expected", [
    ("schema: user_id: 'alice' is too long", "schema: user_id: '…' is too long"),
    ('processing error: KeyError: "bob"', 'processing error: KeyError: "…"'),
    ("schema: 'post_id' is a required property", "schema: 'post_id' is a required property"),
    ("invalid JSON: Expecting ',' delimiter: line 1 column 9 (char 8)",
     "invalid JSON: Expecting ',' delimiter: line 1 column 9 (char 8)"),
    ("schema: user_id: 'x' is too short", "schema: user_id: '…' is too short"),
    ("text too long: 6001 > 5000 characters", "text too long: 6001 > 5000 characters"),
    ("schema: text: {'a': 'secret words'} is not of type 'string'", "schema: text: {'…': '…'} is not of type 'string'"),
])
def test_redact_reason(reason, expected):
    assert redact_reason(reason) == expected


# -- settings -------------------------------------------------------------------------------
def test_settings_security_defaults_are_plaintext_and_off():
    s = Settings()
    assert (s.security_protocol, s.processing_guarantee, s.pseudonymize_key, s.metrics_host) == \
        ("PLAINTEXT", "at_least_once", None, "127.0.0.1")
    assert security.kafka_client_kwargs(s) == {} and security.faust_app_kwargs(s) == {}


def test_settings_from_environment_give_sasl_clients(monkeypatch):
    monkeypatch.setenv("RIPPLE_SECURITY_PROTOCOL", "sasl_plaintext")
    monkeypatch.setenv("RIPPLE_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("RIPPLE_SASL_USERNAME", "ripple")
    monkeypatch.setenv("RIPPLE_SASL_PASSWORD", "pa55-word")
    monkeypatch.setenv("RIPPLE_PSEUDONYMIZE_KEY", "k" * 16)
    monkeypatch.setenv("RIPPLE_PROCESSING_GUARANTEE", "exactly_once")
    s = Settings()
    assert security.kafka_client_kwargs(s) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
                                               "sasl_plain_username": "ripple", "sasl_plain_password": "pa55-word"}
    creds = security.faust_app_kwargs(s)["broker_credentials"]
    assert (creds.username, creds.mechanism.value, creds.protocol.value) == ("ripple", "SCRAM-SHA-256", "SASL_PLAINTEXT")
    assert "pa55-word" not in repr(s) + repr(creds) + security.describe(s)
    assert "k" * 16 not in repr(s)
    assert s.processing_guarantee == "exactly_once"


@pytest.mark.parametrize("values", [
    {"security_protocol": "SASL_SSL", "sasl_password": "topsecret-pw"},  # no user name
    {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"},  # no password
    {"pseudonymize_key": "topsecret-pw"},  # shorter than 16 characters
    {"security_protocol": "KERBEROS", "sasl_password": "topsecret-pw"},
    {"processing_guarantee": "at_most_once"},
])
def test_invalid_security_settings_fail_at_start_up_without_echoing_secrets(values):
    with pytest.raises(ValidationError) as info:
        Settings(**values)
    assert "topsecret-pw" not in str(info.value)


def test_ssl_settings_check_files_before_connecting(tmp_path):
    s = Settings(security_protocol="SSL", ssl_cafile=tmp_path / "missing.pem")
    with pytest.raises(security.SecurityConfigError, match="ssl_cafile"):
        security.kafka_client_kwargs(s)
    ctx = security.kafka_client_kwargs(Settings(security_protocol="SSL"))["ssl_context"]
    assert ctx.check_hostname and ctx.minimum_version >= __import__("ssl").TLSVersion.TLSv1_2


def test_secret_settings_are_secretstr():
    s = Settings(sasl_password="x" * 8, pseudonymize_key="y" * 16, ssl_key_password="z" * 8)
    assert all(isinstance(v, SecretStr) for v in (s.sasl_password, s.pseudonymize_key, s.ssl_key_password))
