import json

import numpy as np

from processors.catalog import PostCatalog
from processors.diversity import diversify
from processors.profiles import UserProfile
from processors.ranking import (RankConfig, Recommendation, recommend,
                                recommend_detailed, recommend_many)
from processors.selection import best_first, top, top_set
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


def reference_mmr(score, emb, authors, k, lam, cap):
    """Textbook greedy MMR over the best max(5k, 50) candidates, one numpy expression per step
    (``emb`` and ``authors`` per candidate): the picks ``diversify`` must reproduce exactly,
    first-maximum tie-breaking and the author cap included."""
    order = np.argsort(-score)[: max(k * 5, 50)].tolist()
    picked, per_author = [], {}
    if lam >= 1.0:
        for j in order:
            if per_author.get(authors[j], 0) < cap and len(picked) < k:
                per_author[authors[j]] = per_author.get(authors[j], 0) + 1
                picked.append(j)
        return picked
    sub = emb[order]
    penalty = np.zeros(len(order))
    alive = np.ones(len(order), dtype=bool)
    while alive.any() and len(picked) < k:
        best = int(np.argmax(np.where(alive, lam * score[order] - (1 - lam) * penalty, -np.inf)))
        alive[best] = False
        j = order[best]
        if per_author.get(authors[j], 0) >= cap:
            continue
        per_author[authors[j]] = per_author.get(authors[j], 0) + 1
        picked.append(j)
        penalty = np.maximum(penalty, sub @ sub[best])
    return picked


def random_mmr_case(rng, n_rows=1200, n_users=1):
    """Catalog embeddings and authors, and per user candidates (a random subset of the rows) with
    scores; some cases have tied scores, duplicated or nearly duplicated embeddings, or few
    authors (the cap binds, lists run dry).  Candidate counts vary: some shortlists share a length."""
    dim = int(rng.choice([4, 32, 384]))
    emb = rng.normal(size=(n_rows, dim)).astype(np.float32)
    if rng.random() < 0.3:  # reposts: identical embeddings
        emb[rng.integers(0, n_rows, 300)] = emb[rng.integers(0, n_rows, 300)]
    near = rng.random() < 0.3  # near-duplicates, equal scores: picks hinge on the similarities' last bits
    if near:
        emb = (emb[0] + emb * rng.choice([1e-4, 1e-5, 1e-6])).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    authors = [f"a{a}" for a in rng.integers(0, int(rng.choice([1, 3, 20, 500])), n_rows)]
    users = []
    for _ in range(n_users):
        cand = np.sort(rng.choice(n_rows, size=int(rng.choice([0, 1, 7, 7, 60, 300, 1000])), replace=False))
        score = rng.random(cand.size) * 2
        if near:
            score[:] = 1.0
        elif rng.random() < 0.3:  # ties
            score = np.round(score * 4) / 4
        users.append((score, cand))
    return emb, authors, users


def test_diversify_equals_textbook_greedy_mmr():
    """Several users at once (as recommend_many calls it): each user's picks are exactly those of
    the textbook loop for that user alone, whoever else is in the call."""
    rng = np.random.default_rng(2024)
    for case in range(300):
        emb, authors, users = random_mmr_case(rng, n_users=int(rng.choice([1, 2, 5, 40])))
        k = int(rng.choice([1, 3, 10, 25]))
        config = RankConfig(mmr_lambda=float(rng.choice([0.0, 0.3, 0.8, 0.8, 1.0, 1.5])),
                            author_cap=int(rng.choice([1, 2, 100])))
        got = diversify([s for s, _ in users], emb, [c for _, c in users], authors, k, config)
        for u, (score, cand) in enumerate(users):
            want = reference_mmr(score, emb[cand], [authors[r] for r in cand], k, config.mmr_lambda, config.author_cap)
            assert got[u] == want, (case, u, config, k)
    assert diversify([], emb, [], authors, 10, RankConfig()) == []


def test_shortcut_selections_equal_full_sorts():
    rng = np.random.default_rng(7)
    for case in range(300):
        n, m = int(rng.choice([10, 300, 811, 2000, 5000])), int(rng.choice([1, 50, 250]))
        x = rng.normal(size=n).astype(rng.choice([np.float32, np.float64]))
        if case % 3 == 0:  # ties, also at the boundary
            x = np.round(x * 8) / 8
        if case % 10 == 1:
            x[rng.integers(0, n, 5)] = np.nan
        assert (best_first(x, m) == np.argsort(-x)[:m]).all(), case
        assert sorted(top_set(x, m).tolist()) == sorted(top(x, m).tolist()), case


def bits(x: float) -> str:
    return "nan" if x != x else x.hex()  # tells -0.0 from 0.0 and every last bit apart


