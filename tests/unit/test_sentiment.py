import pickle

import pytest

from models.sentiment import VaderSentiment
from processors.sentiment_protocol import SentimentAnalyzer, engagement_weight, polarity


@pytest.fixture(scope="module")
def vader():
    return VaderSentiment()


def test_vader_satisfies_the_protocol_and_loads_its_lexicon_offline(vader):
    assert isinstance(vader, SentimentAnalyzer)
    assert vader.version.startswith("vader-")
    assert len(vader._analyzer.lexicon) > 7000  # vader_lexicon.txt shipped in the wheel


@pytest.mark.parametrize("text, expected", [
    ("My dog died today", "negative"),
    ("I failed my exam", "negative"),
    ("Congrats on the new job!", "positive"),
    ("I am so happy, best day ever!", "positive"),
    ("The meeting moved to 3pm", "neutral"),
])
def test_vader_polarity_of_typical_comments(vader, text, expected):
    s = vader.score(text)
    assert -1.0 <= s <= 1.0 and polarity(s) == expected


def test_scores_are_deterministic_bounded_and_empty_is_neutral(vader):
    texts = ["Love this!!! 😍", "This is NOT good", "", "   "]
    assert vader.scores(texts) == vader.scores(texts)
    assert vader.score("") == vader.score("   ") == 0.0
    assert vader.score("This is NOT good") < 0 < vader.score("Love this!!! 😍")
    assert pickle.loads(pickle.dumps(vader)).score("great") == vader.score("great")


def test_negative_comments_are_not_positive_engagement_signals(vader):
    assert engagement_weight("comment", vader.score("This is awful, worst post ever")) == 0.0
    assert engagement_weight("comment", vader.score("Great post, thanks!")) is None
    assert engagement_weight("like", -1.0) is None  # only comments carry sentiment
