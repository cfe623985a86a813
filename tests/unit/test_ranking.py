import numpy as np

from processors.catalog import PostCatalog
from processors.profiles import UserProfile
from processors.ranking import RankConfig, recommend, recommend_detailed
from processors.throttle import Throttle


def vec(rng, centre, noise=0.05):
    v = centre + rng.normal(0, noise, size=centre.shape)
    return (v / np.linalg.norm(v)).astype(np.float32)


def themed_catalog(n_per_theme=20, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = {t: rng.normal(size=dim) for t in ("run", "cook", "code")}
    cat = PostCatalog(dim=dim, capacity=1000)
    for t, c in centres.items():
        for i in range(n_per_theme):
            cat.add(f"{t}{i}", f"{t}-author{i % 5}", 0.0, vec(rng, c))
    return cat


def test_recommends_similar_unseen_posts_by_others():
    cat = themed_catalog()
    u = UserProfile("run-author0")  # the user is also an author of some run posts
    for i in (1, 2, 3):
        u.apply_engagement("like", f"run{i}", cat.author_of(f"run{i}"), ts=0.0)
    recs = recommend(u, cat, now=0.0, k=5, config=RankConfig(author_cap=5, mmr_lambda=1.0))
    ids = [r.post_id for r in recs]
    assert len(ids) == 5 and all(i.startswith("run") for i in ids)
    assert not {"run1", "run2", "run3"} & set(ids)
    assert all(r.author_id != "run-author0" for r in recs)


def test_similar_post_outranks_unrelated_one():
    cat = themed_catalog()
    u = UserProfile("u")
    u.apply_engagement("like", "cook0", "x", ts=0.0)
    recs = recommend(u, cat, now=0.0, k=60, config=RankConfig(author_cap=100, mmr_lambda=1.0))
    rank = {r.post_id: i for i, r in enumerate(recs)}
    assert rank["cook1"] < rank["code1"] and rank["cook1"] < rank["run1"]


def test_author_cap_and_diversity():
    cat = themed_catalog()
    u = UserProfile("u")
    u.apply_engagement("like", "code0", "x", ts=0.0)
    recs = recommend(u, cat, now=0.0, k=10, config=RankConfig(author_cap=1))
    authors = [r.author_id for r in recs]
    assert len(authors) == len(set(authors))


def test_cold_start_user_gets_popular_posts():
    cat = themed_catalog()
    for _ in range(5):
        cat.engage("cook7", 1.0, ts=0.0)
    recs = recommend(UserProfile("new"), cat, now=0.0, k=3)
    assert recs[0].post_id == "cook7"


def test_large_catalog_uses_candidate_pools_and_still_finds_neighbours():
    cat = themed_catalog(n_per_theme=600)
    u = UserProfile("u")
    u.apply_engagement("like", "code5", "x", ts=0.0)
    res = recommend_detailed(u, cat, now=0.0, k=10, config=RankConfig(max_candidates=100, per_source=50))
    assert len(res.items) == 10 and all(r.post_id.startswith("code") for r in res.items)


def test_factor_scores_enter_the_blend():
    cat = themed_catalog()
    u = UserProfile("u")
    boost = lambda user, ids: np.array([1.0 if i == "code3" else 0.0 for i in ids])
    top = recommend(u, cat, now=0.0, k=1, mf_scores=boost, config=RankConfig(w_factors=5.0))
    assert top[0].post_id == "code3" and top[0].reasons["factors"] == 1.0


def test_throttle_limits_rate_and_sends_the_trailing_update():
    t = Throttle(min_interval_s=1.0)
    assert t.offer("u", 0.0) and not t.offer("u", 0.1) and not t.offer("u", 0.2)
    assert t.due(0.5) == [] and t.due(1.0) == ["u"] and t.due(3.0) == []
    t.retry("u")
    assert t.due(2.0) == ["u"]
    sent = 0
    for i in range(10):  # every send stays incomplete: retries must stop
        t.retry("u")
        sent += len(t.due(100.0 + i * 2))
    assert sent == 2  # 3 retries per new event, one used above
    assert t.offer("u", 200.0)  # new information resets the budget
    t.retry("u")
    assert t.due(201.0) == ["u"]
