"""Throughput of an ``OnnxEmbedder`` against raw onnxruntime sessions fed pre-tokenised arrays.

Two baselines, both on the same texts at the same batch size:

* ``raw_sps``: a plain ``onnxruntime.InferenceSession`` with onnxruntime's default options (its own
  intra-op threads), one padded batch per ``run``: what a user gets from onnxruntime as shipped.
* ``raw_threaded_sps``: the embedder's own session and cutting (``OnnxEmbedder.pieces`` /
  ``run_pieces``: texts sorted by length, pieces padded each to its own longest text and run at
  once on the CPU provider), tokenised beforehand.

``embedder_sps / raw_threaded_sps`` is the cost of tokenising inside ``embed``; ``embedder_sps /
raw_sps`` also counts what the sorting, per-piece padding and threading gain over a default
session.  The three are measured in turn, ``rounds`` times, and each keeps its best round.  ``pad_to``
pads the default-session arrays to a fixed length (e.g. the 128 the shipped ``tokenizer.json``
asks for) to show what padding to the longest text saves.

From the command line, with no broker: ``ripple model bench`` (model path, provider, CPU pieces and
default batch size from Ripple's settings), or ``python -m models.bench_embed``, which needs only
the model's own dependencies (onnxruntime, onnx, safetensors, ``tokenizers``, numpy) and takes
everything from its flags, e.g. on a GPU machine with onnxruntime-gpu::

    python -m models.bench_embed --provider cuda --batch-sizes 32,256 --texts mixed --fp16

prints one row per batch size and precision (see ``--help``).

Examples
--------
>>> import numpy as np
>>> class Fake:  # any object with tokenize/session/pieces/run_pieces/embed works
...     def tokenize(self, texts):
...         n = len(texts)
...         return np.ones((n, 3), np.int64), np.ones((n, 3), np.int64)
...     class session:
...         @staticmethod
...         def run(names, feed):
...             return [np.zeros((len(feed["input_ids"]), 2), np.float32)]
...     def pieces(self, ids, mask):
...         return [(np.arange(len(ids)), {"input_ids": ids, "attention_mask": mask})]
...     def run_pieces(self, pieces, n):
...         return np.zeros((n, 2), np.float32)
...     def embed(self, texts):
...         return np.zeros((len(texts), 2), np.float32)
>>> r = bench(Fake(), ["a"] * 8, batch_size=4, raw_session=Fake.session)
>>> sorted(r)
['batch_size', 'embedder_sps', 'n_texts', 'pad_to', 'ratio', 'raw_sps', 'raw_threaded_sps']
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from ripple.arg_types import positive_int, positive_ints

OUTPUT = "sentence_embedding"


def default_session(embedder):
    """A plain onnxruntime session on the embedder's model and provider, default options."""
    import onnxruntime as ort

    return ort.InferenceSession(str(embedder.model_path), providers=embedder.session.get_providers())


