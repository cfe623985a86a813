"""``ripple eval languages``: does the sentence model understand Chinese as it understands English?

On ``ripple/data/bilingual_themes.json`` (posts on six themes, each in Chinese and in English,
written for Ripple) it measures per language:

* **theme separation**: the probability that a same-theme pair of posts scores a higher cosine
  than a cross-theme pair (the AUC; 0.5 is chance);
* **nearest same theme**: posts whose nearest other post has their theme;

and across languages, how often a post's nearest text in the other language is its translation.

>>> import numpy as np
>>> theme_separation(np.eye(3, dtype=np.float32), ["a", "a", "b"])
0.5
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Callable, Sequence

import numpy as np


def load_bilingual() -> dict[str, list[dict[str, str]]]:
    doc = json.loads(resources.files("ripple").joinpath("data", "bilingual_themes.json").read_text("utf-8"))
    return doc["themes"]


def theme_separation(vectors: np.ndarray, themes: Sequence[str]) -> float:
    """P(cos of a same-theme pair > cos of a cross-theme pair), ties counting half."""
    sims = vectors @ vectors.T
    n = len(themes)
    same, cross = [], []
    for i in range(n):
        for j in range(i + 1, n):
            (same if themes[i] == themes[j] else cross).append(sims[i, j])
    s, c = np.asarray(same)[:, None], np.asarray(cross)[None, :]
    return float((s > c).mean() + 0.5 * (s == c).mean())


def nearest_same_theme(vectors: np.ndarray, themes: Sequence[str]) -> int:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return int(sum(themes[int(np.argmax(row))] == t for row, t in zip(sims, themes)))


def evaluate(embed: Callable[[Sequence[str]], np.ndarray]) -> dict:
    data = load_bilingual()
    themes = [t for t, posts in data.items() for _ in posts]
    zh = embed([p["zh"] for posts in data.values() for p in posts])
    en = embed([p["en"] for posts in data.values() for p in posts])
    cross = zh @ en.T
    return {
        "posts": len(themes),
        "zh": {"separation": theme_separation(zh, themes), "nearest_same_theme": nearest_same_theme(zh, themes)},
        "en": {"separation": theme_separation(en, themes), "nearest_same_theme": nearest_same_theme(en, themes)},
        "translation_nearest": int((np.argmax(cross, axis=1) == np.arange(len(themes))).sum()),
        "translation_cosine": float(np.diag(cross).mean()),
    }


def format_summary(model: str, r: dict) -> str:
    n = r["posts"]
    return (f"{model}: theme separation zh {r['zh']['separation']:.3f} / en {r['en']['separation']:.3f}; "
            f"nearest post same theme zh {r['zh']['nearest_same_theme']}/{n}, en {r['en']['nearest_same_theme']}/{n}; "
            f"translation nearest {r['translation_nearest']}/{n} (mean cosine {r['translation_cosine']:.3f})")
