import math
import random
from collections import defaultdict

import numpy as np

from processors.co_engagement import CoEngagement


def _reference_co_scores(histories, recent, weights, window):
    """Co-engagement scores the slow obvious way, from the users' histories."""
    n, c = defaultdict(float), defaultdict(float)
    for history in histories:
        for i, post in enumerate(history):
            n[post] += 1
            for other in dict.fromkeys(history[max(0, i - window):i]):
                if other != post:
                    c[post, other] += 1
                    c[other, post] += 1
    acc = defaultdict(float)
    for r, w in zip(recent, weights):
        for (a, b), cnt in c.items():
            if a == r:
                acc[b] += w * cnt / math.sqrt(n[r])
    return {q: s / math.sqrt(n[q]) for q, s in acc.items()}


def test_vectorised_coengagement_equals_the_plain_sum():
    rng = random.Random(11)
    posts = [f"p{i}" for i in range(40)]
    co = CoEngagement(window=5, max_neighbours=1000)
    histories = [[] for _ in range(30)]
    for _ in range(600):  # users engage in an interleaved order, as on the stream
        h = histories[rng.randrange(30)]
        post = rng.choice(posts)
        co.learn(post, h)
        h.append(post)
    recent, weights = ["p3", "p7", "p11"], [1.0, 0.8, 0.64]
    got, want = co.scores(recent, np.array(weights)), _reference_co_scores(histories, recent, weights, 5)
    assert set(got) == set(want) and len(got) == len(want)
    for q in want:
        assert abs(got[q] - want[q]) < 1e-9
    np.testing.assert_allclose(got.take(["p1", "nope", "p2"]), [want.get("p1", 0.0), 0.0, want.get("p2", 0.0)])
    best = got.top(5)
    assert sorted(best, key=got.get, reverse=True) == sorted(want, key=want.get, reverse=True)[:5]


def test_forgotten_posts_leave_no_stale_pairs_through_compaction():
    co = CoEngagement(window=3, max_posts=3)
    for post in ["a", "b", "c", "d", "e"] * 20:  # each new post evicts the least recently engaged
        co.learn(post, ["a", "b", "c", "d", "e"])
    assert len(co) == 3
    assert len(co._post_of) <= 2 * 3 + 64  # slots compacted, not growing with every post ever seen
    s = co.scores(["e"], [1.0])
    assert set(s) <= {"c", "d"} and s  # only live posts score
    co.learn("a", [])  # "a" comes back as a new post with no pairs from its earlier life
    assert "a" not in co.scores(["e"], [1.0])


def _masked_co_scores(co, recent, weights):
    """``CoEngagement.scores``'s figures the direct way, from its state: a scaled count array per
    post, one ``bincount``, then live slots divided by sqrt(n) and forgotten ones zeroed."""
    idx, vals = [], []
    for post_id, w in zip(recent, weights):
        s = co._slot_of.get(post_id)
        if s is None or w == 0 or not len(co._neighbours[s]):
            continue
        nb = co._neighbours[s]
        idx.append(np.array(nb.idx, dtype=np.int64))
        vals.append(np.array(nb.cnt) * (float(w) / math.sqrt(co._engagements[s])))
    n = co._engagements[: len(co._post_of)]
    if not idx:
        return np.zeros(len(n))
    acc = np.bincount(np.concatenate(idx), weights=np.concatenate(vals), minlength=len(n))
    live = n > 0
    acc[live] /= np.sqrt(n[live])
    acc[~live] = 0.0
    return acc