def bench(embedder, texts: Sequence[str], batch_size: int, pad_to: int | None = None, raw_session=None,
          rounds: int = 2) -> dict:
    """Sentences per second of ``embedder.embed`` and of the two raw baselines, one batch at a time.

    Parameters
    ----------
    embedder
        An ``OnnxEmbedder`` (uses its ``tokenize``, ``pieces``, ``run_pieces`` and ``embed``).
    texts
        Texts to embed; each is embedded once per measurement (after one warm-up batch).
    batch_size
        Texts per call, for every measurement.
    pad_to
        Fixed padded length for the default-session arrays; ``None`` pads each batch to its longest text.
    raw_session
        The default-options session; built with ``default_session(embedder)`` when ``None``.
    rounds
        Measurements of each, alternated (the machine's speed may drift); the best is kept.

    Returns
    -------
    dict
        ``embedder_sps``, ``raw_sps``, ``raw_threaded_sps``, ``ratio`` (embedder / raw) and the parameters.
    """
    import numpy as np  # here, not at the top: ``ripple`` builds its parser from this module

    raw_session = raw_session if raw_session is not None else default_session(embedder)
    batches = [list(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
    feeds, pieces = [], []
    for batch in batches:  # pre-tokenised outside the timed loops
        ids, mask = embedder.tokenize(batch)
        pieces.append((embedder.pieces(ids, mask), len(batch)))
        if pad_to is not None:
            extra = ((0, 0), (0, max(pad_to - ids.shape[1], 0)))
            ids, mask = np.pad(ids, extra)[:, :pad_to], np.pad(mask, extra)[:, :pad_to]
        feeds.append({"input_ids": ids, "attention_mask": mask})

    def rate(step, items) -> float:
        step(items[0])  # warm-up
        start = time.perf_counter()
        for item in items:
            step(item)
        return len(texts) / (time.perf_counter() - start)

    embedder_sps = raw_sps = raw_threaded_sps = 0.0
    for _ in range(rounds):
        embedder_sps = max(embedder_sps, rate(embedder.embed, batches))
        raw_sps = max(raw_sps, rate(lambda feed: raw_session.run([OUTPUT], feed), feeds))
        raw_threaded_sps = max(raw_threaded_sps, rate(lambda p: embedder.run_pieces(*p), pieces))
    return {"n_texts": len(texts), "batch_size": batch_size, "pad_to": pad_to, "embedder_sps": embedder_sps,
            "raw_sps": raw_sps, "raw_threaded_sps": raw_threaded_sps, "ratio": embedder_sps / raw_sps}


DESCRIPTION = ("Sentences/s of OnnxEmbedder.embed against raw onnxruntime sessions on the same texts and batch size "
               "(no broker). Baselines: a default-options session fed pre-tokenised batches padded to their longest "
               "text, and the embedder's own pieces pre-tokenised.")
STANDALONE_MODEL = Path("~/.cache/ripple/models/all-MiniLM-L6-v2.onnx")  # Settings' default, for a machine without it


def load_texts(spec: str, n: int) -> list[str]:
    """``short`` (the bench's posts), ``mixed`` (1–14 sentences each) or a JSON file holding a list of
    texts; the first ``n``."""
    from processors.sample_data import mixed_texts, post_texts

    if spec == "short":
        return post_texts(n)
    if spec == "mixed":
        return mixed_texts(n)
    try:
        texts = json.loads(Path(spec).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--texts {spec}: not 'short', 'mixed' or a readable JSON file ({exc})") from None
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise SystemExit(f"{spec}: expected a JSON list of strings")
    return texts[:n]


def reference_cosine(embedder, reference: Path) -> float:
    """Lowest cosine between ``embedder``'s embeddings and a reference file's (``texts``, ``embeddings``)."""
    import numpy as np

    ref = json.loads(Path(reference).read_text(encoding="utf-8"))
    got, want = embedder.embed(ref["texts"]), np.asarray(ref["embeddings"], dtype=np.float32)
    cos = (got * want).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    return float(cos.min())


def fp16_copy(model: Path) -> Path:
    """``<model>-fp16.onnx`` beside ``model``, converted again unless it was made from this very export
    (same format, weights and export time in the metadata; file times can lie after a copy)."""
    from models.onnx_export import convert_fp16, read_metadata

    out = model.with_name(model.stem + "-fp16.onnx")
    keys = ("ripple.format_version", "ripple.weights_sha256", "ripple.exported_at")
    if out.is_file():
        have, want = read_metadata(out), read_metadata(model)
        if have.get("ripple.precision") == "fp16" and all(have.get(k) == want.get(k) for k in keys):
            return out
    print(f"writing a float16 copy to {out}", file=sys.stderr, flush=True)
    return convert_fp16(model, out)


def add_arguments(p: argparse.ArgumentParser, *, standalone: bool) -> None:
    """The command's options.  ``standalone`` (``python -m models.bench_embed``) adds ``--provider``;
    ``ripple model bench`` takes the provider from its settings (``--onnx-provider``)."""
    p.add_argument("--model-path", dest="model_path", type=Path, default=None,
                   help="exported ONNX model, exported there first if missing (default: "
                        + ("~/.cache/ripple/models/all-MiniLM-L6-v2.onnx)" if standalone else
                           "<home>/models/<RIPPLE_MODEL>.onnx or RIPPLE_MODEL_PATH)"))
    p.add_argument("--models", default=None, metavar="NAME[,NAME]",
                   help="registry models measured one after the other in this run, each against its own raw "
                        "session, e.g. all-MiniLM-L6-v2,multilingual-e5-small (files under <home>/models, exported "
                        "if missing)")
    if standalone:
        p.add_argument("--provider", choices=["auto", "cuda", "cpu"], default="auto",
                       help="onnxruntime provider (default: auto, CUDA if available)")
    p.add_argument("--texts", default="short",
                   help="'short' (the bench's posts), 'mixed' (1 to 14 sentences each) or a JSON list file "
                        "(default: short)")
    p.add_argument("-n", "--n-texts", type=positive_int, default=2000, help="texts embedded per measurement (default: 2000)")
    p.add_argument("--batch-sizes", type=positive_ints, default=None,
                   help="comma-separated texts per call (default: " +
                        ("64, the worker's default)" if standalone else "the worker's, RIPPLE_EMBED_BATCH_SIZE)"))
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="alternated measurements of each; the best is kept (default: 3)")
    p.add_argument("--fp16", action="store_true",
                   help="also measure a float16 copy of the model, written beside it as *-fp16.onnx (for CUDA)")
    p.add_argument("--reference", type=Path, default=None,
                   help="JSON with 'texts' and 'embeddings': print the lowest cosine to them per model")
    p.add_argument("--json", type=Path, default=None, help="also write the results there")


def main(argv: list[str] | None = None) -> int:
    """``python -m models.bench_embed``: everything from the flags, no Ripple settings."""
    p = argparse.ArgumentParser(prog="python -m models.bench_embed", description=DESCRIPTION)
    add_arguments(p, standalone=True)
    args = p.parse_args(argv)
    return run(args, model=model_paths(args, (args.model_path or STANDALONE_MODEL).expanduser(),
                                       STANDALONE_MODEL.parent.expanduser()),
               provider=args.provider, parallel=None, batch_sizes=args.batch_sizes or [64])


def model_paths(args: argparse.Namespace, default: Path, models_dir: Path) -> list[Path]:
    """The model files ``--models`` names (under ``models_dir``), else ``[default]``."""
    if not args.models:
        return [default]
    from models.registry import model_spec

    try:
        return [models_dir / model_spec(name.strip()).file_name for name in args.models.split(",")]
    except ValueError as exc:
        raise SystemExit(f"--models: {exc}") from None


def run(args: argparse.Namespace, *, model: Path | list[Path], provider: str, parallel: int | None,
        batch_sizes: list[int]) -> int:
    """Measure and print one row per model, precision and batch size (options: see ``add_arguments``)."""
    texts = load_texts(args.texts, args.n_texts)  # before any export, so a bad argument fails at once
    import onnxruntime as ort

    from models.embedder import OnnxEmbedder, ensure_model

    models = []
    for path in (model if isinstance(model, list) else [model]):
        path = ensure_model(path, progress=True)
        models += [("fp32", path)] + ([("fp16", fp16_copy(path))] if args.fp16 else [])
    print(f"onnxruntime {ort.__version__}, providers available: {', '.join(ort.get_available_providers())}; "
          f"{len(texts)} '{args.texts}' texts" + (f" (of {args.n_texts} asked for)" if len(texts) < args.n_texts else ""),
          flush=True)
    rows = []
    for precision, path in models:
        emb = OnnxEmbedder(path, provider=provider, parallel=parallel)
        raw = default_session(emb)
        head = f"{emb.model_name} {precision} on {emb.provider} (parallel {emb.parallel})"
        if args.reference is not None:
            head += f", lowest cosine to {args.reference.name}: {reference_cosine(emb, args.reference):.7f}"
        print(head, flush=True)
        print(f"  {'batch':>6} {'embed':>10} {'raw ORT':>10} {'pieces':>10} {'embed/raw':>10}", flush=True)
        for size in batch_sizes:
            emb.batch_size = size  # as the worker: one call per embed_batch_size posts, cut to that size
            r = bench(emb, texts, batch_size=size, raw_session=raw, rounds=args.rounds)
            r.update(model=emb.model_name, precision=precision, provider=emb.provider, texts=args.texts)
            rows.append(r)
            print(f"  {size:>6} {r['embedder_sps']:>10,.0f} {r['raw_sps']:>10,.0f} {r['raw_threaded_sps']:>10,.0f} "
                  f"{r['ratio']:>10.2f}", flush=True)
    print("(sentences/s; embed = OnnxEmbedder.embed with tokenising, raw ORT = default session on pre-tokenised "
          "batches, pieces = the embedder's own pieces pre-tokenised)")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
