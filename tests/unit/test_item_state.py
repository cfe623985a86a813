"""Item-side state learnt on several workers: counts add exactly, factor deltas sum, snapshots
restore what was learnt."""

import random

import numpy as np
import pytest

from models.factors import ImplicitMF
from processors.events import Engagement, Post
from processors.item_state import ItemDeltas, ItemState
from processors.profiles import UserProfile
from processors.recommender import Recommender, RecommenderConfig
from processors.sync_message import decode, encode

POSTS = [f"p{i}" for i in range(40)]


def _worker(seed=0, factors=True):
    rec = Recommender(dim=4, factors=ImplicitMF(n_factors=4) if factors else None,
                      config=RecommenderConfig(negatives=0, seed=seed), clock=lambda: 1e6)
    emb = np.random.default_rng(0).normal(size=(len(POSTS), 4)).astype(np.float32)
    rec.on_posts([Post(p, f"a{i}", "", 0.0) for i, p in enumerate(POSTS)], emb)
    return rec


def _events(n=600, users=30, seed=1):
    rng = random.Random(seed)
    return [Engagement(rng.choice(["like", "share", "comment"]), f"u{rng.randrange(users)}",
                       POSTS[min(int(rng.paretovariate(1.2)) - 1, len(POSTS) - 1)], ts=float(i)) for i in range(n)]


def _learn(rec, events, profiles):
    for ev in events:
        rec.on_engagement(ev, profiles.setdefault(ev.user_id, UserProfile(ev.user_id)))


def _co(rec):
    return {p: rec.coengagement.item_state(p) for p in POSTS}


def _popularity(rec):
    return np.array([rec.catalog.popularity_of(p, 1e3) for p in POSTS])


@pytest.mark.parametrize("every", [1, 50, 10_000])
def test_counts_learnt_on_sharded_workers_equal_one_worker(every):
    events = _events()
    alone = _worker(factors=False)
    _learn(alone, events, {})
    shards = [_worker(factors=False) for _ in range(3)]
    states = [ItemState(r) for r in shards]
    profiles = [{} for _ in shards]
    for i, ev in enumerate(events):
        w = int(ev.user_id[1:]) % 3
        _learn(shards[w], [ev], profiles[w])
        if i % every == every - 1 or i == len(events) - 1:
            for j, state in enumerate(states):  # through the wire format, as workers exchange them
                _, _, docs = decode(encode(f"w{j}", i, {"items": state.take().to_doc()}))
                for other in states:
                    if other is not state:
                        other.apply_doc(docs["items"])
    for rec in shards:
        assert _co(rec) == _co(alone)
        np.testing.assert_allclose(_popularity(rec), _popularity(alone), rtol=1e-9)


def test_factor_deltas_of_disjoint_items_sum_to_sequential_sgd():
    a, b, alone = ImplicitMF(n_factors=4), ImplicitMF(n_factors=4), ImplicitMF(n_factors=4)
    for m in (a, b):
        m.track_item_deltas()
    for m in (a, b, alone):  # the same user factors everywhere (they are drawn in first-seen order)
        m.set_user_factors("u1", [0.1, -0.2, 0.3, 0.05])
        m.set_user_factors("u2", [-0.1, 0.2, 0.1, 0.3])
    for _ in range(5):
        a.learn("u1", "x")
        b.learn("u2", "y")
        alone.learn("u1", "x")
        alone.learn("u2", "y")
    da, db = a.take_item_deltas(), b.take_item_deltas()
    a.add_item_deltas(db)
    b.add_item_deltas(da)
    for m in (a, b):
        for item in ("x", "y"):
            np.testing.assert_allclose(m.model.i_latents[item], alone.model.i_latents[item], atol=1e-12)
    assert a.take_item_deltas() == {} and b.take_item_deltas() == {}  # others' deltas are not sent back


def test_own_delta_excludes_what_others_added_in_between():
    m = ImplicitMF(n_factors=2)
    m.track_item_deltas()
    m.learn("u", "x")
    m.add_item_deltas({"x": np.array([1.0, 1.0])})
    m.learn("u", "x")
    mine = m.take_item_deltas()["x"]
    start = ImplicitMF(n_factors=2).model.i_latents["x"]  # the seeded start every worker shares
    np.testing.assert_allclose(start + mine + np.array([1.0, 1.0]), m.model.i_latents["x"], atol=1e-12)