def test_vectorised_rounding_is_pythons_round_bit_for_bit():
    """Recommendation._round against round() where the shortcut is hardest: exact binary ties,
    decimal halves and their neighbours one ulp off, the range limit, specials."""
    rng = np.random.default_rng(42)
    for nd in (4, 5):
        scale = 10.0 ** nd
        k = rng.integers(-3 * 10 ** nd, 3 * 10 ** nd, 20_000)
        halves = (k + 0.5) / scale  # the decimal halves, as near as doubles get
        ties = (2 * rng.integers(-10 ** 6, 10 ** 6, 5_000) + 1) / 2.0 ** (nd + 1)  # exact ties in binary
        edge = 2.0 ** 30 / scale  # beyond it: round() itself
        cases = [rng.uniform(-1, 1, 20_000), rng.uniform(0, 3, 20_000), rng.exponential(1e-4, 5_000),
                 np.exp(rng.uniform(-700, 700, 5_000)) * rng.choice([-1, 1], 5_000), k / scale,
                 halves, np.nextafter(halves, np.inf), np.nextafter(halves, -np.inf),
                 ties, np.nextafter(ties, 2 * ties), np.linspace(edge * 0.99, edge * 1.01, 2_000),
                 [0.0, -0.0, -1e-9, 5e-324, -5e-324, 1e308, -1e308, float("inf"), float("-inf"), float("nan")]]
        values = [float(v) for case in cases for v in case]
        got = Recommendation._round(values, nd)
        assert all(type(g) is float for g in got)
        assert list(map(bits, got)) == [bits(round(v, nd)) for v in values], nd


def test_as_dicts_items_are_each_items_to_dict():
    """The message path builds item dicts column-wise for all users; they must be the objects'."""
    cat = themed_catalog(n_per_theme=60)
    rng = np.random.default_rng(5)
    users = [UserProfile("new")]  # no history: popular/fresh pools only
    for n in range(1, 9):
        u = UserProfile(f"u{n}")
        for i in rng.choice(180, size=n, replace=False):
            post = cat.snapshot(0.0).ids[int(i)]
            u.apply_engagement("like", post, cat.author_of(post), ts=0.0)
        users.append(u)
    mf = lambda user, ids: np.linspace(-0.2, 1.2, len(ids))  # clipped to [0, 1] by the blend
    args = (users, cat, 3.0, 7, mf, RankConfig(max_candidates=50, per_source=20))
    objects, dicts = recommend_many(*args), recommend_many(*args, as_dicts=True)
    assert [r.missing for r in dicts] == [r.missing for r in objects]
    assert json.dumps([r.items for r in dicts]) == json.dumps([[i.to_dict() for i in r.items] for r in objects])
    assert sum(len(r.items) for r in dicts) == 9 * 7
    assert recommend_many([], cat, 0.0, as_dicts=True) == []


def test_pool_path_affinity_and_exclusions():
    cat = themed_catalog(n_per_theme=400)
    u = UserProfile("code-author1")  # also an author of code posts
    for i in (0, 2, 7):
        u.apply_engagement("like", f"code{i}", cat.author_of(f"code{i}"), ts=0.0)
    u.apply_follow("run-author3", ts=0.0)
    u.apply_engagement("like", "code12", cat.author_of("code12"), ts=0.0, weight=0.0)  # seen, not liked
    config = RankConfig(max_candidates=100, per_source=200, author_cap=100, w_affinity=5.0)
    recs = recommend(u, cat, now=0.0, k=60, config=config)
    assert len(recs) == 60
    assert recs[0].author_id == "run-author3" and recs[0].reasons["affinity"] == 1.0  # from the liked-authors pool
    assert {r.author_id for r in recs} >= {"run-author3", "code-author2"}
    for r in recs:
        assert r.reasons["affinity"] == u.affinity(r.author_id)
        assert r.author_id != u.user_id and not u.has_seen(r.post_id)


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


def reference_scoring(p, view, sim, co, pop, fresh, mf_scores, config):
    """One user's candidates, features and scores, spelt out: the rule ``_score_block`` applies to
    many users at once (sets and sorts instead of masks; one user, one catalog row at a time)."""
    n, m = len(view), config.per_source
    liked = [a for a in dict.fromkeys((*p.authors, *p.follows)) if a in view.rows_of_author]
    affinity = {r: p.affinity(a) for a in liked for r in view.rows_of_author[a] if r < n}
    if n <= config.max_candidates:
        keep = set(range(n))
    else:
        positive = [r for r in range(n) if co[r] > 0]
        keep = {*top(sim, m).tolist(), *top(pop, m).tolist(), *top(fresh, m).tolist(), *sorted(affinity)[-m:],
                *sorted(positive, key=lambda r: -co[r])[:m]}
    keep -= {view.row_of[s] for s in p.seen if s in view.row_of} | set(view.rows_of_author.get(p.user_id, ()))
    cand = np.array(sorted(r for r in keep if r < n), dtype=np.int64)
    if not cand.size:
        return None
    c = co[cand]
    if c.max() > 0:
        c = c / c.max()
    feats = {"similarity": sim[cand].astype(np.float64),
             "factors": np.clip(np.asarray(mf_scores(p.user_id, [view.ids[r] for r in cand]), dtype=np.float64), 0, 1),
             "coengagement": c, "freshness": fresh[cand], "popularity": pop[cand],
             "affinity": np.array([affinity.get(r, 0.0) for r in cand.tolist()])}
    score = sum(getattr(config, f"w_{name}") * f for name, f in feats.items())
    return cand, feats, score


