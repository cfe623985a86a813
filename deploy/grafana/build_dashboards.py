"""Build ``dashboards/ripple-overview.json`` from the panel list below (commit both).

    python deploy/grafana/build_dashboards.py           # rewrite the JSON
    python deploy/grafana/build_dashboards.py --check   # exit 1 if the committed JSON is stale

Every expression is plain PromQL (no Grafana variables), so the tests can check each one with a
real Prometheus.  Units are Grafana unit ids (``ops`` = per second, ``s``, ``ms``, ``short``,
``percentunit``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

OUT = Path(__file__).resolve().parent / "dashboards" / "ripple-overview.json"
DATASOURCE = {"type": "prometheus", "uid": "ripple-prometheus"}
WINDOW = "1m"


class Panel(NamedTuple):
    title: str
    unit: str
    targets: tuple[tuple[str, str], ...]  # (legend, PromQL)
    description: str = ""


def _quantiles(metric: str, by: str = "") -> tuple[tuple[str, str], ...]:
    group = f"{by}, le" if by else "le"
    prefix = f"{{{{{by}}}}} " if by else ""
    return tuple(
        (f"{prefix}p{int(q * 100)}",
         f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{WINDOW}])))")
        for q in (0.5, 0.95, 0.99)
    )


#: (row title, panels) — the single source of the dashboard
ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    ("Throughput", (
        Panel("Events consumed by topic", "ops", (
            ("{{topic}}", f"sum by (topic) (rate(ripple_events_consumed_total[{WINDOW}]))"),)),
        Panel("Events consumed by kind", "ops", (
            ("{{kind}}", f"sum by (kind) (rate(ripple_events_consumed_total[{WINDOW}]))"),)),
        Panel("Recommendations and suggestions published", "ops", (
            ("recommendations", f"sum(rate(ripple_recommendations_published_total[{WINDOW}]))"),
            ("suggested replies", f"sum(rate(ripple_suggestions_published_total[{WINDOW}]))"),
            ("recommendations put off (engine scoring budget)",
             f"sum(rate(ripple_recommendations_deferred_total[{WINDOW}]))"))),
        Panel("Workers up", "short", (
            ("workers up", 'sum(up{job="ripple-worker"})'),
            ("rebalances (15m)", "sum(increase(ripple_rebalances_total[15m]))"))),
    )),
    ("Lag", (
        Panel("Consumer lag by topic", "short", (
            ("{{topic}}", "sum by (topic) (ripple_consumer_lag)"),),
            "High watermark minus committed offset, summed over the partitions each worker owns."),
        Panel("Consumer lag, top 10 partitions", "short", (
            ("{{topic}}[{{partition}}]", "topk(10, max by (topic, partition) (ripple_consumer_lag))"),)),
    )),
    ("Latency", (
        Panel("Processing latency per agent", "s", _quantiles("ripple_processing_seconds", "agent")),
        Panel("Event to recommendation latency", "s", _quantiles("ripple_event_to_recommendation_seconds"),
              "From a user's oldest event not yet reflected (Kafka timestamp) to publishing their recommendations."),
        Panel("Garbage-collector pauses", "short", (
            ("seconds paused per second", f"sum(rate(ripple_gc_pause_seconds_sum[{WINDOW}]))"),
            ("collections per second", f"sum(rate(ripple_gc_pause_seconds_count[{WINDOW}]))")),
              "Python's cyclic collector in the workers (RIPPLE_GC_THRESHOLD). Long full collections show up "
              "as the latency tail."),
    )),
    ("Dead letters", (
        Panel("Dead letters by reason", "ops", (
            ("{{reason}}", f"sum by (reason) (rate(ripple_dead_letters_total[{WINDOW}]))"),)),
        Panel("Dead-letter ratio by topic", "percentunit", (
            ("{{topic}}", f"sum by (topic) (rate(ripple_dead_letters_total[{WINDOW}])) / "
                          f"clamp_min(sum by (topic) (rate(ripple_events_consumed_total[{WINDOW}])), 1e-9)"),)),
    )),
    ("Models", (
        Panel("Model updates", "ops", (
            ("{{kind}}", f"sum by (kind) (rate(ripple_model_updates_total[{WINDOW}]))"),)),
        Panel("ONNX throughput", "ops", (
            ("{{kind}} texts/s", f"sum by (kind) (rate(ripple_onnx_batch_size_sum[{WINDOW}]))"),
            ("{{kind}} calls/s", f"sum by (kind) (rate(ripple_onnx_inference_seconds_count[{WINDOW}]))"))),
        Panel("ONNX mean batch size and embedding queue", "short", (
            ("{{kind}} mean batch", f"sum by (kind) (rate(ripple_onnx_batch_size_sum[{WINDOW}])) / "
                                    f"clamp_min(sum by (kind) (rate(ripple_onnx_batch_size_count[{WINDOW}])), 1e-9)"),
            ("embedding queue", "sum(ripple_embedding_queue_depth)"))),
        Panel("ONNX inference time", "s", _quantiles("ripple_onnx_inference_seconds", "kind")),
    )),
    ("Faust", (
        Panel("Faust producer send and commit latency p95", "ms", (
            ("send p95", f"histogram_quantile(0.95, sum by (le) (rate(ripple_faust_producer_send_latency_bucket[{WINDOW}])))"),
            ("commit p95", f"histogram_quantile(0.95, sum by (le) (rate(ripple_faust_consumer_commit_latency_bucket[{WINDOW}])))"))),
        Panel("Faust messages received and sent", "ops", (
            ("received", f"sum(rate(ripple_faust_messages_received_total[{WINDOW}]))"),
            ("sent", f"sum(rate(ripple_faust_total_sent_messages_total[{WINDOW}]))"))),
    )),
)


def panels() -> list[Panel]:
    """Every panel, in dashboard order."""
    return [p for _, row in ROWS for p in row]


def expressions() -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` for every query of the dashboard."""
    return [(p.title, expr) for p in panels() for _, expr in p.targets]


def _panel_json(panel: Panel, pid: int, x: int, y: int) -> dict:
    return {
        "id": pid,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "min": 0, "custom": {"lineWidth": 1, "fillOpacity": 10}},
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
             "range": True}
            for i, (legend, expr) in enumerate(panel.targets)
        ],
    }


def build() -> dict:
    """The dashboard document (Grafana JSON model)."""
    out: list[dict] = []
    pid, y = 1, 0
    for row_title, row in ROWS:
        out.append({"id": pid, "type": "row", "title": row_title, "collapsed": False, "panels": [],
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        pid, y = pid + 1, y + 1
        for i, panel in enumerate(row):
            out.append(_panel_json(panel, pid, 12 * (i % 2), y + 8 * (i // 2)))
            pid += 1
        y += 8 * ((len(row) + 1) // 2)
    return {
        "uid": "ripple-overview",
        "title": "Ripple overview",
        "description": "Throughput, lag, latency, dead letters and models of the Ripple stream workers.",
        "tags": ["ripple", "kafka", "faust"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [],
        "panels": out,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text("utf-8") != text:
            print(f"{OUT} is stale: run python {Path(__file__).as_posix()}", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, "utf-8")
    print(f"wrote {OUT} ({len(panels())} panels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
