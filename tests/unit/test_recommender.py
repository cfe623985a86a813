import numpy as np

from models.factors import ImplicitMF
from processors.events import Engagement, Follow, Post, validate
from processors.profiles import UserProfile
from processors.recommender import Recommender, RecommenderConfig


def test_service_end_to_end_without_a_broker():
    now = [100.0]
    svc = Recommender(dim=2, factors=ImplicitMF(n_factors=4), config=RecommenderConfig(min_interval_s=10), clock=lambda: now[0])
    svc.on_posts([Post("a1", "alice", "t", 0.0), Post("b1", "bob", "t", 0.0), Post("c1", "carol", "t", 0.0)],
                 np.array([[1, 0], [0.95, 0.3], [0, 1]], dtype=np.float32))
    p = UserProfile("u")
    assert svc.on_engagement(Engagement("like", "u", "a1", 1.0), p)
    assert not svc.on_engagement(Engagement("share", "u", "c1", 2.0), p)  # throttled → deferred
    assert svc.due() == []
    now[0] += 10
    assert svc.due() == ["u"]
    doc = svc.recommendation(p)
    assert validate("recommendation", doc) is None
    assert [i["post_id"] for i in doc["items"]] == ["b1"] and doc["based_on_events"] == 2
    assert svc.factors.updates >= 2
    assert svc.on_follow(Follow("u", "bob", 3.0), p) is False and p.follows == ["bob"]


def test_engagement_with_unknown_post_is_counted_and_retried_later():
    svc = Recommender(dim=2, config=RecommenderConfig(min_interval_s=0), clock=lambda: 0.0)
    p = UserProfile("u")
    svc.on_engagement(Engagement("like", "u", "not-yet", 1.0), p)
    doc = svc.recommendation(p)
    assert doc["items"] == [] and p.events == 1
    assert svc.due() == ["u"]  # incomplete profile → one more send once the post arrives
