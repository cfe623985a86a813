import pickle

import numpy as np
import pytest
from fakes import BagOfWords

from processors.events import Engagement
from processors.reply_bank import ReplyEntry, ResponseBank
from processors.reply_texts import SeedSet, display_text, load_seed, normalise
from processors.replies import CommentDirectory, ReplyConfig, ReplySuggester, recipient_for, suggest
from processors.safety import clashes, has_personal_data, is_abusive, is_safe_reply


class FakeSentiment:
    version = "fake"
    words = {"died": -0.8, "sad": -0.6, "lost": -0.5, "sorry": -0.3, "congrats": 0.6, "great": 0.6, "love": 0.6,
             "awesome": 0.7, "happy": 0.6}

    def score(self, text):
        return max(-1.0, min(1.0, sum(v for w, v in self.words.items() if w in text.lower())))


SEED = SeedSet(
    version="test-seed",
    replies={
        "congratulations": ["Congrats on the new job!", "Congrats, new job, well deserved!", "So happy for you!"],
        "sympathy": ["So sorry about your dog.", "Sorry to hear about the dog."],
        "thanks": ["Thanks, the job is great!"],
        "humour": ["Haha your dog is funny"],
    },
    contexts={"congratulations": ["I got the new job"], "sympathy": ["my dog died today"]},
)


def service(**cfg):
    bank = ResponseBank(SEED, sentiment=FakeSentiment(), min_users=3)
    bank.embed_pending(BagOfWords())
    return ReplySuggester(bank, ReplyConfig(**{"threshold": 0.3, "context_weight": 0.0, "echo_threshold": 1.01, "echo_floor": 1.01, **cfg}))


def comment(text, user="bob", cid="c1", reply_to=None, ts=0.0):
    return Engagement("comment", user, "p1", ts, text=text, comment_id=cid, reply_to=reply_to)


def embed1(text):
    return BagOfWords().embed([text])[0]


# -- normalisation and k-anonymous admission ---------------------------------------------
def test_normalise_folds_case_punctuation_repeats_and_keeps_question_mark():
    assert normalise("  THANKS!!!  So   much 🙏") == normalise("thanks so much") == "thanks so much"
    assert normalise("Sooooo good") == "soo good"
    assert normalise("Really?!") == "really?" != normalise("Really!")
    assert normalise("🙏🙏") == "" and display_text("i'm in") == "I'm in"


def test_one_user_repeating_never_admits_and_nth_distinct_user_does():
    bank = ResponseBank(SEED, min_users=3)
    for i in range(100):
        assert bank.observe_reply("alice", "Nailed it!", ts=float(i)) == []
    assert bank.observe_reply("bob", "nailed it", ts=100.0) == []  # N-1 = 2 distinct users
    assert "nailed it" not in {e.key for e in bank.entries()}
    admitted = bank.observe_reply("carol", "NAILED IT!!!", ts=101.0)  # N-th distinct user
    assert [(e.key, e.text, e.source, e.count) for e in admitted] == [("nailed it", "Nailed it", "learned", 3.0)]
    assert bank.observe_reply("dave", "Nailed it", ts=102.0) == []  # already admitted: counted as prior
    assert [e.count for e in bank.entries() if e.key == "nailed it"] == [4.0]
    assert "Nailed it" in bank.pending_texts()


@pytest.mark.parametrize("min_users", [1, 2, 5])
def test_admission_threshold_is_exactly_min_users(min_users):
    bank = ResponseBank(SEED, min_users=min_users)
    got = [bank.observe_reply(f"u{i}", "See you there", ts=0.0) for i in range(min_users)]
    assert all(g == [] for g in got[:-1]) and len(got[-1]) == 1


def test_only_hashes_of_user_ids_are_stored():
    bank = ResponseBank(SEED, min_users=3)
    for u in ("alice-123", "bob-456", "carol-789"):
        bank.observe_reply(u, "Nice one mate", ts=0.0)
    bank.observe_reply("dave-000", "pending text", ts=0.0)
    state = repr(bank.to_dict())
    assert not any(u in state for u in ("alice-123", "bob-456", "carol-789", "dave-000"))
    assert "pending text" in state  # candidate text is kept (normalised), never shown


def test_unsafe_or_personal_replies_are_never_learned():
    bank = ResponseBank(SEED, min_users=2)
    for text in ("you idiot", "call me 555 123 4567", "see https://x.example", "ping @carol", "a " * 20):
        for u in ("a", "b", "c"):
            assert bank.observe_reply(u, text, ts=0.0) == []
    assert bank.candidate_count == 0


def test_candidate_memory_is_bounded_by_lru_and_ttl():
    bank = ResponseBank(SEED, min_users=2, max_candidates=3, candidate_ttl_s=10.0)
    for i in range(10):
        bank.observe_reply("a", f"reply number {chr(97 + i)}", ts=0.0)
    assert bank.candidate_count == 3
    bank.observe_reply("a", "much later", ts=100.0)  # everything idle for > ttl is forgotten
    assert bank.candidate_count == 1
    assert bank.observe_reply("b", "reply number a", ts=100.0) == []  # its first user was forgotten


