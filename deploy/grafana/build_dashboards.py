"""Build ``dashboards/ripple-overview.json`` from the panel list below (commit both).

    python deploy/grafana/build_dashboards.py           # rewrite the JSON
    python deploy/grafana/build_dashboards.py --check   # exit 1 if the committed JSON is stale

The dashboard follows Grafana's conventions, checked by ``tests/unit/test_dashboards.py``:

- template variables ``datasource`` (any Prometheus data source), ``job`` and ``instance``
  (multi-value, with *All*); every panel and query uses ``{"type": "prometheus", "uid": "${datasource}"}``;
- every metric selector carries ``job=~"$job", instance=~"$instance"`` (written once, :data:`SEL`);
- every range is a Grafana variable: ``[$__rate_interval]`` for rates, quantiles and increases
  (at least four scrape intervals, growing with the zoom), ``[$__range]`` for "in the time range";
- every panel has a description: what it shows and what to do when it looks bad.

:func:`expressions` gives the same queries as plain PromQL, the variables replaced by
:data:`PLAIN` (job ``ripple-worker``, every instance, 1-minute rates), so the tests can run each one
on a real Prometheus and ``render_panels.py`` can draw them without Grafana.  Units are Grafana
unit ids (``ops`` = per second, ``s``, ``ms``, ``short``, ``percentunit``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import NamedTuple

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
OUT = OUT_DIR / "ripple-overview.json"
#: every panel and query; the ``datasource`` variable picks the Prometheus
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: the label filter of every selector (the dashboard's ``job`` and ``instance`` variables)
SEL = 'job=~"$job", instance=~"$instance"'
#: range of rates, increases and histogram quantiles
RATE = "$__rate_interval"
#: the values :func:`promql` puts in place of the Grafana variables (what *All* means on the
#: compose stack, whose Prometheus scrapes the workers as job ``ripple-worker``)
PLAIN = {"job": "ripple-worker", "instance": ".+", "__rate_interval": "1m", "__range": "15m"}


class Panel(NamedTuple):
    title: str
    unit: str
    targets: tuple[tuple[str, str], ...]  # (legend, PromQL with Grafana variables)
    description: str


def m(metric: str) -> str:
    """``metric`` filtered by the dashboard's job and instance.

    >>> m("up")
    'up{job=~"$job", instance=~"$instance"}'
    """
    return f"{metric}{{{SEL}}}"


def rate(metric: str) -> str:
    return f"rate({m(metric)}[{RATE}])"


def promql(expr: str, values: dict[str, str] | None = None) -> str:
    """``expr`` with its Grafana variables (``$name`` / ``${name}``) replaced by ``values`` (default :data:`PLAIN`).

    >>> promql('sum(rate(x{job=~"$job"}[$__rate_interval]))')
    'sum(rate(x{job=~"ripple-worker"}[1m]))'
    """
    values = PLAIN if values is None else values
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda v: values[v.group(1) or v.group(2)], expr)


def _quantiles(metric: str, by: str = "") -> tuple[tuple[str, str], ...]:
    group = f"{by}, le" if by else "le"
    prefix = f"{{{{{by}}}}} " if by else ""
    return tuple(
        (f"{prefix}p{int(q * 100)}", f"histogram_quantile({q}, sum by ({group}) ({rate(metric + '_bucket')}))")
        for q in (0.5, 0.95, 0.99)
    )


#: (row title, panels) — the single source of the dashboard
ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    ("Throughput", (
        Panel("Events consumed by topic", "ops", (
            ("{{topic}}", f"sum by (topic) ({rate('ripple_events_consumed_total')})"),),
            "Input messages per second taken off each input topic (logical name, prefix removed), invalid "
            "ones included. A topic that drops to zero while producers still write points at a stuck or "
            "crashed worker: check *Workers up*, the lag panels and `docker compose logs worker`."),
        Panel("Events consumed by kind", "ops", (
            ("{{kind}}", f"sum by (kind) ({rate('ripple_events_consumed_total')})"),),
            "The same input by decoded event kind; `invalid` counts messages rejected before decoding. A "
            "rising `invalid` line means a producer sends malformed messages: see *Dead letters by reason* "
            "and read the `dead-letter` topic."),
        Panel("Recommendations and suggestions published", "ops", (
            ("recommendations", f"sum({rate('ripple_recommendations_published_total')})"),
            ("suggested replies", f"sum({rate('ripple_suggestions_published_total')})"),
            ("recommendations put off (engine scoring budget)",
             f"sum({rate('ripple_recommendations_deferred_total')})")),
            "Output messages per second (the per-user throttle caps recommendations) and users put off to a "
            "later batch by the engine's scoring budget. A put-off line that stays above the published line "
            "means the engine cannot keep up: raise RIPPLE_ENGAGE_REC_BUDGET_S or add workers."),
        Panel("Workers up", "short", (
            ("workers up", f"sum({m('up')})"),
            ("rebalances in the time range", f"sum(increase({m('ripple_rebalances_total')}[$__range]))")),
            "Workers Prometheus scrapes successfully, and consumer-group rebalances over the dashboard's time "
            "range (each scale-up, scale-down or crash causes some). Fewer workers than replicas: "
            "`docker compose ps worker` and the worker log; rebalances that keep climbing without scaling "
            "mean workers restart or miss the session timeout."),
    )),
    ("Lag", (
        Panel("Consumer lag by topic", "short", (
            ("{{topic}}", f"sum by (topic) ({m('ripple_consumer_lag')})"),),
            "High watermark minus committed offset, summed over the partitions each worker owns; 0 when "
            "caught up. Lag that keeps growing means the workers fall behind: scale them "
            "(`docker compose up -d --scale worker=N`, useful up to the partition count) or find the slow "
            "agent in *Processing latency per agent*."),
        Panel("Consumer lag, top 10 partitions", "short", (
            ("{{topic}}[{{partition}}]",
             f"topk(10, max by (topic, partition) ({m('ripple_consumer_lag')}))"),),
            "The ten partitions furthest behind. One partition far ahead of the others is a hot key or a "
            "stuck worker: filter by *instance* to find its owner and read that worker's log."),
    )),
    ("Latency", (
        Panel("Processing latency per agent", "s", _quantiles("ripple_processing_seconds", "agent"),
              "p50/p95/p99 of the time per engine batch (`engage`) or Faust micro-batch (`embed_posts`, "
              "`suggest_replies`); a line has gaps while its agent is idle. A p99 above 1 s (alert "
              "RippleProcessingLatencyHigh): check *ONNX inference time* and the broker latency below, "
              "or lower the batch sizes."),
        Panel("Event to recommendation latency", "s", _quantiles("ripple_event_to_recommendation_seconds"),
              "From a user's oldest event not yet reflected (Kafka timestamp) to publishing their "
              "recommendations. The SLO is p95 ≤ 5 s (alert RippleRecommendationLatencySLO); when p95 "
              "climbs, look at consumer lag and *recommendations put off*, then add workers."),
        Panel("Garbage-collector pauses", "short", (
            ("seconds paused per second", f"sum({rate('ripple_gc_pause_seconds_sum')})"),
            ("collections per second", f"sum({rate('ripple_gc_pause_seconds_count')})")),
              "Python's cyclic collector in the workers: share of time spent collecting and collections per "
              "second. Long full collections show up as the latency tail; if the paused share rises after a "
              "change, tune RIPPLE_GC_THRESHOLD or bound the state (RIPPLE_PROFILE_LIMIT)."),
    )),
    ("Dead letters", (
        Panel("Dead letters by reason", "ops", (
            ("{{reason}}", f"sum by (reason) ({rate('ripple_dead_letters_total')})"),),
            "Messages per second sent to the `dead-letter` topic, by reason category. Any sustained rate "
            "means a producer sends bad input: read the `dead-letter` topic (each message carries the full "
            "reason and the source offset) and fix the producer."),
        Panel("Dead-letter ratio by topic", "percentunit", (
            ("{{topic}}", f"sum by (topic) ({rate('ripple_dead_letters_total')}) / "
                          f"clamp_min(sum by (topic) ({rate('ripple_events_consumed_total')}), 1e-9)"),),
            "Share of each topic's input that is rejected (0 on an idle topic). Above 5 % for 5 minutes "
            "fires RippleDeadLetterRateHigh: see *Dead letters by reason* for the category."),
    )),
    ("Models", (
        Panel("Model updates", "ops", (
            ("{{kind}}", f"sum by (kind) ({rate('ripple_model_updates_total')})"),),
            "Online model updates per second: profile folds, factor-model learn steps and reply-bank "
            "admissions. Profile updates should follow the engagement input; if they stop while events "
            "arrive, check the engine's partitions (alert RippleEnginePartitionsNotConsumed) and the log."),
        Panel("ONNX throughput", "ops", (
            ("{{kind}} texts/s", f"sum by (kind) ({rate('ripple_onnx_batch_size_sum')})"),
            ("{{kind}} calls/s", f"sum by (kind) ({rate('ripple_onnx_inference_seconds_count')})")),
            "Texts embedded and ONNX inference calls per second, per kind. Texts/s far below the posts and "
            "comments consumed means the embedder is the bottleneck: use the GPU image or more workers."),
        Panel("ONNX mean batch size and embedding queue", "short", (
            ("{{kind}} mean batch", f"sum by (kind) ({rate('ripple_onnx_batch_size_sum')}) / "
                                    f"clamp_min(sum by (kind) ({rate('ripple_onnx_batch_size_count')}), 1e-9)"),
            ("embedding queue", f"sum({m('ripple_embedding_queue_depth')})")),
            "How well micro-batching fills ONNX batches (RIPPLE_EMBED_BATCH_SIZE) and the posts waiting for "
            "the model. A queue that keeps growing means the model cannot keep up with the posts: see "
            "*ONNX inference time*, run on CUDA or add workers."),
        Panel("Ranking blend", "short", (
            ("{{kind}}", f"avg by (kind) ({m('ripple_blend_weight')})"),
            ("lists learnt/s ({{outcome}})", f"sum by (outcome) ({rate('ripple_blend_lists_total')})")),
            "The weight of each ranking feature in the blend the workers rank with (learnt from the lists "
            "users were sent; the configured weights until RIPPLE_BLEND_MIN_LISTS engaged lists were learnt) "
            "and the lists labelled per second, engaged (learnt) or ignored. A weight that runs away, or engaged lists falling "
            "towards zero, means the learnt blend hurts: set RIPPLE_BLEND_LEARNING=false and compare."),
        Panel("ONNX inference time", "s", _quantiles("ripple_onnx_inference_seconds", "kind"),
              "p50/p95/p99 of one ONNX call (tokenise + run + pool), queueing excluded; CPU vs CUDA shows "
              "here. A rise without bigger batches means the CPU is saturated: check the host's load or "
              "move the worker to the GPU image."),
    )),
    ("Faust", (
        Panel("Faust producer send and commit latency p95", "ms", (
            ("send p95", "histogram_quantile(0.95, sum by (le) "
                         f"({rate('ripple_faust_producer_send_latency_bucket')}))"),
            ("commit p95", "histogram_quantile(0.95, sum by (le) "
                           f"({rate('ripple_faust_consumer_commit_latency_bucket')}))")),
            "Broker round trips as the Faust app sees them, in milliseconds (the engagement engine's own "
            "clients are not included). Hundreds of ms or more point at the broker: check Kafka's health "
            "and disk (`docker compose logs kafka`)."),
        Panel("Faust messages received and sent", "ops", (
            ("received", f"sum({rate('ripple_faust_messages_received_total')})"),
            ("sent", f"sum({rate('ripple_faust_total_sent_messages_total')})")),
            "Messages in and out of the Faust app (posts, comments, suggested replies, the posts changelog); "
            "the engagement engine's traffic is not included. Received at zero while *Events consumed* "
            "shows posts or comments means the Faust agents are stuck: restart the worker and read its log."),
    )),
)


def panels() -> list[Panel]:
    """Every panel, in dashboard order."""
    return [p for _, row in ROWS for p in row]


def grafana_expressions() -> list[tuple[str, str]]:
    """``(panel title, query)`` for every query of the dashboard, as Grafana runs it (with variables)."""
    return [(p.title, expr) for p in panels() for _, expr in p.targets]


def expressions(values: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` for every query, the variables replaced by :func:`promql`."""
    return [(title, promql(expr, values)) for title, expr in grafana_expressions()]


