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

Examples
--------
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

import time
from typing import Sequence

import numpy as np

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
