"""The ranking blend learnt from the lists users were sent: labels, learning, sharing, snapshots."""

import math

import numpy as np

from processors.blend_learning import BlendLearner
from processors.events import Engagement, Post
from processors.learned_blend import FEATURES
from processors.profiles import UserProfile
from processors.recommender import Recommender, RecommenderConfig
from processors.sync_message import decode, encode

PRIOR = {f: 0.5 for f in FEATURES}


def items(*ids, pop=None):
    return [{"post_id": p, "reasons": {"similarity": 0.5, "popularity": (pop or {}).get(p, 0.1)}} for p in ids]


def test_a_list_is_labelled_once_by_the_next_engagement_in_time_or_else_as_ignored():
    learner = BlendLearner(PRIOR, window_s=60.0)
    learner.shown("u", items("a", "b"), now=0.0)
    learner.engaged("u", "zzz", ts=10.0)  # not in the list, in time: the list still waits
    assert learner.lists == 0 and not learner.labels
    learner.engaged("u", "b", ts=20.0)
    assert learner.labels == {"engaged": 1} and learner.lists == 1
    learner.engaged("u", "a", ts=21.0)  # that list is done
    assert learner.lists == 1
    learner.shown("u", items("c"), now=30.0)
    learner.shown("u", items("d"), now=31.0)  # replaced before any of its items was engaged
    assert learner.labels == {"engaged": 1, "ignored": 1}
    learner.engaged("u", "d", ts=30.5)  # made before the list was: not its answer
    assert learner.labels == {"engaged": 1, "ignored": 1}
    learner.engaged("u", "d", ts=200.0)  # too late: ignored, even though "d" was in it
    assert learner.labels == {"engaged": 1, "ignored": 2}
    assert learner.lists == 1  # ignored lists are counted, not learnt
    learner.shown("w", items("e"), now=0.0)
    learner.engaged("w", "e", ts=0.0)
    assert learner.lists == 2


def test_users_who_take_the_most_popular_item_teach_the_blend_popularity():
    learner = BlendLearner(PRIOR, min_lists=50, refresh_every=10)
    rng = np.random.default_rng(0)
    for i in range(400):
        pops = rng.random(5)
        ids = [f"p{i}-{j}" for j in range(5)]
        learner.shown(f"u{i % 30}", items(*ids, pop=dict(zip(ids, pops))), now=float(i))
        learner.engaged(f"u{i % 30}", ids[int(np.argmax(pops))], ts=float(i) + 1)
    w = learner.model.weights()
    assert w["popularity"] > 2 * PRIOR["popularity"] and w["similarity"] < w["popularity"]
    from processors.ranking import RankConfig

    config = RankConfig()
    assert learner.rank_config(config).w_popularity == w["popularity"]
    assert BlendLearner(PRIOR, min_lists=10_000).rank_config(config) is config  # not ready: the configured blend


def test_workers_exchanging_their_changes_rank_with_one_blend_and_snapshots_keep_it():
    a, b = BlendLearner(PRIOR, min_lists=1), BlendLearner(PRIOR, min_lists=1)
    for learner, favourite in ((a, "x"), (b, "y")):
        for i in range(20):
            learner.shown("u", items("x", "y", pop={favourite: 0.9}), now=float(i))
            learner.engaged("u", favourite, ts=float(i))
    docs_a, docs_b = a.take_docs(), b.take_docs()
    assert a.take_docs() == [] and len(docs_a) == 1
    for doc in docs_a:  # through the wire format, as model sync sends them
        b.apply_doc(decode(encode("w1", 1, {"blend": doc}))[2]["blend"])
    for doc in docs_b:
        a.apply_doc(doc)
    assert a.lists == b.lists == 40
    assert all(math.isclose(a.model.coef[f], b.model.coef[f], abs_tol=1e-12) for f in FEATURES)
    restored = BlendLearner(PRIOR)
    assert restored.restore({k: v for k, v in a.snapshot(a.all_keys()).items()}) == 1
    assert restored.model.coef == a.model.coef and restored.lists == 40
    assert BlendLearner(PRIOR).restore({"blend": b"not json"}) == 0
    for bad in ({"coef": {"nope": 1.0}, "lists": 1}, {"coef": {}, "lists": "x"}, {},
                {"coef": {"similarity": float("nan")}, "lists": 1}):
        try:
            a.apply_doc(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


def test_the_recommender_learns_from_the_lists_it_sends():
    now = [100.0]
    rec = Recommender(2, config=RecommenderConfig(min_interval_s=0.0), clock=lambda: now[0])
    learner = rec.learn_blend(window_s=60.0, min_lists=1)
    rec.on_posts([Post(f"p{i}", f"a{i}", "", 0.0) for i in range(12)],
                 np.array([[1.0, i / 12] for i in range(12)], dtype=np.float32))
    profile = UserProfile("u")
    rec.on_engagement(Engagement("like", "u", "p0", ts=100.0), profile)
    sent = rec.recommendation(profile)["items"]
    assert learner.lists == 0
    rec.on_engagement(Engagement("like", "u", sent[2]["post_id"], ts=110.0), profile)
    assert learner.labels == {"engaged": 1}
    assert rec.recommendation(profile)["items"]  # ranked with the learnt blend (ready after one list)
    assert rec.blend.rank_config(rec.config.rank) is not rec.config.rank
