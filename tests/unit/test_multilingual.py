"""Chinese end to end on multilingual-e5-small, against all-MiniLM-L6-v2 on the same texts: theme
separation, translations, suggested replies at the English rate, sentiment that is not zero."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from processors.events import Engagement
from processors.language import script_language
from processors.reply_bank import ResponseBank
from processors.reply_texts import load_seed
from processors.replies import ReplyConfig, ReplySuggester

COMMENTS = json.loads((Path(__file__).parents[1] / "fixtures" / "bilingual_comments.json").read_text("utf-8"))["comments"]


@pytest.fixture(scope="module")
def e5(e5_model):
    from models.embedder import OnnxEmbedder

    return OnnxEmbedder(e5_model, provider="cpu")


@pytest.fixture(scope="module")
def minilm(onnx_model):
    from models.embedder import OnnxEmbedder

    return OnnxEmbedder(onnx_model, provider="cpu")


def _suggester(embedder, languages):
    from models.embedder import model_calibration
    from models.ngram_sentiment import RoutedSentiment
    from models.sentiment import VaderSentiment

    sentiment = RoutedSentiment(VaderSentiment())
    bank = ResponseBank(seed=load_seed(languages), sentiment=sentiment)
    bank.embed_pending(embedder)
    cal = model_calibration(embedder, languages)
    return ReplySuggester(bank, ReplyConfig().calibrated(cal["en"]),
                          by_language={lang: ReplyConfig().calibrated(c) for lang, c in cal.items()}), sentiment


def _answers(suggester, sentiment, embedder, texts):
    out = []
    for i, (text, vec) in enumerate(zip(texts, embedder.embed(texts))):
        doc = suggester.on_comment(Engagement("comment", "u", "p", 0.0, text=text, comment_id=f"c{i}"), vec,
                                   sentiment.score(text), post_author="author")
        out.append([s["text"] for s in doc["suggestions"]] if doc else [])
    return out


def test_chinese_posts_group_by_theme_and_line_up_with_their_translations(e5, minilm):
    from ripple.eval_languages import evaluate

    multi, english_only = evaluate(e5.embed), evaluate(minilm.embed)
    assert multi["zh"]["separation"] >= 0.85 and multi["translation_nearest"] >= 0.8 * multi["posts"], multi
    assert english_only["zh"]["separation"] < 0.7 and english_only["translation_nearest"] < 0.3 * multi["posts"]


def test_chinese_comments_get_chinese_replies_about_as_often_as_english_ones(e5, minilm):
    zh = [c["zh"] for c in COMMENTS]
    en = [c["en"] for c in COMMENTS]
    suggester, sentiment = _suggester(e5, ("en", "zh"))
    zh_answers, en_answers = _answers(suggester, sentiment, e5, zh), _answers(suggester, sentiment, e5, en)
    reference, ref_sentiment = _suggester(minilm, ("en",))
    minilm_en = _answers(reference, ref_sentiment, minilm, en)
    answered = sum(map(bool, zh_answers))
    assert answered >= sum(map(bool, minilm_en)) - 2 and answered >= 0.75 * len(zh), zh_answers
    # in the comment's own language, never the other one
    assert all(script_language(r) == "zh" for rs in zh_answers for r in rs)
    assert all(script_language(r) == "en" for rs in en_answers for r in rs)
    # and sensible: the seed intent a reply was written for matches the comment's intent
    intent_of = {r: i for i, rs in load_seed(("zh",)).replies.items() for r in rs}
    top = [(c["intent"], intent_of.get(rs[0])) for c, rs in zip(COMMENTS, zh_answers) if rs]
    assert sum(want == got for want, got in top) >= 0.6 * len(top), top
    # a sad comment gets no cheerful reply
    sad = [rs for c, rs in zip(COMMENTS, zh_answers) if c["intent"] == "sympathy"]
    assert all(intent_of.get(r) in ("sympathy", "encouragement") for rs in sad for r in rs), sad


def test_without_a_multilingual_model_chinese_comments_get_nothing_rather_than_noise(minilm):
    suggester, sentiment = _suggester(minilm, ("en",))
    assert not any(_answers(suggester, sentiment, minilm, [c["zh"] for c in COMMENTS]))


def test_chinese_sentiment_is_measured_and_not_zero():
    from models.ngram_sentiment import NgramSentiment, RoutedSentiment
    from models.sentiment import VaderSentiment

    routed = RoutedSentiment(VaderSentiment())
    assert routed.score("质量很差，非常失望") < -0.05 < 0.05 < routed.score("太好吃了，强烈推荐")
    assert routed.score("My dog died today") == pytest.approx(VaderSentiment().score("My dog died today"))
    with np.load(Path(__import__("models").__file__).parent / "data" / "sentiment_zh.npz") as data:
        report = json.loads(str(data["report"]))
    assert report["ours"] >= 0.78 and report["vader"] < 0.05 and report["test"] > 3000
    assert NgramSentiment.shipped().buckets == 1 << 18
