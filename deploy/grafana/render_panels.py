"""Render the dashboard's panels to a PNG from a live Prometheus (no Grafana needed).

    python deploy/grafana/render_panels.py --prometheus http://127.0.0.1:9090 --minutes 5 \\
        --out docs/img/dashboard.png [--panel "Events consumed by topic" ...]

Every panel of ``build_dashboards.py`` (or the ones named with ``--panel``) is drawn from
``/api/v1/query_range`` with the panel's own PromQL and legend formats, in dashboard order, two
panels per line like the Grafana layout.  The dashboard's Grafana variables are replaced as
``build_dashboards.promql`` does (job ``ripple-worker``, every instance, 1-minute rates).  ``tests/integration/test_prometheus_pipeline.py`` calls
:func:`render` when ``RIPPLE_DASHBOARD_PNG`` is set, which is how ``docs/img/dashboard.png`` was
made.  Needs ``matplotlib`` (not a Ripple dependency: ``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _dashboards():
    spec = importlib.util.spec_from_file_location("build_dashboards", HERE / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def query_range(base: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    """The ``result`` of a range query (a list of ``{"metric": {...}, "values": [[t, "v"], ...]}``)."""
    params = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
    with urllib.request.urlopen(f"{base.rstrip('/')}/api/v1/query_range?{params}", timeout=30) as r:
        answer = json.load(r)
    if answer.get("status") != "success":
        raise RuntimeError(f"{expr}: {answer}")
    return answer["data"]["result"]


def legend(fmt: str, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` substitution.

    >>> legend("{{topic}}[{{partition}}]", {"topic": "likes", "partition": "0"})
    'likes[0]'
    >>> legend("{{agent}} p95", {})
    ' p95'
    """
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def _unit_formatter(unit: str):
    from matplotlib.ticker import FuncFormatter

    def fmt(v, _pos):
        if unit == "percentunit":
            return f"{v * 100:.3g}%"
        if unit == "s":
            return f"{v * 1000:.3g} ms" if 0 < abs(v) < 1 else f"{v:.3g} s"
        if unit == "ms":
            return f"{v:.3g} ms"
        if unit == "ops":
            return f"{v:.3g}/s"
        return f"{v:.3g}"

    return FuncFormatter(fmt)


def render(base: str, out: Path | str, start: float, end: float, *, step: float | None = None,
           titles: list[str] | None = None, columns: int = 2, title: str | None = None) -> Path:
    """Draw the panels over ``[start, end]`` (Unix seconds) into ``out``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboards = _dashboards()
    panels = [p for p in dashboards.panels() if titles is None or p.title in titles]
    if not panels:
        raise ValueError(f"no panel matches {titles}")
    step = step or max(1.0, round((end - start) / 240, 1))
    rows = math.ceil(len(panels) / columns)
    plt.style.use("dark_background")
    fig, axes = plt.subplots(rows, columns, figsize=(7.2 * columns, 2.9 * rows), squeeze=False)
    fig.patch.set_facecolor("#111217")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels):
        ax.set_facecolor("#181b1f")
        ax.set_title(panel.title, loc="left", fontsize=10, color="#ccccdc")
        drawn = 0
        for fmt, expr in panel.targets:
            for series in query_range(base, dashboards.promql(expr), start, end, step):
                xs = [float(t) - start for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                if all(math.isnan(y) for y in ys):
                    continue
                ax.plot(xs, ys, linewidth=1.2, label=legend(fmt, series["metric"]) or expr[:30])
                drawn += 1
        if drawn:
            ax.legend(fontsize=7, loc="upper left", ncol=2, framealpha=0.3)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#888888")
        ax.set_xlim(0, end - start)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(_unit_formatter(panel.unit))
        ax.tick_params(labelsize=7, colors="#aaaaaa")
        ax.grid(alpha=0.15)
        ax.set_xlabel("seconds", fontsize=7, color="#888888")
    fig.suptitle(title or f"Ripple overview — {time.strftime('%Y-%m-%d %H:%M', time.localtime(end))}, "
                          f"{(end - start) / 60:.1f} min, step {step:g}s", fontsize=12, color="#ccccdc")
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="base URL of Prometheus")
    parser.add_argument("--out", default="dashboard.png", help="PNG to write")
    parser.add_argument("--minutes", type=float, default=15.0, help="time range ending now")
    parser.add_argument("--step", type=float, default=None, help="query step in seconds (default: range/240)")
    parser.add_argument("--panel", action="append", dest="panels", help="panel title (repeatable; default: all)")
    args = parser.parse_args(argv)
    end = time.time()
    path = render(args.prometheus, args.out, end - 60 * args.minutes, end, step=args.step, titles=args.panels)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