def test_learned_entries_are_bounded_and_state_round_trips():
    bank = ResponseBank(SEED, min_users=1, max_learned=2)
    for t in ("one more", "two more", "three more"):
        bank.observe_reply("u", t, ts=0.0)
    learned = [e.key for e in bank.entries() if e.source == "learned"]
    assert learned == ["two more", "three more"]
    again = ResponseBank(SEED, min_users=1, max_learned=2)
    again.load_state(bank.to_dict())
    assert [(e.key, e.count) for e in again.entries()] == [(e.key, e.count) for e in bank.entries()]
    assert pickle.loads(pickle.dumps(bank)).to_dict() == bank.to_dict()


def test_seed_set_is_large_safe_and_distinct():
    seed = load_seed()
    texts = [t for ts in seed.replies.values() for t in ts]
    assert len(texts) >= 200 and len(seed.replies) >= 10
    assert len({normalise(t) for t in texts}) == len(texts)
    assert all(is_safe_reply(t) for t in texts)
    assert {"thanks", "agreement", "congratulations", "question", "humour", "sympathy", "disagreement"} <= set(seed.replies)


def test_vectors_are_cached_and_learned_replies_join_the_nearest_intent():
    bank = ResponseBank(SEED, min_users=1, cluster_min_cos=0.5)
    assert bank.embed_pending(BagOfWords()) == 7 + 2
    assert bank.pending_texts() == [] and bank.embed_pending(BagOfWords()) == 0
    bank.observe_reply("u", "so sorry about the dog", ts=0.0)
    assert bank.pending_texts() == ["So sorry about the dog"]
    bank.embed_pending(BagOfWords())
    mat, entries = bank.matrix()
    assert mat.shape == (8, 256) and entries[-1].cluster == "sympathy"


# -- ranking ------------------------------------------------------------------------------
def test_ranking_prefers_relevant_responses_and_prior_breaks_near_ties():
    e = [ReplyEntry("a", "A", None, 1, "seed"), ReplyEntry("b", "B", None, 100, "seed")]
    m = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    v = np.array([0.8, 0.6], dtype=np.float32)
    assert [t for t, _ in suggest(v, 0.0, m, e, threshold=0.0, prior_weight=0.0)] == ["A", "B"]
    assert [t for t, _ in suggest(v, 0.0, m, e, threshold=0.0, prior_weight=0.1)] == ["B", "A"]
    scores = [s for _, s in suggest(v, 0.0, m, e, threshold=0.0, prior_weight=0.1)]
    assert scores == sorted(scores, reverse=True)


def test_triggering_threshold_gives_nothing_for_an_irrelevant_comment():
    svc = service()
    assert svc.suggestions(embed1("quarterly tax spreadsheet formulas"), 0.0) == []
    assert svc.on_comment(comment("quarterly tax spreadsheet formulas"), embed1("quarterly tax spreadsheet formulas"),
                          0.0, post_author="alice") is None
    assert svc.suggestions(embed1("congrats on the new job"), 0.6)


def test_diversity_no_near_duplicates_and_one_per_intent():
    svc = service(k=5)
    texts = [t for t, _ in svc.suggestions(embed1("congrats on the new job"), 0.6)]
    assert texts[0] == "Congrats on the new job!"
    assert "Congrats, new job, well deserved!" not in texts  # same intent
    e = [ReplyEntry("a", "A", None, 1, "learned"), ReplyEntry("b", "B", None, 1, "learned"),
         ReplyEntry("c", "C", None, 1, "learned")]
    m = np.array([[1.0, 0.0], [0.995, 0.0998], [0.6, 0.8]], dtype=np.float32)
    got = suggest(np.array([1.0, 0.0], dtype=np.float32), 0.0, m, e, k=3, threshold=0.0)
    assert [t for t, _ in got] == ["A", "C"]  # B is a near-duplicate of A (cos > 0.9)


def test_safety_no_congrats_on_a_sad_comment_and_no_abuse():
    svc = service(k=5, context_weight=0.5)
    sad = "My dog died today"
    texts = [t for t, _ in svc.suggestions(embed1(sad), FakeSentiment().score(sad))]
    assert texts and texts[0] in ("So sorry about your dog.", "Sorry to hear about the dog.")
    assert not any("Congrats" in t or "Haha" in t or "happy" in t for t in texts)
    # a comment that looks exactly like a congratulations context but is negative gets no congrats
    v = embed1("Congrats on the new job!")
    assert "Congrats on the new job!" in [t for t, _ in svc.suggestions(v, 0.6)]
    assert not any("ongrats" in t for t, _ in svc.suggestions(v, -0.5))
    # and no condolences on a strongly positive comment
    v = embed1("So sorry about your dog.")
    assert "So sorry about your dog." in [t for t, _ in svc.suggestions(v, 0.0)]
    assert not any("orry" in t for t, _ in svc.suggestions(v, 0.8))
    e = [ReplyEntry("x", "you idiot", None, 1, "learned", safe=is_safe_reply("you idiot"))]
    assert suggest(np.array([1.0], np.float32), 0.0, np.array([[1.0]], np.float32), e, threshold=0.0) == []


