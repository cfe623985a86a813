"""The reply bank against sock puppets and obfuscated abuse, and what the filter costs ordinary
replies."""

import numpy as np
import pytest

from processors.events import Engagement
from processors.replies import ReplyConfig, ReplySuggester
from processors.reply_bank import ResponseBank, load_seed
from processors.safety import is_safe_reply
from ripple.eval_replies import load_pairs

#: what sock puppets got suggested, and more of the same
HOSTILE = [
    "Check out my profile for free followers", "Go to hell", "You are so stoopid", "You are an \u0456diot",
    "Mail me at john dot doe at gmail dot com", "Call me five five five one two three four",
    "You are an idi\u200bot", "ＹＯＵ ＡＲＥ ＳＴＵＰＩＤ", "you m0r0n", "what a c\u0433etin", "Y0u are a dumbasss",
    "reach me on whatsapp", "DM me for a promo code", "follow me back pls", "link in bio", "visit my page",
    "call 555 123 4567", "text me at (555) 010-9999", "john.doe@example.com", "john at example dot com",
    "write to me: jane [at] mail [dot] com", "nine one seven five five five two", "www.free-stuff.example",
    "buy cheap followers at spam.io", "@spammer says hi", "shut up", "kys", "drop dead loser", "nobody cares",
    "你这个傻逼", "去死吧", "滚开", "白痴", "fuuuck you", "bullsh1t", "Stfu", "go die", "burn in hell",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_replies_are_refused_by_the_filter(text):
    assert not is_safe_reply(text)


def test_ordinary_replies_are_rarely_blocked():
    seed = [t for ts in load_seed().replies.values() for t in ts]
    assert all(is_safe_reply(t) for t in seed)
    replies = [r for _, r in load_pairs() if 0 < len(r.split()) <= 12]
    blocked = [r for r in replies if not is_safe_reply(r)]
    assert len(replies) > 500
    assert len(blocked) / len(replies) <= 0.02, blocked


def _suggester():
    return ReplySuggester(ResponseBank(min_users=3, min_recipients=2), ReplyConfig())


def _comment(user, cid, reply_to=None, text="nice", ts=1.0):
    return Engagement("comment", user, "p1", ts, text=text, comment_id=cid, reply_to=reply_to)


def _learned(s):
    return [e.text for e in s.bank.entries() if e.source == "learned"]


def test_sock_puppets_replying_to_nothing_or_to_one_victim_teach_the_bank_nothing():
    s, vec = _suggester(), np.zeros(4, dtype=np.float32)
    for i in range(5):  # replies to a comment that does not exist
        s.on_comment(_comment(f"puppet{i}", f"x{i}", reply_to="ghost", text="See you at the game"), vec, 0.0, "x")
    assert _learned(s) == [] and s.bank.candidate_count == 0
    s.on_comment(_comment("victim", "v1", text="Anyone going to the game?"), vec, 0.0, "x")
    for i in range(5):  # many accounts, one recipient
        s.on_comment(_comment(f"puppet{i}", f"y{i}", reply_to="v1", text="See you at the game"), vec, 0.0, "x")
    assert _learned(s) == []
    for i in range(5):  # a puppet's reply to its own comment does not count either
        s.on_comment(_comment(f"puppet{i}", f"own{i}", text="Who is going?"), vec, 0.0, "x")
        s.on_comment(_comment(f"puppet{i}", f"z{i}", reply_to=f"own{i}", text="See you at the game"), vec, 0.0, "x")
    assert _learned(s) == []
    s.on_comment(_comment("someone", "v2", text="Game tonight?"), vec, 0.0, "x")
    s.on_comment(_comment("puppet0", "w1", reply_to="v2", text="See you at the game"), vec, 0.0, "x")
    assert _learned(s) == ["See you at the game"]  # 5 writers, 2 recipients: admitted


def test_hostile_replies_with_every_admission_rule_met_are_never_learned():
    s, vec = _suggester(), np.zeros(4, dtype=np.float32)
    for r in range(3):
        s.on_comment(_comment(f"host{r}", f"h{r}", text="Hello all"), vec, 0.0, "x")
    for n, text in enumerate(HOSTILE):
        for i in range(4):
            s.on_comment(_comment(f"writer{i}", f"c{n}-{i}", reply_to=f"h{i % 3}", text=text), vec, 0.0, "x")
    assert _learned(s) == []
