"""Conventions of every generated Grafana dashboard (``deploy/grafana/dashboards/*.json``).

Each convention is a function that returns the list of problems of one dashboard document, run on
every committed JSON file; the ``test_*_catches_*`` tests run the same function on a copy of the
dashboard broken on purpose, so a check that can no longer fail fails here.

- a ``datasource`` variable (type ``datasource``, query ``prometheus``) and ``job`` / ``instance``
  query variables (``label_values``, multi-value with *All*; ``instance`` follows ``$job``);
- every panel and query uses ``{"type": "prometheus", "uid": "${datasource}"}``, no literal uid;
- every metric selector is filtered by ``job=~"$job"`` and ``instance=~"$instance"``;
- every range (``[...]``) is a ``$__`` variable (``$__rate_interval``, ``$__range``), never ``[5m]``;
- every panel (rows aside: Grafana shows no description on a row) has a description;
- the committed JSON equals what ``deploy/grafana/build_dashboards.py`` generates now.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
FILTERS = ('job=~"$job"', 'instance=~"$instance"')


def _builder():
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILDER = _builder()


# --- walking a dashboard --------------------------------------------------------------------------
def all_panels(doc: dict) -> list[dict]:
    """Every panel, including those nested in (collapsed) rows."""
    out = []
    for panel in doc.get("panels", []):
        out.append(panel)
        out += panel.get("panels", [])
    return out


def exprs(doc: dict) -> list[tuple[str, str]]:
    """``(panel title, expr)`` of every query target."""
    return [(p.get("title", "?"), t.get("expr", "")) for p in all_panels(doc) for t in p.get("targets", [])]


def variables(doc: dict) -> dict[str, dict]:
    return {v["name"]: v for v in doc.get("templating", {}).get("list", [])}


def _query_text(variable: dict) -> str:
    query = variable.get("query", "")
    return query.get("query", "") if isinstance(query, dict) else str(query)


# --- a small PromQL scanner -----------------------------------------------------------------------
_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''
_TOKEN = re.compile(rf"{_STRING}|\{{(?:[^{{}}\"']|{_STRING})*\}}|\[[^\]]*\]"
                    r"|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|[A-Za-z_:][\w:]*|\S")
#: words that are not metric names: aggregations, their modifiers, binary operators
_KEYWORDS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN", "atan2",
}
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def selectors(expr: str) -> list[tuple[str, str]]:
    """``(metric name, matcher block)`` of every vector selector of ``expr``.

    >>> selectors('sum by (topic) (rate(x_total{job="a"}[1m])) / clamp_min(up, 1e-9)')
    [('x_total', '{job="a"}'), ('up', '')]
    """
    tokens = _TOKEN.findall(expr)
    out, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok in _LABEL_LISTS and nxt == "(":
            i = tokens.index(")", i) + 1  # skip the label list
            continue
        if re.fullmatch(r"[A-Za-z_:][\w:]*", tok) and tok not in _KEYWORDS and nxt != "(":
            has_block = nxt.startswith("{")
            out.append((tok, nxt if has_block else ""))
            i += 2 if has_block else 1
            continue
        if tok.startswith("{"):  # a selector by matchers only: {__name__=~"..."}
            out.append(("", tok))
        i += 1
    return out


def ranges(expr: str) -> list[str]:
    """The text inside every ``[...]`` of ``expr`` (range selectors and subqueries), strings ignored."""
    return [tok[1:-1].strip() for tok in _TOKEN.findall(expr) if tok.startswith("[")]


# --- the conventions ------------------------------------------------------------------------------
def datasource_variable_problems(doc: dict) -> list[str]:
    ds = variables(doc).get("datasource")
    if ds is None:
        return ["no `datasource` template variable"]
    problems = []
    if ds.get("type") != "datasource":
        problems.append(f"`datasource` variable has type {ds.get('type')!r}, not 'datasource'")
    if ds.get("query") != "prometheus":
        problems.append(f"`datasource` variable queries {ds.get('query')!r}, not 'prometheus'")
    return problems


def job_instance_variable_problems(doc: dict) -> list[str]:
    found = variables(doc)
    problems = []
    for name in ("job", "instance"):
        var = found.get(name)
        if var is None:
            problems.append(f"no `{name}` template variable")
            continue
        query = _query_text(var)
        if var.get("type") != "query" or not re.fullmatch(rf"label_values\(.*,\s*{name}\s*\)", query):
            problems.append(f"`{name}` is not a label_values(..., {name}) query variable: {query!r}")
        if not (var.get("multi") and var.get("includeAll")):
            problems.append(f"`{name}` must be multi-value with an All option")
        if var.get("datasource") != DATASOURCE_REF:
            problems.append(f"`{name}` queries {var.get('datasource')!r}, not the datasource variable")
    if "instance" in found and "$job" not in _query_text(found["instance"]):
        problems.append("the `instance` variable does not follow the selected $job")
    return problems


def datasource_reference_problems(doc: dict) -> list[str]:
    problems = []
    for panel in all_panels(doc):
        title = panel.get("title", "?")
        if panel.get("type") != "row" and "datasource" not in panel:
            problems.append(f"{title}: panel has no datasource")
        holders = [("panel", panel)] + [(f"target {t.get('refId')}", t) for t in panel.get("targets", [])]
        for what, holder in holders:
            if "datasource" in holder and holder["datasource"] != DATASOURCE_REF:
                problems.append(f"{title}: {what} datasource is {holder['datasource']!r}, not {DATASOURCE_REF}")
            if what != "panel" and "datasource" not in holder:
                problems.append(f"{title}: {what} has no datasource")
    return problems


def selector_filter_problems(doc: dict) -> list[str]:
    problems = []
    for title, expr in exprs(doc):
        found = selectors(expr)
        if not found:
            problems.append(f"{title}: no metric selector in {expr!r}")
        for metric, block in found:
            missing = [f for f in FILTERS if f not in block]
            if missing:
                problems.append(f"{title}: {metric}{block} lacks {', '.join(missing)}")
    return problems


def fixed_range_problems(doc: dict) -> list[str]:
    problems = []
    for title, expr in exprs(doc):
        for window in ranges(expr):
            if re.search(r"\d+\s*(?:ms|[smhdwy])\b", window) or not re.fullmatch(r"\$\{?__\w+\}?(?::\$\{?__\w+\}?)?", window):
                problems.append(f"{title}: fixed range [{window}] in {expr!r} (use [$__rate_interval])")
    return problems


def description_problems(doc: dict) -> list[str]:
    return [f"{p.get('title', '?')}: no description" for p in all_panels(doc)
            if p.get("type") != "row" and not str(p.get("description", "")).strip()]


def stale_file_problems(directory: Path, generated: dict[Path, str]) -> list[str]:
    """Files under ``directory`` that differ from (or are missing in) the generator's output."""
    problems = []
    on_disk = {p.name: p for p in directory.glob("*.json")}
    made = {p.name: text for p, text in generated.items()}
    for name in sorted(set(on_disk) - set(made)):
        problems.append(f"{name}: not generated by build_dashboards.py")
    for name, text in sorted(made.items()):
        if name not in on_disk:
            problems.append(f"{name}: generated but not committed")
        elif on_disk[name].read_text("utf-8") != text:
            problems.append(f"{name}: stale, run python deploy/grafana/build_dashboards.py")
    return problems


