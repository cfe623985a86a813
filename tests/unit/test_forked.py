"""Ranking in a forked child (streams/forked.py): the same messages as ranking in the worker, the
throttle's retries carried back, and a failing or hanging child reported instead of waited for."""

import asyncio
import json
import os
import random
import time

import numpy as np
import pytest

from processors.events import Engagement, Post
from processors.profiles import UserProfile
from ripple.settings import Settings
from streams import wire
from streams.forked import ForkedRanker, ForkFailed, available
from streams.worker import recommender_for

pytestmark = pytest.mark.skipif(not available(), reason="needs os.fork and F_SETPIPE_SZ (Linux)")

NOW = 1_764_000_000.0


def _state(posts: int = 400, users: int = 150, likes: int = 1500):
    """A recommender with ``posts`` embedded posts and ``users`` profiles built from random likes."""
    rec = recommender_for(Settings(), 16)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(posts, 16)).astype(np.float32)
    rec.on_posts([Post(f"p{i}", f"a{i % 30}", "", NOW - 100 + i * 0.01) for i in range(posts)],
                 emb / np.linalg.norm(emb, axis=1, keepdims=True))
    rec.clock = lambda: NOW + 5.0
    r, profiles = random.Random(1), {}
    for _ in range(likes):
        u = f"u{r.randrange(users)}"
        rec.on_engagement(Engagement("like", u, f"p{r.randrange(posts)}", NOW), profiles.setdefault(u, UserProfile(u)))
    return rec, list(profiles.values())


def _stable(doc: dict | bytes) -> dict:
    """The message as a consumer reads it, without its ``rec_id`` (a fresh uuid per message)."""
    doc = json.loads(doc if isinstance(doc, bytes) else wire.dumps(doc))
    return {k: v for k, v in doc.items() if k != "rec_id"}


def _rank(ranker: ForkedRanker, profiles):
    async def go():
        return await ranker.rank(profiles)
    return asyncio.run(go())


def test_child_ranks_as_the_worker_would():
    rec, profiles = _state()
    ranker = ForkedRanker(rec)
    got = _rank(ranker, profiles)  # the factor model's queued updates are applied by rank(), before the fork
    want = rec.recommendations(profiles)
    assert len(got.docs) == len(profiles) and got.elapsed_s > 0 and got.retry == []
    assert [_stable(d) for d in got.docs] == [_stable(d) for d in want]
    assert all(d["items"] for d in want)
    ranker.close()
    assert ranker.forks == 1 and ranker._zombies == []


def test_child_sees_the_state_at_the_fork_not_later_changes():
    rec, profiles = _state()

    ranker = ForkedRanker(rec)

    async def go():
        pending = ranker.rank(profiles[:5])
        before = [_stable(d) for d in rec.recommendations(profiles[:5])]
        for p in profiles[:5]:  # the worker folds on while the child ranks
            for i in range(20):
                rec.on_engagement(Engagement("like", p.user_id, f"p{i}", NOW), p)
        return before, [_stable(d) for d in (await pending).docs]

    before, got = asyncio.run(go())
    ranker.close()
    assert got == before
    assert [_stable(d) for d in rec.recommendations(profiles[:5])] != before  # the likes did change them


def test_retries_of_users_with_unembedded_history_come_back():
    rec, profiles = _state()
    late = UserProfile("late")
    late.apply_engagement("like", "not-embedded-yet", "someone", ts=NOW)
    ranker = ForkedRanker(rec)
    got = _rank(ranker, [profiles[0], late])
    ranker.close()
    assert got.retry == ["late"]


def test_a_result_larger_than_the_pipe_is_read_in_pieces(monkeypatch):
    """The child blocks on a full pipe until the event loop reads it; the pieces join up."""
    monkeypatch.setattr("streams.forked.PIPE_BYTES", 4096)
    rec, profiles = _state()
    ranker = ForkedRanker(rec)
    got = _rank(ranker, profiles)
    ranker.close()
    assert sum(map(len, got.docs)) > 20 * 4096
    assert [_stable(d) for d in got.docs] == [_stable(d) for d in rec.recommendations(profiles)]


def test_queued_factor_updates_are_applied_before_the_fork():
    """In the worker, at the fork, as the child's first score would: not lost with the child's copy."""
    rec, profiles = _state(users=5, likes=20)
    assert rec.factors._pending
    ranker = ForkedRanker(rec)
    _rank(ranker, profiles)
    ranker.close()
    assert not rec.factors._pending


def test_share_follows_the_budget_and_the_time_per_user():
    ranker = ForkedRanker(None, cost_per_user_s=0.0005)
    assert ranker.share(1000, 0.0) == 1000  # no budget: everyone
    assert ranker.share(1000, 0.1) == 256  # 200 users' worth, in whole chunks of 64
    assert ranker.share(100, 0.1) == 100
    assert ranker.share(1000, 1e-9) == 64  # at least one chunk
    for _ in range(30):
        ranker.observe(0.05, 200)  # 250 µs per user
    assert ranker.share(1000, 0.1) == 448


def test_a_cancelled_collection_kills_the_child():
    """The worker stopping mid-batch: the child is killed, not waited for."""
    rec, profiles = _state(users=5, likes=20)
    rec.recommendations = lambda ps: time.sleep(60)
    ranker = ForkedRanker(rec)

    async def go():
        pending = ranker.rank(profiles)
        await asyncio.sleep(0.3)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending

    t0 = time.monotonic()
    asyncio.run(go())
    ranker.close()
    assert time.monotonic() - t0 < 5
    with pytest.raises(ChildProcessError):
        os.waitpid(ranker.child, os.WNOHANG)


@pytest.mark.parametrize("fail,reason", [(lambda ps: 1 / 0, "ZeroDivisionError"),  # reported by the child
                                         (lambda ps: os._exit(3), "unreadable result")],  # died without a word
                         ids=["raises", "dies"])
def test_a_failing_child_is_reported(fail, reason):
    rec, profiles = _state(users=5, likes=20)
    rec.recommendations = fail  # replaced in this process, so in the child's copy too
    ranker = ForkedRanker(rec)
    with pytest.raises(ForkFailed, match=reason):
        _rank(ranker, profiles)
    ranker.close()
    assert ranker.failures == 1 and ranker.usable


def test_a_hanging_child_is_killed_after_its_timeout():
    rec, profiles = _state(users=5, likes=20)
    rec.recommendations = lambda ps: time.sleep(60)
    ranker = ForkedRanker(rec)
    ranker.timeout_s, ranker.cost_per_user_s = 0.5, 0.0
    t0 = time.monotonic()
    with pytest.raises(ForkFailed, match="TimeoutError"):
        _rank(ranker, profiles)
    assert time.monotonic() - t0 < 5
    ranker.close()  # returns at once: the child was killed
    with pytest.raises(ChildProcessError):
        os.waitpid(ranker.child, os.WNOHANG)  # and reaped


def test_failures_in_a_row_make_the_ranker_unusable_and_a_success_resets_them():
    rec, profiles = _state(users=5, likes=20)
    ranker = ForkedRanker(rec)
    good = rec.recommendations
    rec.recommendations = lambda ps: 1 / 0
    for _ in range(2):
        with pytest.raises(ForkFailed):
            _rank(ranker, profiles)
    rec.recommendations = good
    _rank(ranker, profiles)
    assert ranker.failures == 0
    rec.recommendations = lambda ps: 1 / 0
    for _ in range(3):
        with pytest.raises(ForkFailed):
            _rank(ranker, profiles)
    ranker.close()
    assert ranker.failures == 3 and not ranker.usable
