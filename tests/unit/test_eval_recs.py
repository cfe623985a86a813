import hashlib
import importlib.util
import math
import re

import numpy as np
import pytest

from processors.co_engagement import CoEngagement
from ripple.eval_baselines import ISGD, FactorsOnly, RecentPopularity
from ripple.eval_comparison import build_systems, evaluate, format_summary
from ripple.eval_data import Interaction, Interactions, load_interactions, load_movielens
from ripple.eval_prequential import replay, summarize
from ripple.eval_ripple import RippleSystem, eval_config


class BagOfWords:
    """A fake embedder: hashed word counts, L2-normalised."""

    dim = 64

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z0-9']+", t.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


class Scripted:
    """Returns a fixed list per call, in order; learns nothing."""

    def __init__(self, lists, name="scripted"):
        self.lists, self.name, self.calls = list(lists), name, 0

    def recommend(self, user, k, now):
        self.calls += 1
        return self.lists.pop(0)

    def learn(self, user, item, ts):
        pass


class LastLearned:
    """Recommends the items learnt most recently (by anyone): a hit needs the item to be learnt *before*."""

    name = "last-learned"

    def __init__(self):
        self.recent = []

    def recommend(self, user, k, now):
        return self.recent[-k:][::-1]

    def learn(self, user, item, ts):
        self.recent = [i for i in self.recent if i != item] + [item]


def ev(*triples):
    return [Interaction(u, i, float(t)) for u, i, t in triples]


# -- metrics and protocol ---------------------------------------------------------------------------
def test_hr_and_ndcg_on_a_hand_computed_example():
    events = ev(("u1", "a", 1), ("u2", "b", 2), ("u3", "c", 3), ("u4", "d", 4))
    s = Scripted([["a", "x", "y"], ["x", "y", "b"], ["x", "y", "z"], ["x", "d", "y"]])
    m = summarize(replay(events, [s], k=3, progress=False), k=3)["scripted"]
    assert m["HR@3"] == pytest.approx(3 / 4)
    assert m["NDCG@3"] == pytest.approx((1 + 1 / math.log2(4) + 0 + 1 / math.log2(3)) / 4)
    assert m["us_per_event"] >= 0 and s.calls == 4


def test_only_the_top_k_counts():
    events = ev(("u1", "a", 1))
    m = summarize(replay(events, [Scripted([["x", "y", "a"]])], k=2, progress=False), k=2)["scripted"]
    assert m["HR@2"] == 0.0  # a system returning more than k items gets no credit past k


def test_an_item_learnt_only_after_the_prediction_is_never_a_hit():
    unique = ev(("u1", "a", 1), ("u2", "b", 2), ("u3", "c", 3), ("u1", "d", 4))
    assert (replay(unique, [LastLearned()], k=10, progress=False)["last-learned"].ranks == -1).all()
    # the same item engaged by a second user *after* it was learnt can hit
    again = ev(("u1", "a", 1), ("u2", "a", 2), ("u3", "b", 3), ("u4", "a", 4))
    ranks = replay(again, [LastLearned()], k=10, progress=False)["last-learned"].ranks
    assert ranks.tolist() == [-1, 0, -1, 1]


def test_repeated_pairs_are_learnt_but_not_scored():
    events = ev(("u1", "a", 1), ("u1", "a", 2), ("u2", "a", 3))
    s = Scripted([["a"], ["a"]])
    t = replay(events, [s], k=10, progress=False)["scripted"]
    assert s.calls == 2 and t.ranks.tolist() == [0, 0] and len(t.learn_ns) == 3


def test_events_are_replayed_in_the_given_order_with_the_event_time_as_clock():
    seen = []

    class Clock(Scripted):
        def recommend(self, user, k, now):
            seen.append(now)
            return []

    replay(ev(("u", "a", 5), ("u", "b", 7)), [Clock([])], progress=False)
    assert seen == [5.0, 7.0]


