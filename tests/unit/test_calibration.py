"""Cosine calibration: the identity on the reference model, and knobs carried to another scale."""

from __future__ import annotations

import numpy as np
import pytest

from processors.calibration import REFERENCE, Calibration, calibration_pairs
from processors.ranking import RankConfig
from processors.replies import ReplyConfig


def test_on_the_reference_model_every_knob_stays_as_it_is():
    assert ReplyConfig().calibrated(REFERENCE) == ReplyConfig()
    assert RankConfig().calibrated(REFERENCE) == RankConfig()


def test_the_map_is_monotone_hits_its_three_points_and_inverts():
    cal = Calibration(random=0.82, true=0.85)
    refs = np.linspace(-0.2, 1.0, 61)
    model = np.array([cal.to_model(r) for r in refs])
    assert np.all(np.diff(model) > 0)
    assert cal.to_model(REFERENCE.random) == pytest.approx(0.82) and cal.to_model(REFERENCE.true) == pytest.approx(0.85)
    assert cal.to_model(1.0) == pytest.approx(1.0)
    assert cal.to_reference(model) == pytest.approx(refs)


def test_a_compressed_model_gets_a_higher_threshold_and_narrower_margins():
    cal = Calibration(random=0.82, true=0.85)
    cfg = ReplyConfig().calibrated(cal)
    assert 0.85 < cfg.threshold < cfg.echo_floor < cfg.echo_threshold < cfg.dup_threshold < 1.0
    assert cfg.echo_margin < ReplyConfig().echo_margin and cfg.prior_weight < ReplyConfig().prior_weight
    assert RankConfig().calibrated(cal).w_similarity == pytest.approx(1.0 / cal.scale)


def test_calibration_pairs_are_deterministic_and_true_pairs_share_an_intent():
    contexts = {"a": ["a1", "a2"], "b": ["b1"], "c": ["c1", "c2"]}
    replies = {"a": ["ra"], "b": ["rb1", "rb2"], "c": ["rc"]}
    true, other = calibration_pairs(contexts, replies, per_intent=5)
    assert (true, other) == calibration_pairs(contexts, replies, per_intent=5)
    intent_of = {t: i for i in contexts for t in contexts[i] + replies[i]}
    assert all(intent_of[a] == intent_of[b] and a != b for a, b in true)
    assert all(intent_of[a] != intent_of[b] for a, b in other)


def test_the_reference_constants_are_what_all_minilm_measures(onnx_model):
    from models.embedder import OnnxEmbedder
    from processors.calibration import measure
    from processors.reply_texts import load_seed

    seed = load_seed()
    got = measure(OnnxEmbedder(onnx_model, provider="cpu").embed, seed.contexts, seed.replies)
    assert (got.random, got.true) == pytest.approx((REFERENCE.random, REFERENCE.true), abs=2e-3)
