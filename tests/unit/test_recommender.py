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


def test_factor_scores_match_rivers_latents_through_learning_and_forgetting():
    """The cached item matrix must give exactly river's dot products, also after items are
    forgotten (max_items) and relearnt into reused rows."""
    import random

    from models.factors import ImplicitMF

    rng = random.Random(5)
    mf = ImplicitMF(n_factors=4, max_items=30, seed=3)
    items = [f"i{j}" for j in range(60)]
    for step in range(400):
        user = f"u{rng.randrange(8)}"
        mf.learn(user, rng.choice(items), negatives=rng.sample(items, 3))
        if step % 37 == 0:
            query = rng.sample(items, 20) + ["never-seen"]
            want = np.array([float(mf.model.i_latents[i] @ mf.model.u_latents[user]) if i in mf.model.i_latents else 0.0
                             for i in query])
            np.testing.assert_allclose(mf.scores(user, query), want, rtol=1e-12, atol=1e-12)
    assert mf.n_items == 30
    assert not mf.scores("stranger", items[:3]).any()


def test_candidate_rows_give_the_same_scores_as_plain_ids_and_follow_new_posts():
    from models.factors import ImplicitMF
    from processors.protocols import CandidateIds
    from processors.co_engagement import CoEngagement

    source = [f"p{i}" for i in range(9)]  # p7 and p8 are unknown to both models at first
    rows = np.array([8, 0, 3, 7, 1])
    ids = CandidateIds([source[r] for r in rows], source, ("catalog", 1), rows)
    mf, co = ImplicitMF(n_factors=4, seed=1), CoEngagement(window=3)
    history: list[str] = []
    for i in range(30):
        post = f"p{i % 7}"
        mf.learn("u", post, negatives=[f"p{(i + 3) % 7}"])
        co.learn(post, history)
        history.append(post)
    for _ in range(2):  # the second round: p7/p8 gained rows and slots after a mapping was cached
        np.testing.assert_array_equal(mf.scores("u", ids), mf.scores("u", list(ids)))
        scores = co.scores(["p1", "p2"], [1.0, 0.5])
        np.testing.assert_array_equal(scores.take(ids), scores.take(list(ids)))
        mf.learn("u", "p8")
        co.learn("p8", ["p0"])
    assert mf.scores("u", ids)[0] != 0.0 and co.scores(["p0"], [1.0]).take(ids)[0] > 0  # p8 now scores


