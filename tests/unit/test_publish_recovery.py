"""A profile whose newest state was never published is owed a message after a restart.

The stream layer records ``published_events`` in the profile it saves; after recovering the
table it hands the profiles back to :meth:`Recommender.resume`, which owes a message to each
profile with ``events > published_events`` — without any new input event.
"""

from processors.events import Engagement
from processors.profiles import UserProfile
from processors.recommender import Recommender, RecommenderConfig
from processors.throttle import Throttle


def _burst(svc: Recommender, user: str, n: int) -> UserProfile:
    """``n`` likes in one throttle interval, marking what the stream layer would save."""
    p = UserProfile(user)
    for i in range(n):
        due = svc.on_engagement(Engagement("like", user, f"p{i}", float(i)), p)
        p.mark("likes:3", i)
        if due:
            p.published_events = p.events
    return p


def test_only_profiles_with_unpublished_state_are_owed_a_message():
    now = [0.0]
    before_crash = Recommender(dim=2, config=RecommenderConfig(min_interval_s=10), clock=lambda: now[0])
    behind = _burst(before_crash, "behind", 4)  # 1 sent, 3 deferred in memory: lost with the worker
    settled = _burst(before_crash, "settled", 1)
    assert (behind.events, behind.published_events) == (4, 1) and not settled.unpublished()

    # the restarted worker has a fresh throttle; the profiles come from the changelog
    restored = [UserProfile.from_dict(p.to_dict()) for p in (behind, settled)]
    after = Recommender(dim=2, config=RecommenderConfig(min_interval_s=10), clock=lambda: now[0])
    assert after.due() == []
    assert after.resume(restored) == 1
    assert after.due() == ["behind"]  # nobody was sent anything by this worker: due at once
    assert after.due() == []  # once


def test_profile_round_trip_keeps_published_events_and_partitions():
    p = UserProfile("u", events=5, published_events=3, positions={"likes:1": 9, "comments:1": 2})
    q = UserProfile.from_dict(p.to_dict())
    assert q == p and q.unpublished() and q.partitions() == {1}
    assert UserProfile.from_dict({"user_id": "old", "events": 2}).published_events == 0  # older changelog records


def test_defer_respects_the_interval_of_a_user_just_sent():
    t = Throttle(min_interval_s=5.0)
    assert t.offer("u", now=0.0)
    t.defer("u")
    assert t.due(now=1.0) == [] and t.due(now=5.0) == ["u"]