# -- the systems --------------------------------------------------------------------------------------
def stream(n_users=40, seed=0):
    """Users of 4 tastes; each engages 6 items of their taste (5 'hits' per taste are shared)."""
    rng = np.random.default_rng(seed)
    tastes = ["jazz", "rock", "folk", "opera"]
    texts = {f"{t}{j}": f"{t} album number {j} {t} music" for t in tastes for j in range(8)}
    texts.update({f"cold{j}": f"unrelated cold item {j}" for j in range(12)})
    out, ts = [], 0.0
    for u in range(n_users):
        t = tastes[u % 4]
        for j in rng.permutation(8)[:6]:
            ts += 1.0
            out.append(Interaction(f"u{u}", f"{t}{j}", ts))
    return Interactions("synthetic", out, texts)


def test_a_users_first_event_can_only_hit_through_popularity():
    data = stream()
    cold = [Interaction(f"new{j}", f"cold{j}", 1000.0 + j) for j in range(12)]  # first events on unseen items
    data.events = data.events + cold
    emb = BagOfWords().embed([data.texts[i] for i in data.items])
    ripple = RippleSystem(data.items, emb, eval_config(len(data.items)), t0=0.0)
    pop = RecentPopularity(data.items)
    traces = replay(data.events, [ripple, pop], k=10, progress=False)
    for name in ("Ripple", "popularity"):
        assert (traces[name].ranks[-12:] == -1).all(), name  # nothing but popularity speaks for a new user
    # a new user's first event on the most popular item is a hit for both
    top = max(data.items, key=lambda i: pop.counts[pop.index[i]])
    traces = replay([Interaction("newest", top, 2000.0)], [ripple, pop], k=10, progress=False)
    assert traces["Ripple"].ranks[0] >= 0 and traces["popularity"].ranks[0] == 0


def test_ripple_and_baselines_learn_tastes_on_a_synthetic_stream(tmp_path):
    data = stream(n_users=80)
    out = tmp_path / "plots" / "hr.png"
    r = evaluate(data, BagOfWords(), k=5, out_png=out, window=50, progress=False)
    assert out.is_file() and out.stat().st_size > 1000 and r["plot"] == str(out)
    s = r["systems"]
    assert set(s) == {"Ripple", "Ripple (learned blend)", "popularity", "ISGD", "FunkMF", "transitions", "EASE (periodic)"}
    # beyond accuracy: popularity shows few items, all popular ones; Ripple more, and further down the tail
    assert s["popularity"]["coverage"] < s["Ripple"]["coverage"] <= 1.0
    assert s["popularity"]["novelty"] < s["Ripple"]["novelty"]
    assert all(0.0 <= m["diversity"] <= 2.0 for m in s.values())
    assert r["events"] == r["scored"] == 480 and r["items"] == 44 and r["users"] == 80
    assert s["Ripple"]["HR@5"] > s["popularity"]["HR@5"] > 0
    assert all(0 <= m["NDCG@5"] <= m["HR@5"] <= 1 for m in s.values())
    table = format_summary(r)
    assert "Ripple" in table and "popularity" in table and "HR@5" in table and "x popularity" in table


def test_seen_items_are_never_recommended_by_any_system():
    data = stream(n_users=8)
    emb = BagOfWords().embed([data.texts[i] for i in data.items])
    systems = build_systems(data, emb, k=40)
    history = {}
    for e in data.events:
        for s in systems:
            assert not set(s.recommend(e.user, 40, e.ts)) & history.get(e.user, set()), s.name
            s.learn(e.user, e.item, e.ts)
        history.setdefault(e.user, set()).add(e.item)


def test_baselines_rank_as_designed():
    items = ["a", "b", "c"]
    pop = RecentPopularity(items, half_life_s=10.0)
    for t, i in ((0, "a"), (0, "a"), (0, "a"), (100, "b")):
        pop.learn("x", i, float(t))
    assert pop.recommend("y", 2, 100.0) == ["b", "a"]  # three old likes decayed below one fresh one
    assert RecentPopularity(items, half_life_s=math.inf).recommend("y", 3, 0.0) == ["a", "b", "c"]  # ties: catalog order
    isgd = ISGD(items, seed=1)
    for _ in range(200):
        isgd.learn("u", "b", 0.0)
        isgd.learn("v", "b", 0.0)
    assert isgd.recommend("v", 1, 0.0) != ["b"]  # seen
    assert isgd.recommend("w", 3, 0.0)  # a new user gets a (random) list
    mf = FactorsOnly(items)
    mf.learn("u", "a", 0.0)
    assert "a" not in mf.recommend("u", 3, 0.0)