def _liked_state(seed: int, dim: int, n_posts: int, authors: int, likes: int, n_users: int):
    """A recommender (clock at 1000 s) with ``n_posts`` random unit posts and ``likes`` random
    likes by ``n_users`` users; their profiles plus a newcomer with no history."""
    import random

    rng, r = np.random.default_rng(seed), random.Random(seed + 1)
    rec = Recommender(dim=dim, factors=ImplicitMF(n_factors=4, seed=2), clock=lambda: 1000.0)
    emb = rng.normal(size=(n_posts, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rec.on_posts([Post(f"p{i}", f"a{i % authors}", "", 900.0 + i * 0.05) for i in range(n_posts)], emb)
    profiles = {}
    for _ in range(likes):
        u = f"u{r.randrange(n_users)}"
        p = profiles.setdefault(u, UserProfile(u))
        rec.on_engagement(Engagement("like", u, f"p{r.randrange(n_posts)}", 990.0), p)
    return rec, [*profiles.values(), UserProfile("newcomer")]  # the newcomer has no interest vector


def test_recommendations_for_many_users_equal_each_users_own():
    """The batch path (one snapshot, one similarity matrix product, shared pools) ranks every user
    as the one-user path does, on a catalog past max_candidates (so the pools are used)."""
    rec, users = _liked_state(seed=0, dim=16, n_posts=1300, authors=40, likes=3000, n_users=60)
    together = rec.recommendations(users)
    for profile, doc in zip(users, together):
        alone = rec.recommendation(profile)
        assert [i["post_id"] for i in doc["items"]] == [i["post_id"] for i in alone["items"]], profile.user_id
        np.testing.assert_allclose([i["score"] for i in doc["items"]], [i["score"] for i in alone["items"]], atol=1e-4)
    assert all(len(d["items"]) == 10 for d in together)



def test_factor_scores_are_the_gathered_latents_times_the_user_bit_for_bit():
    import random

    from processors.protocols import CandidateIds

    rng = random.Random(4)
    mf = ImplicitMF(n_factors=8, max_items=40, seed=6)
    items = [f"i{j}" for j in range(70)]
    for step in range(600):
        user = f"u{rng.randrange(5)}"
        mf.learn(user, rng.choice(items), negatives=rng.sample(items, 3))
        if step % 50 == 0:
            known = [i for i in items if i in mf.model.i_latents]
            query = rng.sample(known, min(25, len(known)))
            rows = np.array([items.index(i) for i in query])
            want = np.array([mf.model.i_latents[i] for i in query]) @ mf.model.u_latents[user]
            assert mf.scores(user, query).tobytes() == want.tobytes()
            ids = CandidateIds(None, items, ("catalog", step), rows)
            assert mf.scores(user, ids).tobytes() == want.tobytes()


def test_messages_carry_each_recommendations_to_dict_in_order():
    """``recommendations`` rounds the figures of a whole chunk at once: the messages must be those
    of ``Recommendation.to_dict`` per item, users and items in order, across several chunks."""
    import json
    import random

    from processors.ranking import recommend_many

    rng, r = np.random.default_rng(1), random.Random(2)
    rec = Recommender(dim=8, factors=ImplicitMF(n_factors=4, seed=2), clock=lambda: 500.0)
    emb = rng.normal(size=(300, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rec.on_posts([Post(f"p{i}", f"a{i % 25}", "", 100.0 + i) for i in range(300)], emb)
    profiles = {}
    for _ in range(2000):
        u = f"u{r.randrange(150)}"
        rec.on_engagement(Engagement("like", u, f"p{r.randrange(300)}", 400.0), profiles.setdefault(u, UserProfile(u)))
    jaded = UserProfile("jaded")  # has seen all but three posts: a short message amid full ones
    for i in range(297):
        jaded.apply_engagement("view", f"p{i}", None, 400.0, weight=0.0, seen_limit=1000)
    users = [*profiles.values(), UserProfile("newcomer")]
    users.insert(70, jaded)
    docs = rec.recommendations(users)
    items = []
    for i in range(0, len(users), 64):
        results = recommend_many(users[i:i + 64], rec.catalog, 500.0, rec.config.k, rec.factors.scores,
                                 rec.config.rank, rec.coengagement.scores)
        items += [[x.to_dict() for x in res.items] for res in results]
    assert len(docs) == len(users) > 128
    assert [d["user_id"] for d in docs] == [p.user_id for p in users]
    assert json.dumps([d["items"] for d in docs]) == json.dumps(items)
    assert [len(d["items"]) for d in docs] == [3 if p is jaded else 10 for p in users]


def test_co_index_path_gives_the_co_scores_paths_messages(monkeypatch):
    """``recommend_many(co_index=...)`` (every user's co-engagement row from one ``over_many``
    call per block of users) ranks exactly as ``co_scores=co.scores`` (one call and one
    ``CoScoreVector.over`` per user): the same items, figures and order, byte for byte, with the
    users split in several blocks."""
    import json

    from processors import ranking

    n_posts = 1200  # past max_candidates: the co-engagement pool is used
    rec, users = _liked_state(seed=3, dim=8, n_posts=n_posts, authors=30, likes=4000, n_users=50)
    args = (users, rec.catalog, 1000.0, 10, rec.factors.scores, rec.config.rank)
    monkeypatch.setattr(ranking, "BLOCK_CELLS", 7 * n_posts)  # blocks of 7 users
    one_by_one = ranking.recommend_many(*args, co_scores=rec.coengagement.scores, as_dicts=True)
    together = ranking.recommend_many(*args, as_dicts=True, co_index=rec.coengagement)
    assert json.dumps([x.items for x in together]) == json.dumps([x.items for x in one_by_one])
    assert sum(any(i["reasons"]["coengagement"] > 0 for i in x.items) for x in together) > 40  # co-engagement counts