CHECKS = {
    "datasource variable": datasource_variable_problems,
    "job and instance variables": job_instance_variable_problems,
    "datasource references": datasource_reference_problems,
    "job/instance filters": selector_filter_problems,
    "no fixed ranges": fixed_range_problems,
    "descriptions": description_problems,
}


# --- the committed dashboards pass ------------------------------------------------------------------
def test_there_are_dashboards():
    assert DASHBOARD_FILES, "no dashboard JSON under deploy/grafana/dashboards"
    for path in DASHBOARD_FILES:
        assert exprs(json.loads(path.read_text("utf-8"))), f"{path.name}: no queries"


@pytest.mark.parametrize("check", list(CHECKS), ids=list(CHECKS))
@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=[p.name for p in DASHBOARD_FILES])
def test_committed_dashboard_follows_convention(path, check):
    assert CHECKS[check](json.loads(path.read_text("utf-8"))) == []


def test_committed_json_is_what_the_generator_writes():
    assert stale_file_problems(GRAFANA / "dashboards", BUILDER.outputs()) == []


def test_plain_expressions_replace_every_variable():
    """What the Prometheus tests and render_panels.py run: no Grafana variable is left."""
    plain = BUILDER.expressions()
    assert len(plain) == len(BUILDER.grafana_expressions())
    for title, expr in plain:
        assert "$" not in expr and 'job=~"ripple-worker"' in expr, (title, expr)


