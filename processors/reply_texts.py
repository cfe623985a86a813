"""Reply texts: the normalised key under which replies are counted, how a learned reply is
shown, and the curated seed replies shipped in ``processors/data`` (one file per language, the
same intents in each).

>>> normalise("  Sooooo   cool!!! 😍"), normalise("Really?!")
('soo cool', 'really?')
>>> display_text("i'm in")
"I'm in"
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

_REPEATS = re.compile(r"(.)\1{2,}")
_TOKENS = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_TRAILING = " \t\r\n!.…)(:;*~\"'"


def normalise(text: str) -> str:
    """The key under which replies are counted: case-folded words, one trailing ``?`` kept.

    Letters repeated three or more times are squeezed to two ("soooo" → "soo"); punctuation,
    emoji and extra whitespace are dropped.  Returns ``""`` when no word is left.
    """
    t = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'").replace("\u2018", "'")
    t = _REPEATS.sub(r"\1\1", t)
    key = " ".join(_TOKENS.findall(t))
    if key and t.rstrip(_TRAILING).endswith("?"):
        key += "?"
    return key


def display_text(key: str) -> str:
    """How a learned reply is shown: its normalised key, capitalised ("i'm in" → "I'm in")."""
    t = re.sub(r"\bi\b", "I", key)
    return t[:1].upper() + t[1:]


@dataclass(frozen=True)
class SeedSet:
    version: str
    replies: dict[str, list[str]]  # intent → replies
    contexts: dict[str, list[str]]  # intent → example comments


#: seed file per language (the same intents in each)
SEED_FILES = {"en": "seed_replies.json", "zh": "seed_replies.zh.json"}


@lru_cache(maxsize=None)
def load_seed(languages: tuple[str, ...] = ("en",)) -> SeedSet:
    """The curated seed set shipped in ``processors/data``, in ``languages`` (each intent's
    replies and example comments of every language together; a reply's language is told by its
    script when it is ranked)."""
    replies: dict[str, list[str]] = {}
    contexts: dict[str, list[str]] = {}
    versions = []
    for lang in languages:
        name = SEED_FILES.get(lang)
        if name is None:
            raise ValueError(f"no seed replies in {lang!r}; languages: {', '.join(SEED_FILES)}")
        doc = json.loads(resources.files("processors").joinpath("data", name).read_text("utf-8"))
        versions.append(doc["version"])
        for intent, v in doc["intents"].items():
            replies.setdefault(intent, []).extend(v["replies"])
            contexts.setdefault(intent, []).extend(v.get("contexts", []))
    return SeedSet(version="+".join(versions), replies=replies, contexts=contexts)
