"""The reply bank against sock puppets and obfuscated abuse, and what the filter costs ordinary
replies."""

import numpy as np
import pytest

from processors.events import Engagement
from processors.replies import ReplyConfig, ReplySuggester
from processors.reply_bank import ResponseBank
from processors.reply_texts import load_seed
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


def test_fresh_accounts_teach_nothing_until_they_have_a_history_and_the_history_is_shared():
    from processors.reply_state import ReplyState

    config = ReplyConfig(min_history_comments=2, min_history_s=86_400.0)
    s = ReplySuggester(ResponseBank(min_users=3, min_recipients=2), config)
    here = ReplyState(s)  # this worker's sync part: hears of every commenter
    vec, day = np.zeros(4, dtype=np.float32), 86_400.0
    for r in range(2):
        s.on_comment(_comment(f"host{r}", f"h{r}", text="Anyone going to the game?", ts=0.0), vec, 0.0, "x")
    for i in range(6):  # made today, replying at once: several writers, two recipients, and still nothing
        s.on_comment(_comment(f"fresh{i}", f"f{i}", reply_to=f"h{i % 2}", text="See you at the game", ts=10.0), vec,
                     0.0, "x")
    assert _learned(s) == [] and s.bank.candidate_count == 0
    for i in range(3):  # regulars: two comments a day before they reply
        for j in range(2):
            s.on_comment(_comment(f"regular{i}", f"r{i}-{j}", text="Nice one", ts=j * 60.0), vec, 0.0, "x")
    other = ReplySuggester(ResponseBank(min_users=3, min_recipients=2), config)
    there = ReplyState(other)
    for doc in here.take_docs():  # another worker learns the regulars' history from the sync messages
        there.apply_doc(doc)
    other.directory.add("h0", "host0")
    other.directory.add("h1", "host1")
    for i in range(3):
        other.on_comment(_comment(f"regular{i}", f"g{i}", reply_to=f"h{i % 2}", text="See you at the game",
                                  ts=day + 100.0), vec, 0.0, "x")
    assert _learned(other) == ["See you at the game"]
    keys = {k for k in there.all_keys() if k.startswith("h:")}
    back = ReplyState(ReplySuggester(ResponseBank(), config))
    assert back.restore(there.snapshot(keys)) == len(keys) == 11  # hosts, fresh and regulars: it survives a restart
    regular = back.bank.user_hash("regular0")
    assert back.history.state(regular) == (0.0, 3.0)  # first comment at 0, two comments and the reply
