"""``ripple eval replies``: offline 1-of-N response selection on real (message, reply) pairs.

Data: the English YAML conversations shipped in the ``chatterbot-corpus`` wheel (located with
importlib and read as files; chatterbot itself is never imported).  Consecutive turns of a
conversation give ``(message, reply)`` pairs.  For every pair the true reply is hidden among
``n_candidates - 1`` replies drawn at random from other pairs (never an identical reply, nor
a reply to the same message), and each ranker orders the candidates:

* **Ripple** — dual-encoder cosine between the message and reply embeddings (the relevance
  term of ``processors.replies.suggest``; the log-prior is left out because held-out
  candidates have no usage counts);
* **BM25** — Okapi BM25 of the reply given the message words (k1=1.5, b=0.75, statistics
  over all replies of the corpus).

Ties are broken at random (seeded).  Reported: recall@1 and recall@3 per ranker.

Examples
--------
>>> bm = BM25(["the cat sat", "a dog barked", "cats and dogs"])
>>> [round(float(s), 3) for s in bm.scores("cat", [0, 1, 2])]
[0.981, 0.0, 0.0]
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from processors.protocols import Embedder

_WORDS = re.compile(r"[a-z0-9']+|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
#: ``--lang`` → chatterbot-corpus directory
CORPORA = {"en": "english", "zh": "chinese"}


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens, and each Chinese character as a token (the BM25 analyser).

    >>> tokens("Nice run! 我今天跑了10公里")
    ['nice', 'run', '我', '今', '天', '跑', '了', '10', '公', '里']
    """
    return _WORDS.findall(text.lower())


