"""Plots of a prequential replay as PNGs (matplotlib): the moving HR@k of every system, and the
HR@k of sharded Ripple against its sync interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ripple.eval_prequential import Trace


def moving_hr(trace: Trace, window: int) -> np.ndarray:
    hit = (trace.ranks >= 0).astype(np.float64)
    window = max(1, min(window, len(hit)))
    return np.convolve(hit, np.ones(window) / window, mode="valid") if len(hit) else hit


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # optional: pip install 'ripple-recs[eval]'
        raise RuntimeError("the plot needs matplotlib: pip install matplotlib (the 'eval' extra)") from exc
    return plt


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_sync_sweep(points: dict[int, list[tuple[float | None, float]]], one_worker: float, path: Path, k: int = 10,
                    title: str = "") -> Path:
    """PNG of HR@k against the model-sync interval (log scale), one line per worker count
    (``points``: workers → [(interval s, or None for no sync; HR@k)]), with one worker's HR@k
    and each count's no-sync HR@k as horizontal lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.axhline(one_worker, color="black", linewidth=1, label=f"1 worker (HR@{k} {one_worker:.3f})")
    for i, (workers, pts) in enumerate(sorted(points.items())):
        synced = sorted((s, hr) for s, hr in pts if s is not None)
        color = f"C{i}"
        if synced:
            ax.plot([s for s, _ in synced], [hr for _, hr in synced], "o-", color=color, label=f"{workers} workers")
        for s, hr in pts:
            if s is None:
                ax.axhline(hr, color=color, linestyle=":", linewidth=1, label=f"{workers} workers, no sync")
    ax.set_xscale("log")
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("model-sync interval (s, log scale)")
    ax.set_ylabel(f"HR@{k}")
    ax.set_title(title or f"HR@{k} against the sync interval")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_moving_hr(traces: dict[str, Trace], path: Path, k: int = 10, window: int = 1000, title: str = "",
                   mark: int | None = None) -> Path:
    """PNG of the moving HR@k (trailing ``window`` scored events) of every system; ``mark``: a
    dashed line where the scored events from event index ``mark`` on begin (e.g. end of tuning)."""
    plt = _pyplot()
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
    return _save(plt, fig, path)
