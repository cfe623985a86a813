"""Ripple sharded over workers in the replay: with a sync after every event each worker holds the
item-side counts one worker would; with no sync it holds only its own users' part."""

import random

import numpy as np
import pytest

from ripple.eval_ripple import RippleSystem, eval_config
from ripple.eval_sharded import ShardedRipple, workers_name

ITEMS = [f"i{n}" for n in range(30)]
EMB = np.random.default_rng(0).normal(size=(len(ITEMS), 8)).astype(np.float32)


def _events(n=400, seed=2):
    rng = random.Random(seed)
    return [(f"u{rng.randrange(25)}", ITEMS[min(int(rng.paretovariate(1.1)) - 1, len(ITEMS) - 1)], 1000.0 + i)
            for i in range(n)]


def _replay(system, events):
    for user, item, ts in events:
        system.recommend(user, 10, ts)
        system.learn(user, item, ts)


def _counts(svc):
    return {i: svc.coengagement.item_state(i) for i in ITEMS}, [round(svc.catalog.popularity_of(i, 2e3), 9) for i in ITEMS]


@pytest.mark.parametrize("interval, same", [(0.001, True), (None, False)])
def test_each_worker_holds_what_one_worker_learnt_only_when_synced(interval, same):
    config = eval_config(len(ITEMS))
    alone = RippleSystem(ITEMS, EMB, config)
    sharded = ShardedRipple(ITEMS, EMB, config, 3, interval, stream_rate=1000.0)
    events = _events()
    _replay(alone, events)
    _replay(sharded, events)
    for shard in sharded.shards:
        assert (_counts(shard.svc) == _counts(alone.svc)) is same
    traffic = sharded.traffic() if interval is not None else None
    assert traffic is None or (traffic["messages"] > 0 and traffic["bytes"] > traffic["messages"])


def test_names_say_workers_and_sync():
    assert [workers_name(*a) for a in ((1, None), (2, 0.5), (8, None))] == ["Ripple", "Ripple x2 sync 0.5s",
                                                                              "Ripple x8 no sync"]
