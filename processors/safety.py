"""Safety rules for suggested replies: abusive words, personal data, sentiment clashes.

Pure and table-driven.  Three questions are asked of a candidate reply:

* :func:`is_abusive` — does it contain a blocklisted word or phrase (after undoing the usual
  obfuscations: case, repeated letters, ``1dI0t``-style digit swaps)?
* :func:`has_personal_data` — does it carry a URL, e-mail address, @mention or a long number?
  Such text is never learned into the shared response bank.
* :func:`clashes` — would it jar with the *comment's* sentiment, e.g. "Congrats!" on a sad
  comment, or condolences on a joyful one?

Sentiments are compound scores in ``[-1, 1]`` (VADER convention: below ``-0.05`` is negative).

Examples
--------
>>> is_abusive("You absolute 1d1ooot"), is_abusive("Thanks, you're too kind!")
(True, False)
>>> has_personal_data("mail me at a@b.io"), has_personal_data("Happy birthday!")
(True, False)
>>> clashes("congratulations", reply_sentiment=0.6, comment_sentiment=-0.56)  # "My dog died today"
True
>>> clashes("sympathy", reply_sentiment=-0.1, comment_sentiment=-0.56)
False
>>> clashes("sympathy", reply_sentiment=-0.1, comment_sentiment=0.8)  # "Best day ever!"
True
"""

from __future__ import annotations

import re
from typing import Iterable

#: comment sentiment at or below which a comment counts as negative (VADER's usual cut-off)
NEGATIVE = -0.05
#: comment sentiment at or above which a comment counts as strongly positive
STRONG_POSITIVE = 0.5
#: reply sentiment beyond which a reply of unknown intent is "cheerful" / "gloomy"
REPLY_STRONG = 0.5

#: intents that only fit comments that are not negative (celebration, jokes, compliments)
POSITIVE_ONLY = frozenset({"congratulations", "humour", "appreciation", "well_wishes"})
#: intents that do not fit strongly positive comments
NOT_ON_POSITIVE = frozenset({"sympathy"})

#: words that make a reply unsuitable wherever they appear (insults, slurs, profanity, threats);
#: matched as whole words after :func:`_fold`.  Extend per deployment with ``extra``.
BLOCKLIST = frozenset("""
idiot idiots idiotic stupid moron morons moronic dumb dumbass imbecile cretin loser losers
retard retarded retards scum scumbag trash garbage pathetic worthless useless ugly
fuck fucks fucked fucker fuckers fucking fuckin motherfucker shit shits shitty bullshit crap
bitch bitches bitchy bastard bastards asshole assholes arse arsehole dick dicks dickhead prick
cunt cunts twat twats wanker wankers slut sluts whore whores skank hoe
piss pissed douche douchebag jerk jackass screw sucks suck stfu gtfo wtf kys
fag fags faggot faggots dyke tranny spastic spaz nazi nazis
kill die hate rape raped rapist
""".split())

#: multi-word phrases (matched on folded text with single spaces)
BLOCKED_PHRASES = (
    "shut up", "kill yourself", "go die", "drop dead", "nobody cares", "no one cares",
    "hate you", "you suck", "screw you", "get lost", "piss off", "go away", "neck yourself",
    "end yourself", "get a life",
)

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
_REPEATS = re.compile(r"(.)\1{2,}")
_WORD = re.compile(r"[a-z]+")
_URL = re.compile(r"(https?://|www\.)\S+|\b[\w-]+\.(com|net|org|io|co|ly|me|app|dev|info|biz)\b", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")
_MENTION = re.compile(r"(?<!\w)@\w+")
_NUMBER = re.compile(r"\d[\d\s().-]{3,}\d|\d{4,}")


def _fold(text: str) -> str:
    """Lower-case, undo digit/symbol swaps inside words, squeeze letters repeated 3+ times."""
    words = []
    for raw in text.lower().split():
        core = raw.strip(".,;:?!\"'()[]{}*_~")
        if any(c.isalpha() for c in core):  # only words get leet-folded ("1d10t"), not "2024"
            raw = core.translate(_LEET)
        words.append(raw)
    folded = _REPEATS.sub(r"\1\1", " ".join(words))
    return folded


def _squeezed_variants(word: str) -> tuple[str, ...]:
    """``word`` and ``word`` with every double letter made single ("idiooot" → "idiot")."""
    single = re.sub(r"(.)\1", r"\1", word)
    return (word, single) if single != word else (word,)


def is_abusive(text: str, extra: Iterable[str] = ()) -> bool:
    """True when ``text`` contains a blocklisted word or phrase (``extra`` words are added)."""
    folded = _fold(text)
    words = _WORD.findall(folded)
    blocked = BLOCKLIST.union(w.lower() for w in extra) if extra else BLOCKLIST
    if any(v in blocked for w in words for v in _squeezed_variants(w)):
        return True
    joined = " " + " ".join(words) + " "
    return any(f" {p} " in joined for p in BLOCKED_PHRASES)


def has_personal_data(text: str) -> bool:
    """True when ``text`` carries a URL, e-mail address, @mention or a run of 4+ digits."""
    return bool(_URL.search(text) or _EMAIL.search(text) or _MENTION.search(text) or _NUMBER.search(text))


def is_safe_reply(text: str, *, max_words: int = 12, extra: Iterable[str] = ()) -> bool:
    """Fit to suggest or learn: 1..``max_words`` words, not abusive, no personal data.

    >>> is_safe_reply("Sounds good!"), is_safe_reply("see www.spam.example.com"), is_safe_reply(" ")
    (True, False, False)
    """
    n_words = len(text.split())
    return 0 < n_words <= max_words and not is_abusive(text, extra) and not has_personal_data(text)


def clashes(
    intent: str | None,
    reply_sentiment: float,
    comment_sentiment: float,
    *,
    negative: float = NEGATIVE,
    strong_positive: float = STRONG_POSITIVE,
    reply_strong: float = REPLY_STRONG,
) -> bool:
    """True when a reply of ``intent`` and ``reply_sentiment`` would jar with the comment.

    * positive-only intents (:data:`POSITIVE_ONLY`) clash with negative comments;
    * sympathy clashes with strongly positive comments;
    * a reply of unknown intent (learned from the stream) clashes when its own sentiment is
      strongly opposite to the comment's: cheerful on a negative comment, gloomy on a happy one.

    >>> clashes(None, reply_sentiment=0.7, comment_sentiment=-0.4)
    True
    >>> clashes("thanks", reply_sentiment=0.4, comment_sentiment=-0.4)  # "Thank you" to condolences
    False
    """
    if intent in POSITIVE_ONLY:
        return comment_sentiment <= negative
    if intent in NOT_ON_POSITIVE:
        return comment_sentiment >= strong_positive
    if intent is None:
        if comment_sentiment <= negative and reply_sentiment >= reply_strong:
            return True
        if comment_sentiment >= strong_positive and reply_sentiment <= -reply_strong:
            return True
    return False
