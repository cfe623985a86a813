"""``ripple serve``'s HTTP answers, fed by hand (no broker): personal lists, the trending
fallback, readiness, metrics without user ids, pseudonymised keys."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp.test_utils import TestClient, TestServer

from processors.privacy import pseudonym
from ripple.settings import Settings
from streams.recs_service import RecommendationsService

TRENDING = {"schema_version": 1, "generated_at": 0.0, "as_of": 0.0, "windows": {
    "1h": {"window_s": 3600.0, "posts": [{"post_id": "hot", "author_id": "a1", "score": 5.0},
                                         {"post_id": "warm", "author_id": "a2", "score": 2.0}],
           "authors": [{"author_id": "a1", "score": 5.0}]},
    "24h": {"window_s": 86400.0, "posts": [{"post_id": "warm", "author_id": "a2", "score": 9.0}], "authors": []}}}


def recs_message(user: str, posts: list[str], events: int, at: float) -> bytes:
    return json.dumps({"schema_version": 1, "user_id": user, "generated_at": at, "based_on_events": events,
                       "model_version": "m", "items": [{"post_id": p, "author_id": "x", "score": 1.0} for p in posts]
                       }).encode()


def ask(service: RecommendationsService, *paths: str) -> list[tuple[int, dict | str]]:
    async def run():
        async with TestClient(TestServer(service.app(read_topics=False))) as client:
            out = []
            for path in paths:
                r = await client.get(path)
                body = await r.json() if r.content_type == "application/json" else await r.text()
                out.append((r.status, body))
            return out

    return asyncio.run(run())


def test_newest_list_per_user_with_its_age_and_events():
    service = RecommendationsService(Settings())
    now = time.time()
    service.lists.put_recommendations("u1", recs_message("u1", ["p1"], 3, now - 60))
    service.lists.put_recommendations("u1", recs_message("u1", ["p2", "p3"], 4, now - 5))
    (status, body), = ask(service, "/v1/users/u1/recommendations")
    assert status == 200 and body["source"] == "personal" and body["based_on_events"] == 4
    assert [i["post_id"] for i in body["items"]] == ["p2", "p3"] and 4 <= body["age_s"] < 60


def test_a_tombstone_forgets_the_user_and_unknown_users_get_the_trending_list():
    service = RecommendationsService(Settings())
    service.lists.put_recommendations("u1", recs_message("u1", ["p1"], 1, time.time()))
    service.lists.put_recommendations("u1", None)
    (status, before), = ask(service, "/v1/users/u1/recommendations")
    assert status == 200 and before["source"] == "trending" and before["items"] == []  # no trends yet
    service.lists.put_trending(json.dumps(TRENDING).encode())
    (_, after), (_, day), (missing, _) = ask(service, "/v1/users/u1/recommendations", "/v1/trending?window=24h",
                                             "/v1/trending?window=1y")
    assert after["source"] == "trending" and [i["post_id"] for i in after["items"]] == ["hot", "warm"]
    assert after["based_on_events"] == 0 and day["posts"][0]["post_id"] == "warm" and missing == 404


def test_ready_only_after_the_topics_were_read_and_metrics_carry_no_user_ids():
    service = RecommendationsService(Settings())
    (not_ready, _), = ask(service, "/readyz")
    service.ready.set()
    service.lists.put_recommendations("alice-123", recs_message("alice-123", ["p1"], 1, time.time()))
    (ready, body), (_, _), (_, metrics) = ask(service, "/readyz", "/v1/users/alice-123/recommendations", "/metrics")
    assert not_ready == 503 and ready == 200 and body["users"] == 1
    assert 'ripple_serve_requests_total{code="200",route="recommendations"} 1.0' in metrics
    assert 'route="readyz"' in metrics and "alice" not in metrics


def test_with_pseudonymised_ids_the_user_is_looked_up_by_pseudonym():
    key = "k" * 32
    service = RecommendationsService(Settings(pseudonymize_key=key))
    hidden = pseudonym(key.encode(), "u1")
    service.lists.put_recommendations(hidden, recs_message(hidden, ["p9"], 2, time.time()))
    (_, body), = ask(service, "/v1/users/u1/recommendations")
    assert body["source"] == "personal" and body["user_id"] == "u1" and body["items"][0]["post_id"] == "p9"
