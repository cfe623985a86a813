"""Throughput of an ``OnnxEmbedder`` against a raw onnxruntime session fed pre-tokenised arrays.

The ratio ``embedder / raw`` is the cost of tokenising and batching inside ``embed``: near 1
means the model dominates.  ``pad_to`` pads the baseline's arrays to a fixed length (e.g. the
128 the shipped ``tokenizer.json`` asks for) to show what padding to the longest text saves.

Examples
--------
>>> class Fake:  # any object with tokenize/session/embed works
...     def tokenize(self, texts):
...         n = len(texts)
...         return np.ones((n, 3), np.int64), np.ones((n, 3), np.int64)
...     class session:
...         @staticmethod
...         def run(names, feed):
...             return [np.zeros((len(feed["input_ids"]), 2), np.float32)]
...     def embed(self, texts):
...         return np.zeros((len(texts), 2), np.float32)
>>> r = bench(Fake(), ["a"] * 8, batch_size=4)
>>> sorted(r)
['batch_size', 'embedder_sps', 'n_texts', 'pad_to', 'ratio', 'raw_sps']
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

OUTPUT = "sentence_embedding"


def bench(embedder, texts: Sequence[str], batch_size: int, pad_to: int | None = None) -> dict:
    """Sentences per second of ``embedder.embed`` and of the raw session, one batch at a time.

    Parameters
    ----------
    embedder
        An ``OnnxEmbedder`` (uses its ``tokenize``, ``session`` and ``embed``).
    texts
        Texts to embed; each is embedded once per measurement (after one warm-up batch).
    batch_size
        Texts per call, for both measurements.
    pad_to
        Fixed padded length for the baseline arrays; ``None`` pads each batch to its longest text.

    Returns
    -------
    dict
        ``embedder_sps``, ``raw_sps``, ``ratio`` (embedder / raw) and the parameters.
    """
    batches = [list(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
    feeds = []
    for batch in batches:  # pre-tokenised outside the timed loop
        ids, mask = embedder.tokenize(batch)
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

    embedder_sps = rate(embedder.embed, batches)
    raw_sps = rate(lambda feed: embedder.session.run([OUTPUT], feed), feeds)
    return {"n_texts": len(texts), "batch_size": batch_size, "pad_to": pad_to,
            "embedder_sps": embedder_sps, "raw_sps": raw_sps, "ratio": embedder_sps / raw_sps}
