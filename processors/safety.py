"""Safety rules for suggested replies: abusive words, personal data, sentiment clashes.

Pure and table-driven.  Three questions are asked of a candidate reply:

* :func:`is_abusive` — does it contain a blocklisted word or phrase (after undoing the usual
  obfuscations: Unicode look-alikes and compatibility forms, invisible characters, accents,
  case, repeated letters, ``1dI0t``-style digit swaps, a vowel swapped in a strong insult)?
* :func:`has_personal_data` — does it carry a URL, e-mail address (also spelt out: "john dot
  doe at gmail dot com"), @mention, or a phone number (digits, or five or more number words)?
* :func:`is_spam` — does it advertise ("check out my profile", "free followers", "DM me")?
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
>>> is_abusive("You are an \u0456diot"), is_abusive("You are so stoopid"), is_abusive("Go to hell")
(True, True, True)
>>> has_personal_data("Call me five five five one two three four"), has_personal_data("john dot doe at gmail dot com")
(True, True)
>>> is_spam("Check out my profile for free followers"), is_spam("Check out the new trail map")
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
import unicodedata
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
    "end yourself", "get a life", "go to hell", "burn in hell", "rot in hell", "f off", "eff off",
)
#: strong insults also caught with one vowel changed (after doubled letters are made single:
#: "stoopid"); none is one vowel away from a common word ("whore"/"where", "bitch"/"batch" are not here)
FUZZY_INSULTS = frozenset({"idiot", "stupid", "moron", "retard", "imbecile", "asshole", "bastard", "cretin",
                           "dumbass", "scumbag", "wanker"})
#: abuse in scripts without spaces between words (Chinese), matched as substrings
BLOCKED_SUBSTRINGS = ("傻逼", "傻b", "煞笔", "白痴", "弱智", "智障", "脑残", "去死", "滚开", "滚蛋", "蠢货", "笨蛋",
                      "操你", "草泥马", "妈的", "他妈", "贱人", "婊子", "废物", "垃圾人", "混蛋", "王八蛋", "狗屎")

#: letters of other scripts drawn like Latin ones (from Unicode's confusables: Cyrillic, Greek)
CONFUSABLES = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "г": "r", "п": "n", "ь": "b", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "һ": "h", "ӏ": "l", "ɡ": "g", "ɑ": "a",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T", "У": "Y",
    "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S", "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K",
    "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
})
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_VOWELS = set("aeiouy")

#: advertising and contact-me phrases (matched on folded text with single spaces)
SPAM_PHRASES = (
    "check out my", "check my profile", "my profile", "my page", "my channel", "my onlyfans", "link in bio",
    "follow me", "follow back", "follow for follow", "free followers", "free likes", "more followers", "dm me",
    "message me", "text me", "call me", "add me on", "visit my", "click here", "click the link", "subscribe to",
    "promo code", "discount code", "earn money", "make money", "work from home", "giveaway", "onlyfans",
    "whatsapp", "telegram", "snapchat", "wechat", "instagram", "crypto", "bitcoin", "forex",
)
_NUMBER_WORDS = frozenset("zero oh one two three four five six seven eight nine double triple".split())
_SPELT_EMAIL = re.compile(r"\b(at|@)\s+[a-z0-9._-]+\s+(dot|\.)\s+[a-z]{2,6}\b|\bdot\s+(com|net|org|io|co|cn|me|info)\b")

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
_REPEATS = re.compile(r"(.)\1{2,}")
_WORD = re.compile(r"[a-z]+")
_URL = re.compile(r"(https?://|www\.)\S+|\b[\w-]+\.(com|net|org|io|co|ly|me|app|dev|info|biz)\b", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")
_MENTION = re.compile(r"(?<!\w)@\w+")
_DIGIT_RUN = re.compile(r"\+?\d[\d\s().-]*\d")  # a phone number has 7+ digits (a year or a price has fewer)


def unconfuse(text: str) -> str:
    """``text`` as it reads: compatibility forms folded (NFKC: full-width, ligatures), invisible
    characters removed, look-alike letters of other scripts made Latin, accents dropped.

    >>> unconfuse("ｉｄｉｏｔ \u0456d\u200biot naïve")
    'idiot idiot naive'
    """
    text = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).translate(CONFUSABLES)
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _fold(text: str) -> str:
    """Unconfuse, lower-case, undo digit/symbol swaps inside words, squeeze letters repeated 3+ times."""
    words = []
    for raw in unconfuse(text).lower().split():
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


def _vowel_swap(word: str, target: str) -> bool:
    """True when ``word`` is ``target`` with one vowel replaced by another vowel."""
    if len(word) != len(target):
        return False
    diff = [(a, b) for a, b in zip(word, target) if a != b]
    return len(diff) == 1 and diff[0][0] in _VOWELS and diff[0][1] in _VOWELS


def is_abusive(text: str, extra: Iterable[str] = ()) -> bool:
    """True when ``text`` contains a blocklisted word or phrase (``extra`` words are added)."""
    lowered = unconfuse(text).lower()
    if any(b in lowered for b in BLOCKED_SUBSTRINGS):
        return True
    folded = _fold(text)
    words = _WORD.findall(folded)
    blocked = BLOCKLIST.union(w.lower() for w in extra) if extra else BLOCKLIST
    variants = [v for w in words for v in _squeezed_variants(w)]
    if any(v in blocked for v in variants):
        return True
    if any(_vowel_swap(v, insult) for v in variants if len(v) >= 5 for insult in FUZZY_INSULTS):
        return True
    joined = " " + " ".join(words) + " "
    return any(f" {p} " in joined for p in BLOCKED_PHRASES)


def has_personal_data(text: str) -> bool:
    """True when ``text`` carries a URL, e-mail address (also spelt out), @mention, or a phone
    number: 7+ digits in a run (spaces, dots, dashes and brackets between them allowed), or 5+
    number words and digits in a row.

    >>> has_personal_data("call 555-123-4567"), has_personal_data("I was born in 1984"), has_personal_data("$200.00")
    (True, False, False)
    """
    plain = unconfuse(text)
    if _URL.search(plain) or _EMAIL.search(plain) or _MENTION.search(plain):
        return True
    if any(sum(c.isdigit() for c in m.group()) >= 7 for m in _DIGIT_RUN.finditer(plain)):
        return True
    words = re.findall(r"[a-z]+|\d+", re.sub(r"[\[\](){}]", " ", plain.lower()))
    run = 0
    for w in words:
        run = run + 1 if (w in _NUMBER_WORDS or w.isdigit()) else 0
        if run >= 5:
            return True
    return bool(_SPELT_EMAIL.search(" ".join(words)))


def is_spam(text: str) -> bool:
    """True when ``text`` advertises or asks to be contacted (:data:`SPAM_PHRASES`)."""
    joined = " " + " ".join(_WORD.findall(_fold(text))) + " "
    return any(f" {p} " in joined for p in SPAM_PHRASES)


def is_safe_reply(text: str, *, max_words: int = 12, extra: Iterable[str] = ()) -> bool:
    """Fit to suggest or learn: 1..``max_words`` words, not abusive, no personal data, no spam.

    >>> is_safe_reply("Sounds good!"), is_safe_reply("see www.spam.example.com"), is_safe_reply(" ")
    (True, False, False)
    """
    n_words = len(text.split())
    return (0 < n_words <= max_words and not is_abusive(text, extra) and not has_personal_data(text)
            and not is_spam(text))


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