# --- and every check can fail ---------------------------------------------------------------------
def _mutated(mutate) -> dict:
    doc = copy.deepcopy(BUILDER.build())
    mutate(doc)
    return doc


def _first_panel(doc: dict) -> dict:
    return next(p for p in doc["panels"] if p["type"] != "row")


def _drop_variable(name):
    return lambda doc: doc["templating"]["list"].remove(variables(doc)[name])


def _set_variable(name, **fields):
    return lambda doc: variables(doc)[name].update(fields)


def _set_first_expr(expr):
    return lambda doc: _first_panel(doc)["targets"][0].update(expr=expr)


MUTATIONS = [
    ("datasource variable", _drop_variable("datasource")),
    ("datasource variable", _set_variable("datasource", type="query")),
    ("datasource variable", _set_variable("datasource", query="loki")),
    ("job and instance variables", _drop_variable("job")),
    ("job and instance variables", _drop_variable("instance")),
    ("job and instance variables", _set_variable("job", multi=False)),
    ("job and instance variables", _set_variable("instance", query="label_values(up, instance)")),
    ("job and instance variables", _set_variable("job", type="custom")),
    ("datasource references", lambda doc: _first_panel(doc).update(datasource={"type": "prometheus", "uid": "ripple-prometheus"})),
    ("datasource references", lambda doc: _first_panel(doc)["targets"][0].update(datasource={"uid": "abc123"})),
    ("datasource references", lambda doc: _first_panel(doc)["targets"][0].pop("datasource")),
    ("datasource references", lambda doc: _first_panel(doc).update(datasource="Prometheus")),
    ("job/instance filters", _set_first_expr("sum(rate(ripple_events_consumed_total[$__rate_interval]))")),
    ("job/instance filters", _set_first_expr('sum(up{job=~"$job"})')),
    ("job/instance filters", _set_first_expr(
        'sum(rate(a_total{job=~"$job", instance=~"$instance"}[$__rate_interval])) / sum(rate(b_total[$__rate_interval]))')),
    ("no fixed ranges", _set_first_expr('sum(rate(x_total{job=~"$job", instance=~"$instance"}[1m]))')),
    ("no fixed ranges", _set_first_expr('sum(increase(x_total{job=~"$job", instance=~"$instance"}[15m]))')),
    ("no fixed ranges", _set_first_expr('max_over_time(x{job=~"$job", instance=~"$instance"}[$__rate_interval:30s])')),
    ("no fixed ranges", _set_first_expr('deriv(x{job=~"$job", instance=~"$instance"}[$interval])')),
    ("descriptions", lambda doc: _first_panel(doc).update(description="")),
    ("descriptions", lambda doc: _first_panel(doc).pop("description")),
]


@pytest.mark.parametrize("check, mutate", MUTATIONS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(MUTATIONS)])
def test_check_catches_a_broken_dashboard(check, mutate):
    assert CHECKS[check](BUILDER.build()) == [], "the generated dashboard itself must pass"
    assert CHECKS[check](_mutated(mutate)), f"{check}: a broken dashboard passed"


def test_stale_check_catches_edited_missing_and_stray_files(tmp_path):
    generated = {tmp_path / path.name: text for path, text in BUILDER.outputs().items()}
    for path, text in generated.items():
        path.write_text(text, "utf-8")
    assert stale_file_problems(tmp_path, generated) == []
    path, text = next(iter(generated.items()))
    path.write_text(text.replace("$__rate_interval", "1m"), "utf-8")
    assert stale_file_problems(tmp_path, generated)
    path.unlink()
    assert stale_file_problems(tmp_path, generated)
    path.write_text(text, "utf-8")
    (tmp_path / "hand-made.json").write_text("{}", "utf-8")
    assert stale_file_problems(tmp_path, generated)


def test_selector_scanner_sees_every_selector():
    assert selectors('sum by (topic) (rate(x_total{job="a"}[1m])) / clamp_min(sum by (topic) (y), 1e-9)') == [
        ("x_total", '{job="a"}'), ("y", "")]
    assert selectors('histogram_quantile(0.95, sum by (le) (rate(h_bucket{a="}"}[5m])))') == [("h_bucket", '{a="}"}')]
    assert selectors('topk(10, max by (topic, partition) (lag))') == [("lag", "")]
    assert ranges('rate(x{a="[1m]"}[$__rate_interval])') == ["$__rate_interval"]
