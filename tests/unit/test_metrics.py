"""streams.metrics: one declaration per metric, bounded labels, helpers, lag sampling, exposition."""

from __future__ import annotations

import ast
import asyncio
import doctest
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from processors.events import Rejected, decode
from streams import metrics, metrics_sources

ROOT = Path(__file__).resolve().parents[2]
METRIC_CLASSES = {"Counter", "Gauge", "Histogram", "Summary", "Info", "Enum"}


def value(name: str, **labels) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def ripple_families():
    """Families of Ripple's own metrics (Faust's ``ripple_faust_*`` belong to Faust)."""
    return [f for f in metrics.REGISTRY.collect() if f.name.startswith("ripple_") and not f.name.startswith("ripple_faust_")]


# --- declared once, in one module ---------------------------------------------------------------
def _declared_names(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in METRIC_CLASSES:
            first = node.args[0]
            assert isinstance(first, ast.Constant), f"metric name must be a literal in {path}:{node.lineno}"
            names.append(first.value)
    return names


def test_every_metric_is_declared_once_with_the_ripple_prefix():
    names = _declared_names(ROOT / "streams" / "metrics.py")
    serve = set(metrics.ServiceMetrics.NAMES)  # `ripple serve`'s own registry
    assert serve <= set(names) and len(names) == len(metrics.ALL_METRICS) + len(serve)
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert all(n.startswith("ripple_") for n in names), names
    assert {m._name for m in metrics.ALL_METRICS} == set(names) - serve


def test_no_other_module_declares_metrics():
    offenders = []
    for package in ("ripple", "streams", "processors", "models", "devtools"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "streams" / "metrics.py":
                continue
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                if any(m.split(".")[0] == "prometheus_client" or m == "faust.sensors.prometheus" for m in modules):
                    offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"metrics must be declared in streams/metrics.py only: {offenders}"


def test_label_names_are_limited_to_the_allowed_set():
    for metric in metrics.ALL_METRICS:
        assert set(metric._labelnames) <= metrics.ALLOWED_LABELS, (metric._name, metric._labelnames)
    for family in ripple_families():
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= metrics.ALLOWED_LABELS, (sample.name, sample.labels)


def test_user_ids_and_text_never_become_label_values():
    secret = "user-8f3a-says-hello"
    metrics.record_consumed(secret, secret)
    metrics.record_dead_letter(secret, f"schema: {secret}")
    metrics.record_dead_letter("likes", f"invalid JSON: {secret}")
    metrics.record_dead_letter("likes", secret)
    metrics.record_model_update(secret)
    with metrics.observe_onnx(secret, 3):
        pass
    for family in ripple_families():
        for sample in family.samples:
            assert secret not in "".join(sample.labels.values()), sample
    assert value("ripple_events_consumed_total", topic="other", kind="other") >= 1


def test_label_values_come_from_fixed_vocabularies():
    vocab = {"topic": set(metrics.TOPICS), "reason": set(metrics.REASONS)}
    kinds = set(metrics.KINDS) | set(metrics.MODEL_KINDS) | set(metrics.ONNX_KINDS) | set(metrics.BLEND_KINDS)
    for family in ripple_families():
        if family.name == "ripple_consumer_lag":
            continue  # physical topic names and partition numbers of the consumer's assignment
        for sample in family.samples:
            for key, val in sample.labels.items():
                if key == "kind":
                    assert val in kinds, sample
                elif key in vocab:
                    assert val in vocab[key], sample


@pytest.mark.parametrize("agent", ["User 42", "engage!", "", "Engage", "x" * 49])
def test_agent_labels_must_be_code_identifiers(agent):
    with pytest.raises(ValueError):
        with metrics.observe_latency(agent):
            pass


# --- reason categories ----------------------------------------------------------------------------
def _rejection(topic: str, raw: bytes | None, **kw) -> str:
    result = decode(topic, raw, default_ts=0.0, **kw)
    assert isinstance(result, Rejected), result
    return result.reason


@pytest.mark.parametrize("reason, category", [
    (_rejection("likes", b"{not json"), "invalid_json"),
    (_rejection("likes", b'{"user_id": "u1"}'), "schema"),
    (_rejection("posts", b'{"schema_version": 1, "post_id": "p", "author_id": "a", "text": "xxxxxx"}',
                max_text_chars=3), "too_long"),
    (_rejection("likes", None), "empty"),
    (_rejection("nope", b"{}"), "unknown_topic"),
    (_rejection("follows", b'{"schema_version": 1, "user_id": "u1", "followee_id": "u1"}'), "invalid_event"),
    ("processing error: KeyError: 'u42'", "processing_error"),
    ("Processing error: RuntimeError", "processing_error"),
    ("the moon is made of cheese", "other"),
    ("", "other"),
])
def test_reason_category(reason, category):
    assert metrics.reason_category(reason) == category
    assert category in metrics.REASONS


def test_dead_letter_counter_uses_the_category():
    before = value("ripple_dead_letters_total", topic="comments", reason="too_long")
    assert metrics.record_dead_letter("comments", "text too long: 9000 > 5000 characters") == "too_long"
    assert value("ripple_dead_letters_total", topic="comments", reason="too_long") == before + 1


def test_fixed_label_combinations_start_at_zero():
    for topic, kind in (("likes", "like"), ("posts", "invalid")):
        assert metrics.REGISTRY.get_sample_value("ripple_events_consumed_total", {"topic": topic, "kind": kind}) is not None
    for reason in metrics.REASONS:
        assert metrics.REGISTRY.get_sample_value("ripple_dead_letters_total", {"topic": "shares", "reason": reason}) is not None


# --- helpers ------------------------------------------------------------------------------------
def test_observe_latency_records_even_when_the_body_raises():
    before = value("ripple_processing_seconds_count", agent="unit_test_agent")
    with pytest.raises(RuntimeError):
        with metrics.observe_latency("unit_test_agent"):
            raise RuntimeError("boom")
    assert value("ripple_processing_seconds_count", agent="unit_test_agent") == before + 1


def test_event_to_recommendation_latency_is_clamped_at_zero():
    assert metrics.observe_event_to_recommendation(100.0, "engage", now=102.5) == 2.5
    assert metrics.observe_event_to_recommendation(200.0, "engage", now=100.0) == 0.0  # producer clock ahead


def test_recommendation_clock_measures_from_the_oldest_pending_event():
    clock = metrics_sources.RecommendationClock(limit=2)
    count = value("ripple_event_to_recommendation_seconds_count", agent="engage")
    clock.saw("u1", 100.0)
    clock.saw("u1", 104.0)  # still waiting since 100
    assert clock.published("u1", "engage", now=105.0) == 5.0
    assert clock.published("u1", "engage", now=106.0) is None  # nothing pending any more
    assert value("ripple_event_to_recommendation_seconds_count", agent="engage") == count + 1
    for user in ("a", "b", "c"):
        clock.saw(user, 1.0)
    assert len(clock._oldest) == 2 and "a" not in clock._oldest  # bounded: oldest user dropped


def test_published_and_model_update_counters():
    recs, sugg = value("ripple_recommendations_published_total"), value("ripple_suggestions_published_total")
    upd = value("ripple_model_updates_total", kind="factors")
    metrics.record_recommendation()
    metrics.record_suggestion(2)
    metrics.record_model_update("factors", 4)
    metrics.record_model_update("factors", 0)
    assert value("ripple_recommendations_published_total") == recs + 1
    assert value("ripple_suggestions_published_total") == sugg + 2
    assert value("ripple_model_updates_total", kind="factors") == upd + 4


def test_instrument_embed_records_batch_size_and_time():
    calls = value("ripple_onnx_inference_seconds_count", kind="post")
    texts = value("ripple_onnx_batch_size_sum", kind="post")
    embed = metrics.instrument_embed(lambda batch: [len(t) for t in batch], "post")
    assert embed(["a", "bb", "ccc"]) == [1, 2, 3]
    assert value("ripple_onnx_inference_seconds_count", kind="post") == calls + 1
    assert value("ripple_onnx_batch_size_sum", kind="post") == texts + 3


def test_embedding_queue_depth_returns_to_its_level_on_error():
    start = value("ripple_embedding_queue_depth")
    with pytest.raises(ValueError):
        with metrics.embedding_queued(5):
            assert value("ripple_embedding_queue_depth") == start + 5
            raise ValueError
    assert value("ripple_embedding_queue_depth") == start


def test_module_doctests():
    assert doctest.testmod(metrics, raise_on_error=False).failed == 0


# --- consumer lag (Faust consumer API surface; the real consumer is exercised by the worker tests) ---
class TP(tuple):
    """Stand-in for faust.types.TP (a NamedTuple of topic, partition)."""

    def __new__(cls, topic, partition):
        return super().__new__(cls, (topic, partition))

    topic = property(lambda self: self[0])
    partition = property(lambda self: self[1])


class FakeConsumer:
    def __init__(self, assigned, ends, committed, earliest=None):
        self.assigned, self.ends, self.earliest = set(assigned), ends, earliest or {}
        self._committed_offset = committed

    def assignment(self):
        return self.assigned

    async def highwaters(self, *tps):
        return {tp: self.ends[tp] for tp in tps if tp in self.ends}

    async def earliest_offsets(self, *tps):
        return {tp: self.earliest.get(tp, 0) for tp in tps}


def fake_app(consumer, topics=("likes", "comments")):
    agent = SimpleNamespace(channel=SimpleNamespace(topics=tuple(topics)))
    return SimpleNamespace(consumer=consumer, agents={"engage": agent})


def test_consumer_lag_per_partition_skips_internal_topics():
    likes0, likes1, comments0 = TP("likes", 0), TP("likes", 1), TP("comments", 0)
    changelog, assignor = TP("ripple-profiles-changelog", 0), TP("ripple-__assignor-__leader", 0)
    consumer = FakeConsumer(
        [likes0, likes1, comments0, changelog, assignor],
        ends={likes0: 120, likes1: 7, comments0: 50, changelog: 999, assignor: 3},
        committed={likes0: 100, likes1: 7},  # comments0 never committed → counted from earliest
        earliest={comments0: 10},
    )
    lags = asyncio.run(metrics_sources.sample_lag(fake_app(consumer)))
    assert lags == {("likes", 0): 20, ("likes", 1): 0, ("comments", 0): 40}
    assert value("ripple_consumer_lag", topic="likes", partition="0") == 20
    assert metrics.REGISTRY.get_sample_value("ripple_consumer_lag", {"topic": "ripple-profiles-changelog", "partition": "0"}) is None


def test_lag_series_of_revoked_partitions_disappear():
    a, b = TP("likes", 0), TP("likes", 1)
    consumer = FakeConsumer([a, b], ends={a: 5, b: 9}, committed={a: 5, b: 1})
    asyncio.run(metrics_sources.sample_lag(fake_app(consumer)))
    assert value("ripple_consumer_lag", topic="likes", partition="1") == 8
    consumer.assigned = {a}  # rebalance moved partition 1 to another worker
    asyncio.run(metrics_sources.sample_lag(fake_app(consumer)))
    assert metrics.REGISTRY.get_sample_value("ripple_consumer_lag", {"topic": "likes", "partition": "1"}) is None
    assert metrics.REGISTRY.get_sample_value("ripple_consumer_lag", {"topic": "likes", "partition": "0"}) == 0


def test_sample_lag_never_raises():
    class NotStarted(FakeConsumer):
        def assignment(self):
            raise RuntimeError("Consumer thread not yet started")

    assert asyncio.run(metrics_sources.sample_lag(fake_app(NotStarted([], {}, {})))) == {}


def test_explicit_topics_override_the_agents_sources():
    a, b = TP("likes", 0), TP("posts", 0)
    consumer = FakeConsumer([a, b], ends={a: 3, b: 4}, committed={a: 0, b: 0})
    assert asyncio.run(metrics_sources.consumer_lag(fake_app(consumer), ["posts"])) == {("posts", 0): 4}


# --- Faust sensors --------------------------------------------------------------------------------
def _faust_app(name: str):
    import faust

    return faust.App(name, broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)


def test_faust_sensors_attach_to_several_apps_in_one_process():
    from faust.sensors.prometheus import PrometheusMonitor

    first, second = _faust_app("metrics-test-a"), _faust_app("metrics-test-b")
    metrics.attach_faust_sensors(first)
    metrics.attach_faust_sensors(second)  # no "Duplicated timeseries in CollectorRegistry"
    assert isinstance(first.monitor, PrometheusMonitor)
    assert first.monitor._metrics is second.monitor._metrics
    names = {f.name for f in metrics.REGISTRY.collect()}
    assert "ripple_faust_messages_received" in names


def test_rebalance_sensor_counts_and_drops_lag_series():
    app = _faust_app("metrics-test-rebalance")
    metrics.attach_faust_sensors(app, faust_sensor=False)
    metrics.publish_lag({("likes", 3): 12})
    before = value("ripple_rebalances_total")
    for sensor in app.sensors:
        sensor.on_rebalance_start(app)
    assert value("ripple_rebalances_total") == before + 1
    assert metrics.REGISTRY.get_sample_value("ripple_consumer_lag", {"topic": "likes", "partition": "3"}) is None


# --- exposition -------------------------------------------------------------------------------
def test_exposition_over_http_on_loopback():
    metrics.record_consumed("posts", "post")
    server = metrics.start_http()  # default: 127.0.0.1, any free port
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        with urllib.request.urlopen(server.url, timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            body = response.read().decode()
    finally:
        server.close()
    assert 'ripple_events_consumed_total{kind="post",topic="posts"}' in body
    assert "# TYPE ripple_event_to_recommendation_seconds histogram" in body
    assert "process_cpu_seconds_total" in body


def test_gc_pauses_are_timed():
    import gc

    count = lambda: metrics.REGISTRY.get_sample_value("ripple_gc_pause_seconds_count")
    metrics_sources.watch_gc_pauses()
    metrics_sources.watch_gc_pauses()  # idempotent: one hook
    before = count()
    gc.collect()
    gc.collect(0)
    assert count() - before == 2
    assert metrics.REGISTRY.get_sample_value("ripple_gc_pause_seconds_sum") > 0
