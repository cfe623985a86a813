"""``ImplicitMF`` queues its updates and applies them in vectorised rounds: the factors must be
those of river's ``FunkMF.learn_one`` called pair by pair, evictions included."""

import random
from collections import OrderedDict

import numpy as np
import pytest
from river import optim, reco

from models.factors import ImplicitMF, ItemLatents


def _sequential(ops, n_factors, max_users, max_items):
    """What ImplicitMF did before learning was batched: learn_one per pair, LRU after each."""
    ref = reco.FunkMF(n_factors=n_factors, optimizer=optim.SGD(0.05), l2=0.01,
                      initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=42), seed=42)
    ref.i_latents = ItemLatents(n_factors, seed=42)
    users, items = OrderedDict(), OrderedDict()

    def touch(order, key, limit, latents):
        order[key] = None
        order.move_to_end(key)
        while len(order) > limit:
            latents.pop(order.popitem(last=False)[0], None)

    for user, item, negatives in ops:
        ref.learn_one(user, item, 1.0)
        touch(users, user, max_users, ref.u_latents)
        touch(items, item, max_items, ref.i_latents)
        for neg in negatives:
            if neg != item:
                ref.learn_one(user, neg, 0.0)
                touch(items, neg, max_items, ref.i_latents)
    return ref


@pytest.mark.parametrize("read_every", [1, 7, 251])  # pair by pair (few queued), short rounds, long rounds
def test_batched_learning_equals_river_learn_one_pair_by_pair(read_every):
    rng = random.Random(3)
    item_ids = [f"p{i}" for i in range(120)]
    user_ids = [f"u{i}" for i in range(80)]
    # skewed items (long dependency chains through popular posts), a user's likes in bursts
    ops = [(rng.choice(user_ids), item_ids[min(int(rng.paretovariate(1.1)), 119)], rng.sample(item_ids, 3))
           for _ in range(4000)]
    mf = ImplicitMF(n_factors=8, max_users=60, max_items=100)
    for k, (user, item, negatives) in enumerate(ops):
        mf.learn(user, item, negatives)
        if k % read_every == 0:  # reads in between flush the queue
            mf.scores(user, item_ids[:4])
    ref = _sequential(ops, 8, 60, 100)
    got = mf.model
    assert set(got.u_latents) == set(ref.u_latents) and set(got.i_latents) == set(ref.i_latents)
    for mine, theirs in ((got.u_latents, ref.u_latents), (got.i_latents, ref.i_latents)):
        for key, vec in theirs.items():
            np.testing.assert_allclose(mine[key], vec, rtol=0, atol=1e-12)
    assert mf.updates == ref.u_optimizer.n_iterations == got.u_optimizer.n_iterations


def test_scores_see_every_queued_update():
    mf = ImplicitMF(n_factors=4, seed=1)
    before = mf.scores("u", ["a", "b"])  # unknown user: zeros, nothing queued
    for _ in range(30):
        mf.learn("u", "a", negatives=["b"])
    s = mf.scores("u", ["a", "b"])
    assert before.tolist() == [0.0, 0.0]
    assert s[0] > s[1]
    assert s[0] == pytest.approx(float(mf.model.u_latents["u"] @ mf.model.i_latents["a"]), rel=1e-12)
