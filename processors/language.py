"""The language of a short text, told by its script: enough to answer a comment with replies
written in its language (no model; Latin script counts as English, the only Latin-script seed
language).

>>> [script_language(t) for t in ("谢谢你的分享", "Thanks!", "ありがとう", "고마워요", "Спасибо", "👍", "ok 好的")]
['zh', 'en', 'ja', 'ko', 'other', '', 'zh']
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

#: languages a reply may be written in, for which Ripple ships seed replies
SEED_LANGUAGES = ("en", "zh")


def _script(ch: str) -> str | None:
    o = ord(ch)
    if 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF:
        return "ja"  # hiragana, katakana
    if 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
        return "ko"
    if 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x2FA1F or 0xF900 <= o <= 0xFAFF:
        return "han"
    if ch.isalpha():
        return "latin" if unicodedata.name(ch, "").startswith("LATIN") else "other"
    return None


@lru_cache(maxsize=65_536)
def script_language(text: str) -> str:
    """``zh``, ``ja``, ``ko``, ``en`` (Latin letters), ``other`` (another script) or ``""`` (no
    letters).  Han characters with kana are Japanese; CJK outweighs Latin letters, which Chinese
    posts often mix in."""
    counts: dict[str, int] = {}
    for ch in text:
        script = _script(ch)
        if script is not None:
            counts[script] = counts.get(script, 0) + 1
    if not counts:
        return ""
    if counts.get("ja"):
        return "ja"
    if counts.get("ko"):
        return "ko"
    if counts.get("han"):
        return "zh"
    return "en" if counts.get("latin", 0) >= counts.get("other", 0) else "other"