def _query_variable(name: str, label: str, query: str) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,  # on time-range change: replicas come and go
        "regex": "",
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
        "skipUrlSync": False,
    }


def variables() -> list[dict]:
    """The dashboard's template variables: data source, then job, then instance (which depends on job)."""
    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "regex": "", "refresh": 1, "multi": False, "includeAll": False, "options": [],
         "hide": 0, "skipUrlSync": False},
        # jobs whose targets export Ripple's metrics (not Prometheus' own job)
        _query_variable("job", "Job", "label_values(ripple_events_consumed_total, job)"),
        # every scraped target of those jobs, down ones included (so a dead worker can be selected)
        _query_variable("instance", "Instance", 'label_values(up{job=~"$job"}, instance)'),
    ]


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
        "templating": {"list": variables()},
        "annotations": {"list": []},
        "links": [],
        "panels": out,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def outputs() -> dict[Path, str]:
    """Every generated dashboard file and its text (the committed JSON must equal it)."""
    return {OUT: render()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON differs")
    args = parser.parse_args(argv)
    files = outputs()
    if args.check:
        stale = [path for path, text in files.items() if not path.exists() or path.read_text("utf-8") != text]
        for path in stale:
            print(f"{path} is stale: run python {Path(__file__).as_posix()}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        print(f"wrote {path} ({len(panels())} panels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
