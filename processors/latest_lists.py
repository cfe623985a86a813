"""The newest recommendations per user and the newest trends, as ``ripple serve`` answers them.

Plain state, fed record by record from the compacted ``recommendations`` and ``trending``
topics (:mod:`streams.recs_service` does the Kafka reading).  A message is kept as the bytes it
arrived in and parsed only when asked for; a tombstone (``None``) forgets the user.

>>> lists = LatestLists()
>>> lists.put_recommendations("u1", b'{"user_id": "u1", "generated_at": 100.0, "based_on_events": 3, '
...                           b'"items": [{"post_id": "p1", "author_id": "a", "score": 0.9}]}')
>>> a = lists.answer("u1", now=104.0)
>>> a["source"], a["age_s"], a["based_on_events"], [i["post_id"] for i in a["items"]]
('personal', 4.0, 3, ['p1'])
>>> lists.answer("stranger", now=104.0)["source"]
'trending'
"""

from __future__ import annotations

import json

#: the window unknown users' lists come from
COLD_START_WINDOW = "1h"


class LatestLists:
    def __init__(self, cold_start_window: str = COLD_START_WINDOW, k: int = 10):
        self._lists: dict[str, bytes] = {}
        self._trending: dict | None = None
        self.cold_start_window, self.k = cold_start_window, k
        self.unreadable = 0

    def __len__(self) -> int:
        return len(self._lists)

    def put_recommendations(self, user_id: str, value: bytes | None) -> None:
        if value is None:
            self._lists.pop(user_id, None)
        else:
            self._lists[user_id] = value

    def put_trending(self, value: bytes | None) -> None:
        if value is None:
            return
        try:
            doc = json.loads(value)
            if not isinstance(doc.get("windows"), dict):
                raise ValueError("no windows")
        except (ValueError, AttributeError):
            self.unreadable += 1
            return
        self._trending = doc

    def trending(self, window: str | None = None, *, now: float) -> dict | None:
        """The newest trends of ``window`` (default: the cold-start window); ``None``: none yet or
        no such window."""
        doc = self._trending
        if doc is None:
            return None
        name = window or self.cold_start_window
        lists = doc["windows"].get(name)
        if lists is None:
            return None
        return {"window": name, "window_s": lists.get("window_s"), "generated_at": doc.get("generated_at"),
                "age_s": _age(doc.get("generated_at"), now), "as_of": doc.get("as_of"),
                "posts": lists.get("posts", []), "authors": lists.get("authors", [])}

    def windows(self) -> list[str]:
        return list(self._trending["windows"]) if self._trending else []

    def answer(self, user_id: str, *, now: float) -> dict:
        """The user's newest list (``source: personal``), or for a user never recommended to, the
        top posts trending now (``source: trending``; empty before the first trends arrive)."""
        raw = self._lists.get(user_id)
        if raw is not None:
            try:
                doc = json.loads(raw)
                return {"user_id": user_id, "source": "personal", "generated_at": doc.get("generated_at"),
                        "age_s": _age(doc.get("generated_at"), now), "based_on_events": doc.get("based_on_events"),
                        "model_version": doc.get("model_version"), "items": doc.get("items", [])}
            except ValueError:
                self.unreadable += 1
        trends = self.trending(now=now)
        items = [] if trends is None else [
            {"post_id": p["post_id"], "author_id": p.get("author_id"), "score": p["score"]} for p in trends["posts"][:self.k]]
        return {"user_id": user_id, "source": "trending", "window": self.cold_start_window,
                "generated_at": None if trends is None else trends["generated_at"],
                "age_s": None if trends is None else trends["age_s"], "based_on_events": 0, "items": items}


def _age(generated_at, now: float) -> float | None:
    return None if not isinstance(generated_at, (int, float)) else round(max(0.0, now - generated_at), 3)