# -- loaders ------------------------------------------------------------------------------------------
def test_csv_loader_with_named_columns_iso_times_and_text(tmp_path):
    f = tmp_path / "events.csv"
    f.write_text("who,what,when,title,genre,stars\n"
                 "u2,i2,2024-01-02T00:00:00Z,\"Heat, the film\",Crime,5\n"
                 "u1,i1,2024-01-01T00:00:00Z,Alien,Sci-Fi,2\n"
                 "u1,i2,2024-01-03T00:00:00Z,,,4\n")
    d = load_interactions(f, user_col="who", item_col="what", time_col="when", text_cols=["title", "genre"])
    assert [(e.user, e.item) for e in d.events] == [("u1", "i1"), ("u2", "i2"), ("u1", "i2")]  # sorted by time
    assert d.events[0].ts == pytest.approx(1704067200.0)
    assert d.texts == {"i2": "Heat, the film. Crime", "i1": "Alien. Sci-Fi"}
    rated = load_interactions(f, user_col="who", item_col="what", time_col="when", rating_col="stars", min_rating=4)
    assert [e.item for e in rated.events] == ["i2", "i2"] and rated.texts == {"i2": "i2"}  # no text: the id


def test_tsv_loader_typed_headers_indices_and_item_file(tmp_path):
    f = tmp_path / "x.inter"
    f.write_text("user_id:token\titem_id:token\ttimestamp:float\n7\t1\t30\n8\t2\t10\n")
    items = tmp_path / "x.item"
    items.write_text('item_id:token\tname:token_seq\n1\tThe "Thing\n2\tDune\n3\tNever rated\n')
    d = load_interactions(f, user_col="USER_ID", item_col="item_id", time_col="timestamp", items_path=items,
                          items_text_cols=["name"])
    assert [e.item for e in d.events] == ["2", "1"] and d.texts["1"] == 'The "Thing'
    assert d.items == ["1", "2", "3"]  # the whole catalog, rated or not
    g = tmp_path / "plain.txt"
    g.write_text("a;x;5\nb;y;3\n")
    d = load_interactions(g, sep=";", header=False, user_col=0, item_col=1, time_col=2)
    assert [(e.user, e.item, e.ts) for e in d.events] == [("b", "y", 3.0), ("a", "x", 5.0)]
    with pytest.raises(ValueError, match="no column 'user'"):
        load_interactions(f)


@pytest.mark.skipif(importlib.util.find_spec("recbole") is None, reason="recbole wheel (data only) not installed")
def test_movielens_from_the_recbole_wheel():
    d = load_movielens()
    assert len(d.events) == 100_000 and len(d.items) == 1682 and len({e.user for e in d.events}) == 943
    assert d.texts["1"] == "Toy Story (1995). Animation, Children's, Comedy"
    assert all(a.ts <= b.ts for a, b in zip(d.events, d.events[1:]))


# -- the co-engagement index Ripple gained for this evaluation ------------------------------------------
def test_coengagement_is_bounded_and_forgets_the_least_recent_posts():
    co = CoEngagement(window=2, max_neighbours=3, max_posts=5)
    co.learn("a", [])
    for i in range(10):
        co.learn(f"p{i}", ["a"])
    assert len(co) == 5 and "a" not in co.scores(["p9"], [1.0])  # "a" evicted, its pairs skipped
    co = CoEngagement(window=1, max_neighbours=100)
    for p in ("x", "y", "z"):
        co.learn(p, [])
    co.learn("z", ["x", "y"])  # only the newest previous post is paired
    assert co.scores(["z"], [1.0]).keys() == {"y"}


