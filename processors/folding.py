"""Fold one decoded engagement into its user's profile and the shared models: the per-event
domain step, the same for every way of consuming the engagement topics.

The caller owns the profile store and the position: ``source`` names the input partition
(``"<topic>:<partition>"``) and ``offset`` the record, which is what makes a redelivered record
a no-op (see :meth:`processors.profiles.UserProfile.admit`).

Examples
--------
>>> from processors.events import Engagement
>>> from processors.recommender import Recommender
>>> rec = Recommender(dim=4)
>>> p = UserProfile("u1")
>>> like = Engagement("like", "u1", "p1", 10.0)
>>> fold(rec, p, like, "likes:0", 7).outcome, p.events
('applied', 1)
>>> fold(rec, p, like, "likes:0", 7).outcome, p.events  # the same record again: a replay
('replay', 1)
"""

from __future__ import annotations

from dataclasses import dataclass

from processors.events import Engagement, Follow
from processors.profiles import UserProfile
from processors.recommender import Recommender
from processors.sentiment_protocol import SentimentAnalyzer, engagement_weight


@dataclass(frozen=True)
class Folded:
    """What :func:`fold` did.

    ``outcome``: ``"applied"``, ``"replay"`` (that position was already in the profile) or
    ``"duplicate"`` (a producer retry: the same ``event_id`` at a new offset).
    ``due_now``: the throttle allows a recommendation now.  ``late``: a later offset of the
    same source was applied first (out-of-order delivery).  ``factor_updates``: updates the
    factor model made.
    """

    outcome: str
    due_now: bool = False
    late: bool = False
    factor_updates: int = 0


def fold(recommender: Recommender, profile: UserProfile, ev: Engagement | Follow, source: str, offset: int, *,
         sentiment: SentimentAnalyzer | None = None, dedup_limit: int = 100) -> Folded:
    """Apply ``ev`` (record ``offset`` of ``source``) to ``profile`` and ``recommender``'s models.

    A replayed or duplicate record changes nothing but the profile's record of positions.
    """
    late = offset < profile.positions.get(source, -1)
    skip = profile.admit(source, offset, ev.event_id, dedup_limit=dedup_limit)
    if skip is not None:
        return Folded(skip, late=late)
    factors = recommender.factors
    updates = factors.updates if factors is not None else 0
    if isinstance(ev, Follow):
        due_now = recommender.on_follow(ev, profile)
    else:
        weight = None
        if ev.kind == "comment" and ev.text and sentiment is not None:
            score = sentiment.score(ev.text)
            profile.apply_sentiment(score)
            weight = engagement_weight(ev.kind, score)  # a negative comment is not a "like"
        due_now = recommender.on_engagement(ev, profile, weight=weight)
    return Folded("applied", due_now=due_now, late=late,
                  factor_updates=(factors.updates - updates) if factors is not None else 0)
