import importlib.util

import numpy as np
import pytest
from fakes import BagOfWords

from ripple.eval_replies import BM25, format_summary, run_reply_eval


class Constant:
    dim = 4

    def embed(self, texts):
        return np.tile(np.array([1, 0, 0, 0], np.float32), (len(texts), 1))


# synthetic pairs where the reply repeats a topic word of the message
TOPICS = [f"topic{i}" for i in range(60)]
PAIRS = [(f"tell me about {t} please", f"{t} is a thing I know") for t in TOPICS]


def test_bm25_ranks_the_document_sharing_rare_words_first():
    bm = BM25(["the cat sat on the mat", "the dog", "a cat and a dog and a cat"])
    s = bm.scores("cat on mat", [0, 1, 2])
    assert s[0] > s[2] > s[1] == 0.0


def test_word_overlap_rankers_find_overlapping_replies():
    r = run_reply_eval(BagOfWords(dim=1024), n_candidates=20, seed=0, pairs=PAIRS, progress=False)
    assert r["pairs"] == 60 and r["n_candidates"] == 20
    assert r["bm25"]["recall@1"] == 1.0 and r["ripple"]["recall@1"] > 0.9
    assert r["ripple"]["recall@3"] >= r["ripple"]["recall@1"]


def test_uninformative_embedder_scores_near_chance_and_ties_break_at_random():
    r = run_reply_eval(Constant(), n_candidates=20, seed=1, pairs=PAIRS * 1, progress=False)
    assert r["ripple"]["recall@1"] < 0.25 and r["random"]["recall@1"] == pytest.approx(0.05)


def test_same_seed_same_result_and_limit_samples_pairs():
    a = run_reply_eval(BagOfWords(dim=1024), n_candidates=10, seed=3, limit=15, pairs=PAIRS, progress=False)
    b = run_reply_eval(BagOfWords(dim=1024), n_candidates=10, seed=3, limit=15, pairs=PAIRS, progress=False)
    assert a["pairs"] == 15 and {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    table = format_summary(a)
    assert "BM25" in table and "recall@3" in table and "Ripple" in table


def test_too_few_distinct_replies_is_an_error():
    with pytest.raises(ValueError):
        run_reply_eval(BagOfWords(dim=1024), n_candidates=100, pairs=PAIRS, progress=False)


@pytest.mark.skipif(importlib.util.find_spec("chatterbot_corpus") is None or importlib.util.find_spec("yaml") is None,
                    reason="data source chatterbot-corpus (+ PyYAML) not installed")
def test_chatterbot_corpus_pairs_are_read_from_the_wheel_files():
    from ripple.eval_replies import load_pairs

    pairs = load_pairs()
    assert len(pairs) > 1000 and all(m and r for m, r in pairs)
    r = run_reply_eval(BagOfWords(dim=1024), n_candidates=100, seed=0, limit=50, progress=False)
    assert r["pairs"] == 50 and r["corpus_pairs"] == len(pairs) and r["bm25"]["recall@1"] > 0.05


def test_the_suggester_end_to_end_answers_with_corpus_replies_and_abstains_without_signal():
    from ripple.eval_replies import format_suggester, run_suggester_eval

    pairs = [(f"{t} with {t}x", f"sure {t} with {t}x") for t in TOPICS[:20]]
    r = run_suggester_eval(BagOfWords(dim=1024), pairs, progress=False)
    assert r["messages"] == 20 and r["answered"] > 0.5 and r["recall_when_answered"] > 0.8
    assert 0 < r["precision"] <= r["recall_when_answered"] and r["cosine_recall"] > 0.8
    silent = run_suggester_eval(Constant(), pairs, progress=False)
    assert silent["recall"] < 0.2
    assert "answers" in format_suggester(r) and "precision" in format_suggester(r)