def test_a_snapshot_restores_every_kind_of_item_state():
    rec = _worker()
    state = ItemState(rec)
    _learn(rec, _events(), {})
    records = state.snapshot(POSTS)
    fresh = _worker()
    assert ItemState(fresh).restore({p: v for p, v in records.items() if v is not None}) == sum(
        v is not None for v in records.values())
    assert _co(fresh) == _co(rec)
    np.testing.assert_allclose(_popularity(fresh), _popularity(rec))
    learnt = [p for p in POSTS if p in rec.factors.model.i_latents]
    assert learnt
    got = fresh.factors.scores("nobody", learnt)  # no user: zeros; compare the item factors directly
    assert not got.any()
    for p in learnt:
        np.testing.assert_allclose(fresh.factors.model.i_latents[p], rec.factors.model.i_latents[p], atol=1e-6)


def test_unreadable_snapshot_records_are_skipped():
    fresh = ItemState(_worker())
    good = ItemState(_worker()).snapshot(["p0"])
    assert fresh.restore({"p1": b"{", "p2": b'{"format": 99}', "p3": b'{"format": 1, "popularity": "x"}'}) == 0
    assert good["p0"] is None  # nothing known of p0 on a fresh worker: no record


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b'{"format": 1}', b'{"format": 2, "origin": "w"}',
                                  b'{"format": 1, "origin": "w", "seq": "x"}', b'{"format":1,"origin":"w","seq":1,"items":[]}'])
def test_a_model_sync_message_that_is_not_one_is_a_value_error(data):
    with pytest.raises(ValueError):
        decode(data)


@pytest.mark.parametrize("doc", [{}, {"events": 1, "popularity": {}, "engaged": {}, "pairs": [], "factors": {"p": "***"}},
                                 {"events": 1, "popularity": {"p": 3}, "engaged": {}, "pairs": [], "factors": {}}])
def test_item_deltas_that_are_not_item_deltas_are_a_value_error(doc):
    with pytest.raises(ValueError):
        ItemDeltas.from_doc(doc)


def test_a_message_with_both_parts_follows_the_documented_schema():
    import json

    from processors.events import validate
    from processors.replies import ReplySuggester
    from processors.reply_bank import ResponseBank
    from processors.reply_state import ReplyState
    from processors.trends import Trends

    rec = _worker()
    items = ItemState(rec)
    _learn(rec, _events(50), {})
    replies = ReplyState(ReplySuggester(ResponseBank()))
    replies.saw_comment("c1", "alice")
    replies.saw_reply("bob", "Thanks a lot", 3.0)
    trends = Trends()
    trends.record("p1", 2.0, 5.0)
    doc = json.loads(encode("w1", 1, {"items": items.take_docs()[0], "replies": replies.take_docs()[0],
                                      "trends": trends.take_docs()[0]}))
    assert doc["items"]["factors"] and doc["replies"]["replies"] and doc["trends"]["posts"]["p1"][-1] == 5.0
    assert validate("model_sync", doc) is None
    assert validate("model_sync", {**doc, "trends": {"windows": ["1h"], "posts": {"p1": [1.0]}}}) is not None
    assert validate("model_sync", {**doc, "seq": 0}) is not None


def test_deltas_split_into_small_messages_apply_as_the_whole():
    rec = _worker()
    state = ItemState(rec)
    _learn(rec, _events(), {})
    whole = state.take()
    pieces = whole.split(max_bytes=1500)
    assert len(pieces) > 3
    assert all(len(encode("w", 1, {"items": p.to_doc()})) < 3000 for p in pieces)
    one, many = _worker(), _worker()
    ItemState(one).apply_doc(whole.to_doc())
    for piece in pieces:
        ItemState(many).apply_doc(piece.to_doc())
    assert _co(one) == _co(many)
    np.testing.assert_allclose(_popularity(one), _popularity(many))
    for p in POSTS:
        if p in one.factors.model.i_latents:
            np.testing.assert_allclose(many.factors.model.i_latents[p], one.factors.model.i_latents[p], atol=1e-6)
