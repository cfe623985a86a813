"""Small protocols at every seam between the pure domain and its adapters."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of shape ``(len(texts), dim)``."""

    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class FactorModel(Protocol):
    """Online implicit-feedback factor model (user × item)."""

    def learn(self, user: str, item: str, negatives: Sequence[str] = ()) -> None:
        """Learn one positive (user, item) and the given sampled negatives."""

    def scores(self, user: str, items: Sequence[str]) -> np.ndarray:
        """Preference scores for ``items`` (higher is better), shape ``(len(items),)``."""

    version: str


class Clock(Protocol):
    def __call__(self) -> float:
        """Seconds (monotonic or wall; callers only compare differences)."""