def test_score_block_equals_a_per_user_reference():
    """Candidates (pools past max_candidates, minus seen and own posts), features and blended
    scores of a block of users, bit for bit those of the spelt-out one-user rule, whatever the
    block: users with and without history, follows, co-engagement, own posts, nothing left."""
    import zlib

    from processors import ranking
    from processors.candidates import ExactSimilarity, SparseRows

    rng = np.random.default_rng(11)
    mf = lambda user, ids: np.array([zlib.crc32(f"{user}/{i}".encode()) / 2 ** 32 * 1.4 - 0.2 for i in ids])
    for case in range(12):
        n_posts = int(rng.choice([60, 400, 900]))
        cat = PostCatalog(dim=8, capacity=2000)
        e = rng.normal(size=(n_posts + 30, 8)).astype(np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        for i in range(n_posts):
            cat.add(f"p{i}", f"a{i % 23}", float(rng.uniform(0, 50)), e[i])
        for i in rng.integers(0, n_posts, size=3 * n_posts).tolist():  # popularity, with ties
            cat.engage(f"p{i}", 1.0, 40.0)
        config = RankConfig(max_candidates=int(rng.choice([50, 100, 2000])), per_source=int(rng.choice([10, 40, 120])))
        shared = ranking._Shared(cat, 60.0, config)
        view = shared.view
        for i in range(n_posts, n_posts + 30):  # added after the snapshot: rows past the view
            cat.add(f"p{i}", f"a{i % 23}", 55.0, e[i])
        users = []
        for u in range(int(rng.integers(1, 9))):
            p = UserProfile(f"a{u}" if u % 3 == 0 else f"u{u}")  # some users are authors too
            for r in rng.choice(n_posts + 30, size=int(rng.integers(0, 40)), replace=False).tolist():
                p.apply_engagement("like" if rng.random() < 0.8 else "view", f"p{r}", f"a{r % 23}", ts=10.0,
                                   weight=None if rng.random() < 0.8 else 0.0)
            if rng.random() < 0.5:
                p.apply_follow(f"a{int(rng.integers(0, 23))}", ts=0.0)
            users.append(p)
        if case == 0:  # one user has seen every post: no candidates
            for i in range(n_posts):
                users[0].apply_engagement("view", f"p{i}", None, 10.0, weight=0.0, seen_limit=10_000)
        sim = rng.normal(size=(len(users), n_posts)).astype(np.float32)
        co = np.where(rng.random((len(users), n_posts)) < 0.3, rng.random((len(users), n_posts)), 0.0)
        co[rng.random(len(users)) < 0.3] = 0.0  # users with no co-engagement at all
        similarity = ExactSimilarity(sim, np.ones(len(users), dtype=bool))
        for with_co in (co, None):
            got = ranking._score_block(users, shared, similarity, None if with_co is None else SparseRows.from_dense(co),
                                       mf, config)
            for u, p in enumerate(users):
                want = reference_scoring(p, view, sim[u], np.zeros(n_posts) if with_co is None else co[u],
                                         shared.pop, shared.fresh, mf, config)
                if want is None:
                    assert got[u] is None, (case, u)
                    continue
                cand, feats, score = got[u]
                assert cand.tolist() == want[0].tolist(), (case, u)
                assert {k: v.tobytes() for k, v in feats.items()} == {k: v.tobytes() for k, v in want[1].items()}
                assert score.tobytes() == want[2].tobytes(), (case, u)
        assert case or got[0] is None


def test_a_plain_mapping_of_co_scores_becomes_a_catalog_row():
    """``co_scores`` answering a plain mapping: its posts' figures land on their catalog rows,
    posts outside the catalog are ignored, every other row is 0."""
    from processors import ranking

    view = themed_catalog(n_per_theme=2).snapshot(0.0)
    row = ranking._co_row({"cook1": 0.5, "gone": 9.0, "run0": 2.0}, view)
    assert row.tolist() == [2.0 if i == "run0" else 0.5 if i == "cook1" else 0.0 for i in view.ids]
