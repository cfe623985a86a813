"""A reader of ``ripple serve`` for back-ends (standard library only).

    client = RecommendationsClient("http://ripple-serve:8080")
    client.recommendations("u1")["items"]      # newest list, or trending for a user never seen
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request


class RecommendationsClient:
    def __init__(self, base_url: str, *, timeout_s: float = 2.0):
        self.base_url, self.timeout_s = base_url.rstrip("/"), timeout_s

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self.base_url + path, timeout=self.timeout_s) as response:
            return json.load(response)

    def recommendations(self, user_id: str) -> dict:
        """``{"user_id", "source": "personal"|"trending", "items", "generated_at", "age_s", "based_on_events"}``."""
        return self._get(f"/v1/users/{urllib.parse.quote(user_id, safe='')}/recommendations")

    def trending(self, window: str | None = None) -> dict:
        """``{"window", "posts", "authors", "generated_at", "age_s"}``."""
        return self._get("/v1/trending" + (f"?window={urllib.parse.quote(window)}" if window else ""))
