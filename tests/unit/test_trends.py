"""Trends over two windows, shared by workers as exact sums, kept in snapshots, published as
the ``trending`` message."""

from __future__ import annotations

import math

import pytest

from processors.events import validate
from processors.trends import Trends
from streams.trending import trending_message


def test_each_window_decays_with_its_own_time_constant():
    t = Trends({"short": 100.0, "long": 1000.0})
    t.record("old", 1.0, 0.0)
    t.record("new", 1.0, 100.0)
    t.take_docs()
    short, long = t.scores("short"), t.scores("long")
    assert short["old"] == pytest.approx(math.exp(-1)) and long["old"] == pytest.approx(math.exp(-0.1))
    assert short["new"] == long["new"] == pytest.approx(1.0)
    assert [p["post_id"] for p in t.top("short", 2)] == ["new", "old"]


def test_workers_that_exchange_their_docs_hold_the_trends_of_one_worker_that_saw_everything():
    events = [(f"p{i % 7}", 1.0 + i % 3, 10.0 * i) for i in range(60)]
    alone, a, b = Trends(), Trends(), Trends()
    for i, (post, w, ts) in enumerate(events):
        alone.record(post, w, ts)
        (a if i % 2 else b).record(post, w, ts)
        if i % 10 == 9:  # a sync interval
            for doc in a.take_docs():
                b.apply_doc(doc)
            for doc in b.take_docs():
                a.apply_doc(doc)
    alone.take_docs()
    for window in alone.windows:
        assert a.scores(window, now=600.0) == pytest.approx(alone.scores(window, now=600.0))
        assert b.scores(window, now=600.0) == pytest.approx(alone.scores(window, now=600.0))


def test_snapshot_round_trip_and_another_window_configuration_is_left_out():
    t = Trends()
    t.record("p1", 3.0, 50.0)
    t.take_docs()
    records = t.snapshot(t.all_keys())
    back = Trends()
    assert back.restore(records) == 1 and back.scores("24h") == pytest.approx(t.scores("24h"))
    other = Trends({"5m": 300.0})
    assert other.restore(records) == 0
    other.apply_doc({"windows": ["1h", "24h"], "posts": {"p1": [1.0, 1.0, 5.0]}})
    assert other.all_keys() == set()
    with pytest.raises(ValueError):
        Trends().apply_doc({"windows": ["1h", "24h"], "posts": {"p1": [1.0, 5.0]}})


def test_forgetting_keeps_the_strongest_within_the_limit():
    t = Trends(limit=3)
    for i in range(6):
        t.record(f"p{i}", float(i + 1), 100.0)
    t.take_docs()
    assert t.all_keys() == {"p3", "p4", "p5"} and {"p0", "p1", "p2"} <= t.changed


def test_the_trending_message_follows_its_schema_and_sums_authors():
    t = Trends()
    for post, w in [("a1", 2.0), ("a2", 1.0), ("b1", 2.5)]:
        t.record(post, w, 1000.0)
    t.take_docs()
    authors = {"a1": "ann", "a2": "ann", "b1": "bob"}
    doc = trending_message(t, 2, authors.get, now=1005.0)
    assert validate("trending", doc) is None
    day = doc["windows"]["24h"]
    assert [p["post_id"] for p in day["posts"]] == ["b1", "a1"] and day["posts"][0]["author_id"] == "bob"
    assert day["authors"] == [{"author_id": "ann", "score": 3.0}, {"author_id": "bob", "score": 2.5}]