class BM25:
    """Okapi BM25 over a fixed document collection (documents addressed by index)."""

    def __init__(self, docs: Sequence[str], k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        self.tf = [Counter(tokens(d)) for d in docs]
        self.len = np.array([sum(c.values()) for c in self.tf], dtype=np.float64)
        self.avgdl = float(self.len.mean()) if len(docs) else 0.0
        df = Counter(t for c in self.tf for t in c)
        n = len(docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    def scores(self, query: str, doc_ids: Sequence[int]) -> np.ndarray:
        """BM25 score of each document in ``doc_ids`` for ``query``."""
        q = [t for t in set(tokens(query)) if t in self.idf]
        out = np.zeros(len(doc_ids), dtype=np.float64)
        for j, d in enumerate(doc_ids):
            tf, norm = self.tf[d], self.k1 * (1 - self.b + self.b * self.len[d] / max(self.avgdl, 1e-9))
            out[j] = sum(self.idf[t] * tf[t] * (self.k1 + 1) / (tf[t] + norm) for t in q if t in tf)
        return out


def corpus_dir(language: str = "english") -> Path:
    """Directory of the chatterbot-corpus YAML files for ``language`` (no import of the package)."""
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("chatterbot-corpus is not installed: pip install --no-deps chatterbot-corpus")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / language


def load_pairs(language: str = "english") -> list[tuple[str, str]]:
    """Distinct ``(message, reply)`` pairs from consecutive conversation turns, file order."""
    import yaml  # data-loading only; PyYAML ships with the eval extra

    pairs: dict[tuple[str, str], None] = {}
    for path in sorted(corpus_dir(language).glob("*.yml")):
        doc = yaml.safe_load(path.read_text("utf-8")) or {}
        for conv in doc.get("conversations") or []:
            turns = [str(t).strip() for t in conv if t is not None and str(t).strip()]
            for msg, reply in zip(turns, turns[1:]):
                pairs[(msg, reply)] = None
    return list(pairs)


def _rank(scores: np.ndarray, rng: np.random.Generator) -> int:
    """0-based rank of candidate 0 (the true reply), ties broken at random."""
    true = scores[0]
    above = int(np.sum(scores[1:] > true))
    ties = int(np.sum(scores[1:] == true))
    return above + (int(rng.integers(0, ties + 1)) if ties else 0)


def _key(text: str) -> str:
    return " ".join(tokens(text))


def run_reply_eval(
    embedder: Embedder,
    n_candidates: int = 100,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
    pairs: Sequence[tuple[str, str]] | None = None,
    batch_size: int = 64,
    lang: str = "en",
) -> dict:
    """1-of-``n_candidates`` recall@1/3 of Ripple's cosine ranker and BM25 on the same draws.

    Parameters
    ----------
    embedder
        Any ``Embedder`` (``models.embedder.OnnxEmbedder`` for real figures).
    limit
        Evaluate a seeded random sample of this many pairs (distractors still come from all).
    pairs
        Use these pairs instead of the chatterbot corpus (tests).
    lang
        Which chatterbot-corpus conversations: ``en`` (english) or ``zh`` (chinese).
    """
    t0 = time.perf_counter()
    pairs = list(pairs) if pairs is not None else load_pairs(CORPORA[lang])
    replies = list(dict.fromkeys(r for _, r in pairs))
    reply_id = {r: i for i, r in enumerate(replies)}
    reply_key = [_key(r) for r in replies]
    if len({*reply_key}) < n_candidates:
        raise ValueError(f"only {len(set(reply_key))} distinct replies; need {n_candidates}")
    answers: dict[str, set[str]] = {}  # message → keys of all its replies in the corpus
    for m, r in pairs:
        answers.setdefault(_key(m), set()).add(_key(r))

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    chosen = [pairs[i] for i in (order[:limit] if limit is not None else order)]

    messages = list(dict.fromkeys(m for m, _ in chosen))
    msg_vec = _embed(embedder, messages, batch_size, progress, "embed messages")
    rep_vec = _embed(embedder, replies, batch_size, progress, "embed replies")
    msg_id = {m: i for i, m in enumerate(messages)}
    bm25 = BM25(replies)

    hits = {"ripple": np.zeros(2), "bm25": np.zeros(2)}
    for msg, reply in tqdm(chosen, desc="rank 1-of-%d" % n_candidates, disable=not progress, file=sys.stderr):
        banned = answers[_key(msg)]
        cands = [reply_id[reply]]
        seen = {reply_key[cands[0]]}
        while len(cands) < n_candidates:
            j = int(rng.integers(len(replies)))
            if reply_key[j] not in banned and reply_key[j] not in seen:
                cands.append(j)
                seen.add(reply_key[j])
        for name, scores in (("ripple", rep_vec[cands] @ msg_vec[msg_id[msg]]), ("bm25", bm25.scores(msg, cands))):
            r = _rank(np.asarray(scores, dtype=np.float64), rng)
            hits[name] += (r < 1, r < 3)
    n = len(chosen)
    result = {
        "pairs": n,
        "corpus_pairs": len(pairs),
        "distinct_replies": len(replies),
        "n_candidates": n_candidates,
        "seed": seed,
        "lang": lang,
        "seconds": round(time.perf_counter() - t0, 2),
        "random": {"recall@1": 1 / n_candidates, "recall@3": 3 / n_candidates},
    }
    for name, h in hits.items():
        result[name] = {"recall@1": float(h[0] / n) if n else 0.0, "recall@3": float(h[1] / n) if n else 0.0}
    return result


def run_suggester_eval(embedder: Embedder, pairs: Sequence[tuple[str, str]], *, lang: str = "en", k: int = 3,
                       sentiment=None, calibration=None, progress: bool = True, batch_size: int = 64) -> dict:
    """Ripple's suggester end to end: the corpus replies join the seed bank as learned replies,
    and each message goes through :meth:`ReplySuggester.suggestions` (threshold, intent context,
    prior, echo and sentiment rules, one per intent, abstaining when nothing fits).  A *hit* is a
    suggestion that is one of the message's replies in the corpus.  Reported: how often it answers,
    recall when it answers (a hit among its suggestions), precision (hits per suggestion sent), and
    plain cosine top-``k`` over the same bank, which always answers, for comparison."""
    from processors.calibration import REFERENCE
    from processors.reply_bank import ResponseBank
    from processors.reply_texts import load_seed
    from processors.replies import ReplyConfig, ReplySuggester

    languages = ("en",) if lang == "en" else ("en", lang)
    bank = ResponseBank(seed=load_seed(languages), sentiment=sentiment)
    keys: dict[str, set[str]] = {}
    for msg, reply in pairs:
        key = bank.learnable_key(reply)
        if key is not None:
            keys.setdefault(msg, set()).add(key)
            bank.restore_entry(key, {"source": "learned", "count": 5.0, "last_ts": 0.0, "users": ["a", "b", "c"]})
    bank.embed_pending(embedder)
    cal = (calibration or {}).get(lang, REFERENCE)
    suggester = ReplySuggester(bank, ReplyConfig(k=k).calibrated(cal))
    messages = sorted(keys)
    vectors = _embed(embedder, messages, batch_size, progress, "embed messages")
    mat, entries = bank.matrix()
    answered = hits = sent = good = cos_hits = 0
    for msg, vec in zip(messages, vectors):
        score = sentiment.score(msg) if sentiment is not None else 0.0
        got = [bank.learnable_key(t) for t, _ in suggester.suggestions(vec, score, lang)]
        answered += bool(got)
        sent += len(got)
        hit = sum(g in keys[msg] for g in got)
        good += hit
        hits += hit > 0
        top = np.argsort(-(mat @ vec))[:k]
        cos_hits += any(entries[i].key in keys[msg] for i in top)
    n = len(messages)
    return {"messages": n, "bank": len(entries), "k": k, "answered": answered / n if n else 0.0,
            "recall_when_answered": hits / answered if answered else 0.0,
            "precision": good / sent if sent else 0.0,
            "recall": hits / n if n else 0.0, "cosine_recall": cos_hits / n if n else 0.0}


def _embed(embedder: Embedder, texts: list[str], batch_size: int, progress: bool, desc: str) -> np.ndarray:
    out = []
    for i in tqdm(range(0, len(texts), batch_size), desc=desc, disable=not progress, file=sys.stderr):
        out.append(np.asarray(embedder.embed(texts[i : i + batch_size]), dtype=np.float32))
    return np.concatenate(out) if out else np.zeros((0, embedder.dim), np.float32)


def format_summary(result: dict) -> str:
    """The summary table printed by ``ripple eval replies``."""
    lines = [
        f"reply selection: 1-of-{result['n_candidates']} on {result['pairs']} (message, reply) pairs "
        f"(chatterbot-corpus {CORPORA[result.get('lang', 'en')]}, seed {result['seed']}, {result['seconds']} s)",
        f"{'ranker':<28}{'recall@1':>10}{'recall@3':>10}",
        "-" * 48,
    ]
    for name, label in (("ripple", "Ripple (dual-encoder cosine)"), ("bm25", "BM25"), ("random", "random")):
        r = result[name]
        lines.append(f"{label:<28}{r['recall@1']:>10.3f}{r['recall@3']:>10.3f}")
    return "\n".join(lines)


def format_suggester(r: dict) -> str:
    """The end-to-end table printed by ``ripple eval replies``."""
    return (f"suggester end to end (seed bank + {r['bank']} replies, k={r['k']}, {r['messages']} messages): answers "
            f"{r['answered']:.1%}; recall when it answers {r['recall_when_answered']:.3f}; precision "
            f"{r['precision']:.3f}; recall over all {r['recall']:.3f} (plain cosine top-{r['k']}, always "
            f"answering: {r['cosine_recall']:.3f})")


def main(model_path: Path, *, provider: str = "auto", n_candidates: int = 100, seed: int = 0,
         limit: int | None = None, parallel: int | None = None, lang: str = "en") -> dict:
    """Entry point for the CLI: load the ONNX model, run the evaluation, print the table."""
    from models.embedder import OnnxEmbedder, ensure_model

    ensure_model(model_path)
    embedder = OnnxEmbedder(model_path, provider=provider, parallel=parallel)
    result = run_reply_eval(embedder, n_candidates=n_candidates, seed=seed, limit=limit, lang=lang)
    print(format_summary(result))
    from models.embedder import model_calibration
    from models.ngram_sentiment import RoutedSentiment
    from models.sentiment import VaderSentiment

    languages = ("en",) if lang == "en" else ("en", lang)
    result["suggester"] = run_suggester_eval(embedder, load_pairs(CORPORA[lang]), lang=lang,
                                             sentiment=RoutedSentiment(VaderSentiment()),
                                             calibration=model_calibration(embedder, languages))
    print(format_suggester(result["suggester"]))
    return result
