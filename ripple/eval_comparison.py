"""Ripple against the baselines on one interaction data set: embed the item texts, replay the
events prequentially through every system, summarise, plot, and format the table.

Systems, all in the same run: Ripple (:mod:`ripple.eval_ripple`; items are posts whose text is
embedded once, up front), popularity, ISGD and FunkMF (:mod:`ripple.eval_baselines`; FunkMF
with the learning rate and negatives that suit it best alone, see ``FUNKMF_LEARNING_RATE``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from processors.protocols import Embedder
from processors.calibration import REFERENCE, Calibration
from processors.recommender import RecommenderConfig
from ripple.eval_baselines import (
    FUNKMF_LEARNING_RATE,
    FUNKMF_NEGATIVES,
    ISGD,
    POP_HALF_LIFE_S,
    FactorsOnly,
    ItemTransitions,
    PeriodicEASE,
    RecentPopularity,
)
from ripple.eval_beyond import beyond_accuracy, popularity_ranks
from ripple.eval_data import Interactions
from ripple.eval_plot import plot_moving_hr, plot_sync_sweep
from ripple.eval_prequential import System, replay, summarize
from ripple.eval_ripple import RippleSystem, eval_config
from ripple.eval_sharded import STREAM_RATE, ShardedRipple
from ripple.settings import SYNC_INTERVAL_S


def embed_items(embedder: Embedder, texts: Sequence[str], batch_size: int = 256, progress: bool = True) -> np.ndarray:
    out = [np.zeros((0, embedder.dim), dtype=np.float32)]
    for i in tqdm(range(0, len(texts), batch_size), desc="embed items", unit="batch", disable=not progress, file=sys.stderr):
        out.append(np.asarray(embedder.embed(list(texts[i:i + batch_size])), dtype=np.float32))
    return np.concatenate(out)


def build_systems(data: Interactions, embeddings: np.ndarray, k: int = 10, popularity_half_life_s: float = POP_HALF_LIFE_S,
                  ripple_config: RecommenderConfig | None = None, seed: int = 0, workers: Sequence[int] = (1,),
                  sync_intervals: Sequence[float | None] = (SYNC_INTERVAL_S,),
                  stream_rate: float = STREAM_RATE, calibration: Calibration = REFERENCE) -> list[System]:
    """Ripple (real ``Recommender`` + ``ImplicitMF``) and the three baselines over ``data.items``.

    ``calibration``: of the sentence model that embedded the items (its similarity weight is
    stated on the reference model's scale, :mod:`processors.calibration`).

    ``workers`` other than 1 add Ripple sharded over that many workers, once per sync interval of
    ``sync_intervals`` (``None``: no sync; :mod:`ripple.eval_sharded`)."""
    from models.factors import ImplicitMF

    items = data.items
    t0 = data.events[0].ts if data.events else 0.0
    config = ripple_config or eval_config(len(items), k)
    config = replace(config, rank=config.rank.calibrated(calibration))
    sharded = [ShardedRipple(items, embeddings, config, n, interval, factors=lambda: ImplicitMF(seed=42 + seed), t0=t0,
                             stream_rate=stream_rate)
               for n in workers if n > 1 for interval in sync_intervals]
    ripple = [RippleSystem(items, embeddings, config, factors=ImplicitMF(seed=42 + seed), t0=t0),
              RippleSystem(items, embeddings, config, factors=ImplicitMF(seed=42 + seed), t0=t0,
                           name="Ripple (learned blend)", learn_blend=True)] if 1 in workers else []
    ease = PeriodicEASE(items, refit_every=max(1, len(data.events) // 20))  # every 5 % of the stream
    return ripple + sharded + [
        RecentPopularity(items, popularity_half_life_s),
        ISGD(items, seed=seed),
        FactorsOnly(items, ImplicitMF(learning_rate=FUNKMF_LEARNING_RATE, seed=42 + seed), negatives=FUNKMF_NEGATIVES,
                    seed=seed),
        ItemTransitions(items),
    ] + ([ease] if ease.enabled else [])


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
    emb = None
    if systems is None:
        t = time.perf_counter()
        emb = embed_items(embedder, [data.texts[i] for i in data.items], progress=progress)
        embed_s = time.perf_counter() - t
        systems = build_systems(data, emb, k, **system_options)
    item_index = {item: j for j, item in enumerate(data.items)}
    t = time.perf_counter()
    traces = replay(events, systems, k, progress, item_index=item_index)
    replay_s = time.perf_counter() - t
    beyond = beyond_accuracy(traces, len(data.items), popularity_ranks(item_index, (e.item for e in events)), emb)
    result = {
        "dataset": data.name,
        "events": len(events),
        "scored": int(len(next(iter(traces.values())).ranks)) if traces else 0,
        "users": len({e.user for e in events}),
        "items": len(data.items),
        "k": k,
        "embed_s": round(embed_s, 2),
        "replay_s": round(replay_s, 2),
        "systems": {name: {**m, **beyond.get(name, {})} for name, m in summarize(traces, k).items()},
        "sync": {s.name: s.traffic() for s in systems if isinstance(s, ShardedRipple) and s.states},
    }
    if report_after:
        at = next(iter(traces.values())).scored_at if traces else None
        result["after"] = {"from": report_after, "scored": int((at >= report_after).sum()) if at is not None else 0,
                           "systems": summarize(traces, k, after=report_after)}
    if out_png is not None:
        result["plot"] = str(plot_moving_hr(traces, out_png, k, window, title=f"{data.name}: prequential HR@{k} "
                                                                        f"(moving window {window} events)",
                                                    mark=report_after))
        sweep = _sync_sweep(systems, result["systems"], k)
        if sweep is not None and "Ripple" in result["systems"]:
            sync_png = Path(out_png).with_name(Path(out_png).stem + "-sync.png")
            result["sync_plot"] = str(plot_sync_sweep(sweep, result["systems"]["Ripple"][f"HR@{k}"], sync_png, k,
                                                      title=f"{data.name}: HR@{k} against the model-sync interval "
                                                            f"({systems_rate(systems):g} events/s)"))
    result["seconds"] = round(time.perf_counter() - t_start, 2)
    result["traces"] = traces
    return result


def format_summary(result: dict) -> str:
    """The table printed by ``ripple eval recs``."""
    k = result["k"]
    w = max([12] + [len(n) + 2 for n in result["systems"]])
    lines = [f"prequential top-{k} on {result['dataset']}: {result['events']} events ({result['scored']} scored), "
             f"{result['users']} users, {result['items']} items; replay {result['replay_s']:.0f} s",
             f"{'system':<{w}}{f'HR@{k}':>9}{f'NDCG@{k}':>10}{'µs/event':>11}{'recommend µs':>14}{'learn µs':>10}"
             f"{'coverage':>10}{'novelty':>9}{'diversity':>11}",
             "-" * (w + 84)]
    for name, m in result["systems"].items():
        lines.append(f"{name:<{w}}{m[f'HR@{k}']:>9.4f}{m[f'NDCG@{k}']:>10.4f}{m['us_per_event']:>11.0f}"
                     f"{m['recommend_us']:>14.0f}{m['learn_us']:>10.0f}"
                     f"{m.get('coverage', float('nan')):>10.3f}{m.get('novelty', float('nan')):>9.0f}"
                     f"{m.get('diversity', float('nan')):>11.3f}")
    lines.append("(coverage: share of the catalog ever recommended; novelty: mean popularity rank of recommended "
                 "items, 1 = most popular; diversity: 1 - mean cosine between a list's item embeddings)")
    lines += _ratios(result["systems"], k) + _sharding(result["systems"], k)
    for name, t in result.get("sync", {}).items():
        lines.append(f"{name}: model sync per worker {t['messages_per_s']:.2f} messages/s, {t['kb_per_s']:.1f} kB/s "
                     f"sent (each worker applies {t['workers'] - 1}x that), at {t['stream_rate']:g} events/s")
    if "after" in result:
        after = result["after"]
        lines += ["", f"events after the first {after['from']} only ({after['scored']} scored):",
                  f"{'system':<{w}}{f'HR@{k}':>9}{f'NDCG@{k}':>10}", "-" * (w + 19)]
        lines += [f"{name:<{w}}{m[f'HR@{k}']:>9.4f}{m[f'NDCG@{k}']:>10.4f}" for name, m in after["systems"].items()]
        lines += _ratios(after["systems"], k)
    if "plot" in result:
        lines.append(f"moving HR@{k} plot: {result['plot']}")
    if "sync_plot" in result:
        lines.append(f"HR@{k} against the sync interval: {result['sync_plot']}")
    return "\n".join(lines)


def _sync_sweep(systems, summary: dict, k: int) -> dict[int, list] | None:
    """Workers → [(sync interval, HR@k)] of the sharded systems, when some count was run with
    more than one interval (a sweep worth a plot)."""
    points: dict[int, list] = {}
    for s in systems:
        if isinstance(s, ShardedRipple):
            points.setdefault(len(s.shards), []).append((s.interval, summary[s.name][f"HR@{k}"]))
    return points if any(len(p) > 1 for p in points.values()) else None


def systems_rate(systems) -> float:
    return next((s.stream_rate for s in systems if isinstance(s, ShardedRipple)), STREAM_RATE)


def _sharding(s: dict[str, dict], k: int) -> list[str]:
    """``Ripple xN …`` against one worker's Ripple."""
    one = s.get("Ripple", {}).get(f"HR@{k}", 0.0)
    return [f"{name} HR@{k} = {m[f'HR@{k}'] / one:.3f}x one worker" for name, m in s.items()
            if name.startswith("Ripple x") and one > 0]


def _ratios(s: dict[str, dict], k: int) -> list[str]:
    """Ripple against popularity, the best other baseline and the periodic item-item model."""
    if "Ripple" not in s or "popularity" not in s or s["popularity"][f"HR@{k}"] <= 0:
        return []
    hr = lambda n: s[n][f"HR@{k}"]  # noqa: E731
    others = [n for n in s if n != "popularity" and not n.startswith("Ripple")]
    best = max(others, key=hr, default=None)
    line = f"Ripple HR@{k} = {hr('Ripple') / hr('popularity'):.2f}x popularity"
    if best is not None and hr(best) > 0:
        line += f", {hr('Ripple') / hr(best):.2f}x the best other baseline ({best})"
    if "EASE (periodic)" in s and hr("EASE (periodic)") > 0 and best != "EASE (periodic)":
        line += f", {hr('Ripple') / hr('EASE (periodic)'):.2f}x EASE (periodic)"
    return [line]