def test_coengagement_scores_are_bit_identical_to_the_direct_sum_through_forgetting():
    """Scores (as a mapping, ``take`` and ``over``) equal the direct computation bit for bit while
    posts are forgotten (their slots dead, still named by others' pairs) and slots compacted; a
    vector read after later engagements moved the slots reads the new slots, as ever."""
    rng = random.Random(8)
    posts = [f"p{i}" for i in range(60)]
    co = CoEngagement(window=4, max_neighbours=6, max_posts=25)
    histories: list[list[str]] = [[] for _ in range(12)]
    ids = posts + ["never"]
    held = None  # (vector, its figures by slot) from an earlier step
    for step in range(1500):
        h = histories[rng.randrange(12)]
        post = rng.choice(posts[: 20 + step // 30])  # new posts keep arriving: old ones are forgotten
        co.learn(post, h)
        h.append(post)
        if step % 25:
            continue
        recent = list(dict.fromkeys(reversed(h)))[:6] + ["never"]
        weights = 0.8 ** np.arange(len(recent))
        got, want = co.scores(recent, weights), _masked_co_scores(co, recent, weights)
        slot = [co._slot_of.get(p, -1) for p in ids]
        by_post = np.array([want[s] if s >= 0 else 0.0 for s in slot])
        assert got.over(ids, ("catalog", 1)).tobytes() == by_post.tobytes(), step
        assert got.take(ids).tobytes() == by_post.tobytes(), step
        live = {co._post_of[s] for s in np.flatnonzero(want > 0).tolist()}
        assert set(got) == live and len(got) == len(live) and bool(got) == bool(live), step
        assert all(got[p] == want[co._slot_of[p]] for p in live), step
        # several users at once (one with a zero weight, one with nothing known): each row bit for bit
        recents = [recent, list(dict.fromkeys(reversed(histories[(step // 25) % 12])))[:6], ["never"], []]
        weights_of = [weights, np.array([1.0, 0.0, 0.5, 0.25, 0.1, 0.3])[: len(recents[1])], np.ones(1), np.ones(0)]
        keys, values = co.over_many(recents, weights_of, ids, ("catalog", 1))
        assert (np.diff(keys) > 0).all() and (values != 0).all()  # sorted, unique, the non-zero pairs only
        rows = np.zeros(4 * len(ids))
        rows[keys] = values
        for row, r, w in zip(rows.reshape(4, len(ids)), recents, weights_of):
            assert row.tobytes() == co.scores(r, w).over(ids, ("catalog", 1)).tobytes(), step
        if held is not None:  # slots have changed since
            vec, figures = held
            stale = np.array([figures[s] if 0 <= s < figures.size else 0.0 for s in slot])
            assert vec.over(ids, ("catalog", 1)).tobytes() == stale.tobytes(), step
        held = (got, want)
    assert co._engagements.size and len(co) == 25  # posts were forgotten along the way


def test_coengagement_learning_equals_a_plain_dict_reference_with_pruning():
    """Each post's neighbours (which, their counts and their order, the order ties and sums
    follow) equal a plain-dict model of the rule: every engagement pairs the post with each
    distinct one of the user's ``window`` previous posts both ways; a list grown past
    ``max_neighbours + max(8, max_neighbours // 4)`` keeps its ``max_neighbours`` strongest,
    strongest first, ties in list order."""
    window, most = 4, 6
    limit = most + max(8, most // 4)
    co = CoEngagement(window=window, max_neighbours=most)
    ref: dict[str, dict[str, float]] = {}

    def bound(d):
        if len(d) > limit:
            kept = sorted(d.items(), key=lambda kv: -kv[1])[:most]  # sorted is stable: list order among ties
            d.clear()
            d.update(kept)

    rng = random.Random(5)
    posts = [f"p{i}" for i in range(50)]
    histories = [[] for _ in range(20)]
    for _ in range(3000):
        h, post = histories[rng.randrange(20)], rng.choice(posts)
        co.learn(post, h)
        mine = ref.setdefault(post, {})
        for other in dict.fromkeys(h[-window:]):
            if other == post:
                continue
            mine[other] = mine.get(other, 0.0) + 1.0
            theirs = ref[other]
            theirs[post] = theirs.get(post, 0.0) + 1.0
            bound(theirs)
        bound(mine)
        h.append(post)
    pruned = 0
    for post, want in ref.items():
        slots, counts = co._neighbours[co._slot_of[post]].arrays()
        assert [(co._post_of[s], c) for s, c in zip(slots.tolist(), counts.tolist())] == list(want.items()), post
        pruned += max(counts.tolist(), default=0) > 1 and len(want) <= limit
    assert pruned  # lists were pruned and counts grew along the way
