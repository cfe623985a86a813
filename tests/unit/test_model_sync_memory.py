"""Model sync and snapshots on the in-memory broker: a worker that starts from the snapshot plus
the deltas after its checkpoint holds exactly what the running workers learnt, nothing twice."""

from __future__ import annotations

import asyncio
import random

import numpy as np

from processors.events import Engagement, Post
from processors.item_state import ItemState
from processors.profiles import UserProfile
from processors.recommender import Recommender, RecommenderConfig
from streams.memory_broker import MemoryBroker, MemoryIO
from streams.model_sync import CHECKPOINT_KEY, ModelSync

POSTS = [f"p{i}" for i in range(20)]


def _recommender() -> Recommender:
    rec = Recommender(dim=4, config=RecommenderConfig(negatives=0), clock=lambda: 1e6)
    emb = np.random.default_rng(0).normal(size=(len(POSTS), 4)).astype(np.float32)
    rec.on_posts([Post(p, f"a{i}", "", 0.0) for i, p in enumerate(POSTS)], emb)
    return rec


class Node:
    """A worker's model sync, driven step by step: its item state, or the ``parts`` given."""

    def __init__(self, broker: MemoryBroker, parts=None):
        self.rec = _recommender()
        self.sync = ModelSync(MemoryIO(broker), parts or [ItemState(self.rec)], "sync", "state", 2, interval_s=1.0,
                              snapshot_interval_s=1.0, transactional_id="mem-model-state")
        self.profiles: dict[str, UserProfile] = {}

    async def start(self) -> None:
        self.sync.producer = self.sync.io.producer()
        await self.sync.producer.start()
        self.consumer = self.sync.io.consumer(group_id=None, isolation_level="read_committed")
        await self.consumer.start()
        await self.sync._restore(self.consumer)
        await self.hear()

    async def hear(self) -> None:
        self.sync._apply_batch(await self.consumer.getmany(timeout_ms=0, max_records=10_000))

    def learn(self, events) -> None:
        for ev in events:
            self.rec.on_engagement(ev, self.profiles.setdefault(ev.user_id, UserProfile(ev.user_id)))


def _events(seed: int, n: int = 150) -> list[Engagement]:
    rng = random.Random(seed)
    return [Engagement("like", f"u{seed}-{rng.randrange(8)}", POSTS[min(int(rng.paretovariate(1.2)) - 1, 19)],
                       ts=1000.0 + seed * 1000 + i) for i in range(n)]


def _counts(rec: Recommender):
    return ({p: rec.coengagement.item_state(p) for p in POSTS},
            [round(rec.catalog.popularity_of(p, 1e5), 9) for p in POSTS])


def test_a_new_worker_starts_from_snapshot_plus_later_deltas_without_counting_twice():
    async def scenario():
        broker = MemoryBroker()
        broker.create_topic("sync", 2)
        broker.create_topic("state", 2)
        a, b = Node(broker), Node(broker)
        await a.start()
        await b.start()
        alone = _recommender()
        batches = [_events(s) for s in range(1, 6)]
        for ev in batches:
            alone_profiles: dict = {}
            for e in ev:
                alone.on_engagement(e, alone_profiles.setdefault(e.user_id, UserProfile(e.user_id)))

        async def exchange():
            await a.sync.publish()
            await b.sync.publish()
            await a.hear()
            await b.hear()

        a.learn(batches[0])
        b.learn(batches[1])
        await exchange()
        a.learn(batches[2])  # in the snapshot, sent with it
        await a.sync.snapshot()
        a.learn(batches[3])
        b.learn(batches[4])
        await exchange()

        c = Node(broker)
        await c.start()
        assert c.sync.restored > 0
        assert _counts(c.rec) == _counts(a.rec) == _counts(b.rec) == _counts(alone)
        latest = await MemoryIO(broker).latest_values("state", range(2))
        assert CHECKPOINT_KEY in latest

    asyncio.run(scenario())


