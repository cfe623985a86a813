"""A small, deterministic social stream for the demo, benchmarks and tests.

Users have one or two favourite themes and mostly engage with posts on those themes, so a
working recommender should surface unseen posts of the same themes.

Examples
--------
>>> s = generate_stream(n_users=5, posts_per_theme=2, engagements_per_user=3, seed=1)
>>> sorted({e["topic"] for e in s.events}) == ["comments", "likes", "posts", "shares"]
True
>>> all(e["value"]["schema_version"] == 1 for e in s.events)
True
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

THEMES: dict[str, list[str]] = {
    "running": [
        "Just finished a half marathon, new personal best!",
        "Morning trail run through the forest, legs are burning",
        "Interval training on the track today: 8 x 400 metres",
        "Which running shoes do you trust for long distance races?",
        "Ran my first 10k without stopping, so proud",
        "Recovery run in the rain, still counts as training",
        "Marathon training week 12: long run of 30 kilometres done",
        "Tips for pacing yourself in your first marathon?",
    ],
    "cooking": [
        "Baked sourdough bread from my own starter this weekend",
        "Homemade pasta with fresh basil and tomato sauce",
        "Trying a new curry recipe with coconut milk and lentils",
        "The secret to crispy roast potatoes is semolina",
        "Slow-cooked beef stew, perfect for a cold evening",
        "My grandmother's apple pie recipe never fails",
        "Fermenting kimchi at home for the first time",
        "Best knife for chopping vegetables quickly?",
    ],
    "programming": [
        "Finally fixed that race condition in our async Python code",
        "Rust's borrow checker taught me to think about ownership",
        "Refactored a 2000 line module into small testable functions",
        "Kafka consumer lag was caused by a slow database call",
        "Writing property-based tests found three bugs in my parser",
        "Debugging a memory leak in a long running service",
        "Type hints made our Python codebase much easier to navigate",
        "Profiling showed the JSON encoder was the bottleneck",
    ],
    "music": [
        "Learning to play jazz chords on the piano",
        "Saw an amazing live concert last night, the drummer was incredible",
        "Recorded my first song in a home studio",
        "Practising guitar scales for an hour every day",
        "This symphony orchestra performance gave me chills",
        "Vinyl records just sound warmer than streaming",
        "Writing lyrics is harder than composing the melody",
        "Our band plays its first gig at the local pub on Friday",
    ],
    "travel": [
        "Hiking in the Alps with breathtaking mountain views",
        "Backpacking through Southeast Asia on a tight budget",
        "Missed my connecting flight but found a lovely hotel",
        "The night train across Europe was an adventure",
        "Exploring ancient ruins and temples in Cambodia",
        "Packing tips for a two week trip with only hand luggage",
        "Road trip along the coast, stopping at every beach",
        "Learning a few words of the local language makes travel better",
    ],
    "pets": [
        "My puppy learned to sit and give paw today",
        "The cat knocked my coffee off the table again",
        "Adopted a rescue dog from the shelter, meet Biscuit",
        "Our parrot keeps imitating the doorbell",
        "Long walk in the park with the dogs this morning",
        "How do you stop a kitten from climbing the curtains?",
        "Vet says my old dog is healthy and happy",
        "The hamster escaped and we found him in a shoe",
    ],
}
_THEME_TEXTS = [t for ts in THEMES.values() for t in ts]  # every theme's sentences, in THEMES' order

COMMENTS = [
    "Love this!",
    "Great post, thanks for sharing",
    "Congratulations, that is a huge achievement!",
    "Haha this made my day",
    "Totally agree with you",
    "Happy birthday, have a great one!",
    "So sorry to hear that, hope things get better",
    "This is so inspiring, well done",
]


@dataclass
class SampleStream:
    """Scripted events in send order, plus the ground truth a test or demo needs."""

    events: list[dict] = field(default_factory=list)  # {"topic", "key", "value"}
    post_text: dict[str, str] = field(default_factory=dict)
    post_theme: dict[str, str] = field(default_factory=dict)
    post_author: dict[str, str] = field(default_factory=dict)
    user_themes: dict[str, list[str]] = field(default_factory=dict)
    engaged: dict[str, set[str]] = field(default_factory=dict)


def generate_stream(
    n_users: int = 20,
    posts_per_theme: int = 8,
    engagements_per_user: int = 6,
    seed: int = 42,
    start_ts: float | None = None,
    lang: str = "en",
) -> SampleStream:
    """Posts first, then engagements: 80% on a user's themes, 20% anywhere.

    Event times are one second apart and end about now (or start at ``start_ts``).  ``lang``:
    ``en`` or ``zh`` (:mod:`processors.sample_texts_zh`: the same themes, written in Chinese).
    """
    from processors.sample_texts_zh import COMMENTS_ZH, THEMES_ZH

    themes_texts, comments = (THEMES, COMMENTS) if lang == "en" else (THEMES_ZH, COMMENTS_ZH)
    rng = random.Random(seed)
    s = SampleStream()
    n_events = len(themes_texts) * posts_per_theme + n_users * engagements_per_user
    ts = time.time() - n_events if start_ts is None else start_ts
    authors = [f"author{i}" for i in range(6)]
    for theme, texts in themes_texts.items():
        for j, text in enumerate(texts[:posts_per_theme]):
            pid = f"{theme}-{j}"
            author = rng.choice(authors)
            s.post_text[pid], s.post_theme[pid], s.post_author[pid] = text, theme, author
            s.events.append(_ev("posts", pid, {"post_id": pid, "author_id": author, "text": text, "ts": ts}))
            ts += 1
    by_theme: dict[str, list[str]] = {}
    for pid, theme in s.post_theme.items():
        by_theme.setdefault(theme, []).append(pid)
    themes = list(themes_texts)
    users = [f"user{i}" for i in range(n_users)]
    for u in users:
        s.user_themes[u] = rng.sample(themes, k=1 if rng.random() < 0.5 else 2)
        s.engaged[u] = set()
    for _ in range(engagements_per_user):
        for u in users:
            pool = by_theme[rng.choice(s.user_themes[u])] if rng.random() < 0.8 else list(s.post_text)
            pid = rng.choice([p for p in pool if p not in s.engaged[u]] or pool)
            s.engaged[u].add(pid)
            kind = rng.choices(["likes", "comments", "shares"], weights=[6, 2, 1])[0]
            value = {"user_id": u, "post_id": pid, "ts": ts}
            if kind == "comments":
                value.update(comment_id=f"c{len(s.events)}", text=rng.choice(comments))
            s.events.append(_ev(kind, u, value))
            ts += 1
    return s


def post_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` short post texts (15–18 tokens): a theme sentence and a ``#i`` tag, as ``ripple bench`` posts them.

    >>> post_texts(2)  # the texts ``ripple bench`` has always posted for seed 0
    ['Learning to play jazz chords on the piano #0', 'Recorded my first song in a home studio #1']
    """
    rng = random.Random(seed)
    return [f"{rng.choice(_THEME_TEXTS)} #{i}" for i in range(n)]


def mixed_texts(n: int, seed: int = 7) -> list[str]:
    """``n`` texts of mixed length: 1 to 14 theme sentences each, Pareto-distributed (median about
    14 tokens, p90 about 60, longest about 160), for measuring padding and batching.

    >>> texts = mixed_texts(200)
    >>> texts == mixed_texts(200), max(len(t) for t in texts) > 10 * min(len(t) for t in texts)
    (True, True)
    """
    rng = random.Random(seed)
    return [" ".join(rng.choice(_THEME_TEXTS) for _ in range(min(int(rng.paretovariate(1.2)), 14))) for _ in range(n)]


def _ev(topic: str, key: str, value: dict) -> dict:
    return {"topic": topic, "key": key, "value": {"schema_version": 1, **value}}
