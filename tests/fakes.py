"""Deterministic test doubles shared by unit tests (no model, no broker)."""

from __future__ import annotations

import hashlib
import re

import numpy as np


class BagOfWords:
    """Fake embedder: hashed bag of words, L2-normalised (satisfies ``processors.protocols.Embedder``)."""

    def __init__(self, dim: int = 256):
        self.dim = dim

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z0-9']+", t.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)