# -- the command line ---------------------------------------------------------------------------------
def test_ripple_eval_recs_command_on_a_tiny_tsv(tmp_path, monkeypatch, capsys):
    import ripple.eval_recs as eval_recs
    from ripple.cli import main as cli

    monkeypatch.setattr(eval_recs, "load_embedder", lambda *a, **kw: BagOfWords())  # no model download
    data = stream(n_users=24)
    f = tmp_path / "events.tsv"
    f.write_text("who\tmovie\twhen\ttitle\n" + "".join(
        f"{e.user}\t{e.item}\t{e.ts:.0f}\t{data.texts[e.item]}\n" for e in data.events))
    png = tmp_path / "hr.png"
    rc = cli(["eval", "recs", "--events", str(f), "--user-col", "who", "--item-col", "movie", "--time-col", "when",
              "--text-cols", "title", "-k", "5", "--window", "20", "--plot", str(png), "--report-after", "60",
              "--no-progress", "--pop-half-life-days", "inf"])
    out = capsys.readouterr().out
    assert rc == 0 and png.is_file() and png.stat().st_size > 1000
    assert "144 events (144 scored), 24 users, 32 items" in out  # only items with events: no item file
    for name in ("Ripple", "popularity", "ISGD", "FunkMF"):
        assert re.search(rf"^{name}\s+0\.\d{{4}}\s+0\.\d{{4}}\s+\d+", out, re.M), name
    assert "x popularity" in out and "events after the first 60 only (84 scored)" in out


def test_ripple_eval_recs_command_reports_a_bad_file(tmp_path, monkeypatch, capsys):
    import ripple.eval_recs as eval_recs
    from ripple.cli import main as cli

    monkeypatch.setattr(eval_recs, "load_embedder", lambda *a, **kw: BagOfWords())
    f = tmp_path / "events.csv"
    f.write_text("user,item,time\nu1,i1,1\n")
    assert cli(["eval", "recs", "--events", str(f), "--no-progress", "--plot", str(tmp_path / "x.png")]) == 2
    assert "no column 'timestamp'" in capsys.readouterr().err


def test_transitions_recommend_what_came_next_and_ease_what_co_occurs():
    from ripple.eval_baselines import ItemTransitions, PeriodicEASE

    items = ["a", "b", "c", "d", "e"]
    chain = ItemTransitions(items)
    for user in ("u1", "u2", "u3"):
        chain.learn(user, "a", 0.0)
        chain.learn(user, "c", 1.0)
    chain.learn("u9", "e", 0.0)
    chain.learn("u9", "e", 1.0)
    chain.learn("new", "a", 2.0)
    assert chain.recommend("new", 1, 3.0) == ["c"]  # after a came c, although e is as popular

    ease = PeriodicEASE(items, refit_every=6)
    for user in ("u1", "u2", "u3"):
        ease.learn(user, "b", 0.0)
        ease.learn(user, "d", 1.0)
    assert ease.B is not None and ease.B[1, 1] == 0.0
    ease.learn("new", "b", 2.0)
    assert ease.recommend("new", 1, 3.0) == ["d"]
    assert not PeriodicEASE(["x"] * 10, refit_every=1, max_items=5).enabled


def test_the_learned_blend_starts_as_the_hand_blend_and_moves_towards_what_users_engage():
    from processors.learned_blend import LearnedBlend

    prior = {"similarity": 0.3, "popularity": 0.5, "factors": 0.3}
    blend = LearnedBlend(prior, learning_rate=0.1, min_examples=20)
    assert blend.weights() == prior  # no feedback yet: the hand blend
    for _ in range(200):  # users engage the popular item of their lists, never the similar one
        blend.learn([{"similarity": 0.9, "popularity": 0.1}, {"similarity": 0.1, "popularity": 0.9}], 1)
    w = blend.weights()
    assert w["popularity"] > prior["popularity"] and w["similarity"] < prior["similarity"]
    assert w["factors"] == pytest.approx(prior["factors"], abs=0.01)  # no evidence: stays near the prior
    assert all(v >= 0 for v in w.values())


def test_ripple_with_a_learned_blend_updates_its_ranking_weights_from_the_replay():
    data = stream(n_users=40)
    emb = BagOfWords().embed([data.texts[i] for i in data.items])
    ripple = RippleSystem(data.items, emb, eval_config(len(data.items)), t0=0.0, learn_blend=True)
    blend = ripple.svc.blend
    blend.model.min_examples = 50
    configured = ripple.svc.config.rank
    replay(data.events, [ripple], k=10, progress=False)
    assert blend.lists > 100 and blend.rank_config(configured) != configured