def test_safety_rules():
    assert is_abusive("STFU") and is_abusive("you are st00pid".replace("00", "u")) and is_abusive("sh1t happens")
    assert is_abusive("just shut up") and not is_abusive("Shut the door please") and not is_abusive("Classic!")
    assert has_personal_data("email me: me@x.org") and not has_personal_data("Top 10!")
    assert clashes("humour", 0.5, -0.3) and not clashes("humour", 0.5, 0.3)
    assert not clashes("encouragement", 0.6, -0.4) and clashes(None, -0.7, 0.8)


def test_context_similarity_blends_intent_examples_into_relevance():
    bank = ResponseBank(SEED, sentiment=FakeSentiment())
    bank.embed_pending(BagOfWords())
    ctx = bank.context_similarity(embed1("my dog died today"))
    assert ctx["sympathy"] == pytest.approx(1.0, abs=1e-5) and ctx["congratulations"] < 0.5
    svc = ReplySuggester(bank, ReplyConfig(threshold=0.5, context_weight=0.5))
    assert svc.suggestions(embed1("my dog died today"), -0.8)[0][0].startswith(("So sorry", "Sorry"))


# -- recipients and the service ------------------------------------------------------------
def test_recipient_resolution():
    assert recipient_for(comment("Nice!"), "alice", None) == "alice"
    assert recipient_for(comment("Nice!", user="alice"), "alice", None) is None  # own post
    assert recipient_for(comment("Thanks!", reply_to="c0"), "alice", "carol") == "carol"
    assert recipient_for(comment("Thanks!", reply_to="c0"), "alice", None) is None  # unknown parent
    assert recipient_for(comment("Ha", user="carol", reply_to="c0"), "alice", "carol") is None
    assert recipient_for(comment("Nice!"), None, None) is None


def test_comment_directory_is_a_bounded_lru():
    d = CommentDirectory(capacity=2)
    d.add("c1", "a")
    d.add("c2", "b")
    d.author_of("c1")
    d.add("c3", "c")
    assert (d.author_of("c1"), d.author_of("c2"), d.author_of("c3")) == ("a", None, "c")
    assert CommentDirectory.from_dict(d.to_dict()).to_dict() == d.to_dict()


def test_service_publishes_for_the_recipient_and_learns_replies():
    svc = service()
    text = "congrats on the new job"
    doc = svc.on_comment(comment(text, user="bob", cid="c1"), embed1(text), 0.6, post_author="alice")
    assert doc["recipient_id"] == "alice" and doc["comment_id"] == "c1" and doc["post_id"] == "p1"
    assert doc["schema_version"] == 1 and doc["model_version"].startswith("ripple-replies-1")
    assert doc["suggestions"][0]["text"] == "Congrats on the new job!"
    assert all(set(s) == {"text", "score"} for s in doc["suggestions"])
    reply = "thanks the job is great"
    doc = svc.on_comment(comment(reply, user="alice", cid="c2", reply_to="c1"), embed1(reply), 0.6, post_author="alice")
    assert doc is not None and doc["recipient_id"] == "bob"  # the parent comment's author
    for i, u in enumerate(("u1", "u2", "u3")):
        svc.on_comment(comment("Well played!", user=u, cid=f"r{i}", reply_to="c1"), embed1("well played"), 0.0, "alice")
    assert svc.bank.pending_texts() == ["Well played"]


def test_a_comment_is_not_answered_in_kind():
    e = [ReplyEntry("thank you", "Thank you!", "thanks", 5, "seed"),
         ReplyEntry("you're welcome", "You're welcome!", "welcome", 5, "seed"),
         ReplyEntry("good morning", "Good morning!", "greeting", 5, "seed")]
    m = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    thanks = np.array([1.0, 0.0, 0.0], dtype=np.float32)  # the comment reads as a thank-you
    assert [t for t, _ in suggest(thanks, 0.5, m, e, threshold=0.5)] == ["You're welcome!"]
    assert [t for t, _ in suggest(thanks, 0.5, m, e, k=1, threshold=0.5, echo_threshold=1.01, echo_floor=1.01)] == ["Thank you!"]
    assert [t for t, _ in suggest(m[2], 0.5, m, e, threshold=0.5)] == ["Good morning!"]  # greetings may echo


def test_a_comment_expressing_two_close_intents_gets_neither_back():
    e = [ReplyEntry("congrats", "Congrats!", "congratulations", 5, "seed"),
         ReplyEntry("keep going", "Keep going!", "encouragement", 5, "seed"),
         ReplyEntry("thank you", "Thank you!", "thanks", 5, "seed")]
    m = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    v = np.array([0.54, 0.59, 0.45], dtype=np.float32)  # "Congrats on the marathon, amazing effort!"
    v /= np.linalg.norm(v)
    assert [t for t, _ in suggest(v, 0.8, m, e, threshold=0.3)] == ["Thank you!"]
    # with the margin rule off only the clear echo (>= echo_threshold) is suppressed
    assert "Congrats!" in [t for t, _ in suggest(v, 0.8, m, e, threshold=0.3, echo_floor=1.01)]