def test_replies_and_comment_authors_reach_every_worker_and_survive_a_restart():
    from processors.events import Engagement as Ev
    from processors.replies import ReplySuggester
    from processors.reply_bank import ResponseBank
    from processors.reply_state import ReplyState

    def node(broker):
        replies = ReplySuggester(ResponseBank(min_users=3))
        return replies, Node(broker, [ReplyState(replies)])

    def comment(user, cid, reply_to=None, text="Well done, congratulations"):
        return Ev("comment", user, "p1", ts=10.0, text=text, comment_id=cid, reply_to=reply_to)

    async def scenario():
        broker = MemoryBroker()
        broker.create_topic("sync", 2)
        broker.create_topic("state", 2)
        (ra, a), (rb, b) = node(broker), node(broker)
        await a.start()
        await b.start()
        vec = np.zeros(4, dtype=np.float32)
        ra.on_comment(comment("alice", "c1", text="I finally finished my first marathon"), vec, 0.0, post_author="x")
        ra.on_comment(comment("bob", "c2", reply_to="c1"), vec, 0.0, post_author="x")
        ra.on_comment(comment("carol", "c3", reply_to="c1"), vec, 0.0, post_author="x")
        await a.sync.publish()
        await b.hear()
        # worker b reads a reply to a comment worker a read: it knows the recipient
        assert rb.directory.author_of("c1") == "alice"
        # the third distinct user of the reply writes on worker b: the reply is admitted there
        rb.on_comment(comment("dave", "c4", reply_to="c1"), vec, 0.0, post_author="x")
        assert [e.text for e in rb.bank.entries() if e.source == "learned"] == ["Well done congratulations"]
        await b.sync.snapshot()
        rc, c = node(broker)
        await c.start()
        assert rc.directory.author_of("c1") == "alice" and rc.directory.author_of("c4") == "dave"
        learned = [e for e in rc.bank.entries() if e.source == "learned"]
        assert [(e.text, e.count) for e in learned] == [("Well done congratulations", 3.0)]
        assert "Well done congratulations" in rc.bank.pending_texts()  # to be embedded before it is suggested

    asyncio.run(scenario())


def test_a_worker_that_starts_writing_snapshots_writes_every_item_it_holds():
    async def scenario():
        broker = MemoryBroker()
        broker.create_topic("sync", 2)
        broker.create_topic("state", 2)
        a = Node(broker)
        await a.start()
        a.learn(_events(1))
        a.sync._not_writing()  # another worker wrote the snapshot: what changed is forgotten ...
        assert all(not p.changed for p in a.sync.parts)
        await a.sync.snapshot()  # ... so taking over, it writes everything it holds
        latest = await MemoryIO(broker).latest_values("state", range(2))
        items = {k for k, v in latest.items() if k in POSTS and v is not None}
        engaged = {e.post_id for e in _events(1)}
        assert engaged <= items
        a.learn(_events(2, n=5))
        await a.sync.snapshot()  # and then only what changed
        assert a.sync.full_next is False

    asyncio.run(scenario())


def test_the_learnt_blend_reaches_every_worker_and_survives_a_restart():
    """Lists labelled on two workers make one blend on both, through model sync; a worker that
    starts later reads it back from the snapshot plus the deltas after it."""
    from processors.blend_learning import BlendLearner
    from processors.learned_blend import FEATURES

    prior = {f: 0.5 for f in FEATURES}

    def teach(learner, user, favourite, n):
        for i in range(n):
            learner.shown(user, [{"post_id": p, "reasons": {"popularity": 0.9 if p == favourite else 0.1}}
                                 for p in ("x", "y")], now=float(i))
            learner.engaged(user, favourite, ts=float(i))

    async def scenario():
        broker = MemoryBroker()
        broker.create_topic("sync", 2)
        broker.create_topic("state", 2)
        la, lb = BlendLearner(prior, min_lists=1), BlendLearner(prior, min_lists=1)
        a, b = Node(broker, [la]), Node(broker, [lb])
        await a.start()
        await b.start()
        teach(la, "u1", "x", 30)
        teach(lb, "u2", "y", 10)
        await a.sync.publish()
        await b.sync.publish()
        await a.hear()
        await b.hear()
        assert la.lists == lb.lists == 40
        assert all(abs(la.model.coef[f] - lb.model.coef[f]) < 1e-12 for f in FEATURES)
        await a.sync.snapshot()
        teach(lb, "u3", "y", 5)  # after the snapshot: reaches a new worker as a delta
        await b.sync.publish()
        lc = BlendLearner(prior, min_lists=1)
        c = Node(broker, [lc])
        await c.start()
        await b.hear()
        assert lc.lists == lb.lists == 45
        assert all(abs(lc.model.coef[f] - lb.model.coef[f]) < 1e-12 for f in FEATURES)

    asyncio.run(scenario())
