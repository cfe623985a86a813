"""Every Prometheus metric Ripple exports, declared once, plus the small helpers agents call.

All metrics live in :data:`REGISTRY` (our own :class:`~prometheus_client.CollectorRegistry`,
which also carries the process/platform/GC collectors) and are named ``ripple_*``.  Labels are
limited to ``topic``, ``kind``, ``reason``, ``agent``, ``partition`` and ``outcome``; every label value comes
from a small fixed set or from code (agent names, topic names), never from message content, so
user ids and texts cannot reach a time series.  Free-text dead-letter reasons are mapped to
:data:`REASONS` by :func:`reason_category`.

Faust's own sensor (``faust.sensors.prometheus``) is attached by
:func:`streams.metrics_sources.attach_faust_sensors` and exports ``ripple_faust_*`` into the same
registry; it needs no Faust web server, because :func:`start_http`
serves the registry itself.

Examples
--------
>>> reason_category("invalid JSON: Expecting value: line 1 column 1 (char 0)")
'invalid_json'
>>> reason_category("schema: user_id: 'u1' is too short")
'schema'
>>> reason_category("processing error: KeyError: 'u42'")
'processing_error'
>>> reason_category("something nobody anticipated")
'other'
>>> before = REGISTRY.get_sample_value("ripple_dead_letters_total", {"topic": "likes", "reason": "schema"})
>>> record_dead_letter("likes", "schema: 'post_id' is a required property")
'schema'
>>> REGISTRY.get_sample_value("ripple_dead_letters_total", {"topic": "likes", "reason": "schema"}) - before
1.0
"""

from __future__ import annotations

import functools
import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, TypeVar

from prometheus_client.exposition import start_http_server
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

from processors.events import INPUT_TOPICS
from processors.learned_blend import FEATURES

log = logging.getLogger("ripple.metrics")

#: Registry holding every Ripple metric (and the process collectors); served by :func:`start_http`.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# --- fixed label vocabularies ---------------------------------------------------------------
#: logical topics a ``topic`` label may name (anything else is reported as ``other``)
TOPICS = (*INPUT_TOPICS, "recommendations", "suggested-replies", "dead-letter", "other")
#: event kinds of ``ripple_events_consumed_total`` (``invalid``: rejected before it had a kind)
KINDS = ("post", "like", "comment", "share", "follow", "invalid", "other")
#: dead-letter reason categories (see :func:`reason_category`)
REASONS = ("invalid_json", "schema", "too_long", "empty", "unknown_topic", "invalid_event", "mis_keyed",
           "processing_error", "other")
#: model components counted by ``ripple_model_updates_total``
MODEL_KINDS = ("factors", "profile", "reply_bank", "other")
#: what an ONNX batch encoded
ONNX_KINDS = ("post", "comment", "reply", "other")
#: ranking features (``kind`` of ``ripple_blend_weight``)
BLEND_KINDS = FEATURES
#: the agents that report processing latency (streams/agents.py)
AGENTS = ("embed_posts", "engage", "suggest_replies")
#: what the engagement engine did with a record or profile (``ripple_engine_records``)
ENGINE_OUTCOMES = ("applied", "replay", "duplicate", "out_of_order", "evicted", "owed_dropped", "unreadable_profile",
                   "unreadable_post", "restore_failed")
#: what became of records a Faust agent's stream skipped (``ripple_skipped_records``)
SKIPPED_OUTCOMES = ("refetched", "lost")
#: outcomes of a model-sync message: ``sent`` by this worker, ``applied`` from another
#: worker, ``unreadable`` (skipped)
MODEL_SYNC_OUTCOMES = ("sent", "applied", "unreadable")
#: the only label names any ``ripple_*`` metric may carry
ALLOWED_LABELS = frozenset({"topic", "kind", "reason", "agent", "partition", "outcome"})

_REASON_PREFIXES = (
    ("invalid json", "invalid_json"),
    ("schema", "schema"),
    ("text too long", "too_long"),
    ("too long", "too_long"),
    ("empty message", "empty"),
    ("unknown topic", "unknown_topic"),
    ("a user cannot follow themselves", "invalid_event"),
    ("invalid event", "invalid_event"),
    ("mis-keyed", "mis_keyed"),
    ("processing error", "processing_error"),
    ("processing failed", "processing_error"),
)
_AGENT_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")

# --- buckets --------------------------------------------------------------------------------
PROCESSING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
END_TO_END_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
GC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)

# --- the metrics (each declared exactly once) -------------------------------------------------
EVENTS_CONSUMED = Counter(
    "ripple_events_consumed", "Input messages taken off a topic, by logical topic and decoded event kind.",
    ["topic", "kind"], registry=REGISTRY)
DEAD_LETTERS = Counter(
    "ripple_dead_letters", "Messages sent to the dead-letter topic, by source topic and reason category.",
    ["topic", "reason"], registry=REGISTRY)
PROCESSING_SECONDS = Histogram(
    "ripple_processing_seconds", "Wall time an agent spent on one event or micro-batch.",
    ["agent"], buckets=PROCESSING_BUCKETS, registry=REGISTRY)
EVENT_TO_RECOMMENDATION_SECONDS = Histogram(
    "ripple_event_to_recommendation_seconds",
    "Time from a user's oldest not-yet-reflected event (Kafka timestamp) to publishing their recommendations.",
    ["agent"], buckets=END_TO_END_BUCKETS, registry=REGISTRY)
RECOMMENDATIONS_PUBLISHED = Counter(
    "ripple_recommendations_published", "Recommendation messages published.", registry=REGISTRY)
RECOMMENDATIONS_DEFERRED = Counter(
    "ripple_recommendations_deferred", "Users who became owed a recommendation (put off by a batch's scoring budget, "
    "their rate limit or a restart), each once until they are served.", registry=REGISTRY)
RECOMMENDATIONS_OWED = Gauge(
    "ripple_recommendations_owed", "Users owed a recommendation now, waiting their turn (served oldest first).",
    registry=REGISTRY)
SUGGESTIONS_PUBLISHED = Counter(
    "ripple_suggestions_published", "Suggested-replies messages published.", registry=REGISTRY)
MODEL_UPDATES = Counter(
    "ripple_model_updates", "Online model updates (e.g. factor-model learn steps), by model component.",
    ["kind"], registry=REGISTRY)
ONNX_BATCH_SIZE = Histogram(
    "ripple_onnx_batch_size", "Texts per ONNX inference call.",
    ["kind"], buckets=BATCH_BUCKETS, registry=REGISTRY)
ONNX_INFERENCE_SECONDS = Histogram(
    "ripple_onnx_inference_seconds", "Wall time of one ONNX inference call (tokenize + run + pool).",
    ["kind"], buckets=INFERENCE_BUCKETS, registry=REGISTRY)
EMBEDDING_QUEUE_DEPTH = Gauge(
    "ripple_embedding_queue_depth", "Texts handed to the embedding executor and not yet embedded.",
    registry=REGISTRY)
CONSUMER_LAG = Gauge(
    "ripple_consumer_lag", "Messages behind the partition end (high watermark minus committed offset).",
    ["topic", "partition"], registry=REGISTRY)
REBALANCES = Counter(
    "ripple_rebalances", "Consumer-group rebalances this worker took part in.", registry=REGISTRY)
ENGINE_RECORDS = Counter(
    "ripple_engine_records", "What the engagement engine did, by outcome: records applied, replayed (already in "
    "the profile), duplicate (a repeated event_id), applied out of order; profiles evicted by the bounds; "
    "changelog records that are not a profile or a post vector (skipped); read-backs of assigned partitions "
    "that failed (tried again with the next batch).", ["outcome"], registry=REGISTRY)
SKIPPED_RECORDS = Counter(
    "ripple_skipped_records", "Records a Faust agent's stream skipped, by outcome: refetched (re-read from the "
    "broker and processed) or lost (the re-read failed; not processed).", ["outcome"], registry=REGISTRY)
ENGINE_PARTITIONS = Gauge(
    "ripple_engine_partitions", "Engagement partition numbers of this worker's engine by outcome: assigned (by the "
    "consumer group) and ready (their profiles read back, so their records are folded); assigned above ready for "
    "long means records wait unconsumed.", ["outcome"], registry=REGISTRY)
MODEL_SYNC_MESSAGES = Counter(
    "ripple_model_sync_messages", "Model-sync messages (item-side deltas) by outcome: sent, applied "
    "(another worker's) or unreadable", ["outcome"], registry=REGISTRY)
MODEL_SYNC_BYTES = Counter(
    "ripple_model_sync_bytes", "Bytes of model-sync messages sent and applied (outcome)", ["outcome"], registry=REGISTRY)
MODEL_SNAPSHOT_ITEMS = Counter(
    "ripple_model_snapshot_items", "Item states written to the model-state topic by snapshots",
    registry=REGISTRY)
MODEL_SNAPSHOTS = Counter(
    "ripple_model_snapshots", "Snapshots (with their checkpoint) written to the model-state topic",
    registry=REGISTRY)
TRENDING_MESSAGES = Counter(
    "ripple_trending_messages", "Messages published to the trending topic", registry=REGISTRY)
TRENDING_POSTS = Gauge(
    "ripple_trending_posts", "Posts with a trend score this worker holds (every worker holds the same)",
    registry=REGISTRY)
BLEND_LISTS = Counter(
    "ripple_blend_lists", "Recommendation lists the ranking blend learnt from on this worker, by outcome: engaged "
    "(an item of the list was engaged within RIPPLE_BLEND_WINDOW_S) or ignored", ["outcome"], registry=REGISTRY)
BLEND_WEIGHTS = Gauge(
    "ripple_blend_weight", "Weight of each ranking feature (kind) in the blend this worker ranks with",
    ["kind"], registry=REGISTRY)
GC_PAUSE_SECONDS = Histogram(
    "ripple_gc_pause_seconds", "Pauses of Python's cyclic garbage collector in the worker (every generation).",
    buckets=GC_BUCKETS, registry=REGISTRY)

#: every Ripple metric, for tests and docs (the ``ripple_faust_*`` ones belong to Faust)
ALL_METRICS = (EVENTS_CONSUMED, DEAD_LETTERS, PROCESSING_SECONDS, EVENT_TO_RECOMMENDATION_SECONDS,
               RECOMMENDATIONS_PUBLISHED, RECOMMENDATIONS_DEFERRED, RECOMMENDATIONS_OWED, SUGGESTIONS_PUBLISHED, MODEL_UPDATES, ONNX_BATCH_SIZE,
               ONNX_INFERENCE_SECONDS, EMBEDDING_QUEUE_DEPTH, CONSUMER_LAG, REBALANCES, ENGINE_RECORDS, SKIPPED_RECORDS,
               ENGINE_PARTITIONS, MODEL_SYNC_MESSAGES, MODEL_SYNC_BYTES, MODEL_SNAPSHOTS, MODEL_SNAPSHOT_ITEMS, GC_PAUSE_SECONDS,
               TRENDING_MESSAGES, TRENDING_POSTS, BLEND_LISTS, BLEND_WEIGHTS)

# Zero-initialise the fixed label combinations so rate()/increase() see the first event.
for _outcome in ("engaged", "ignored"):
    BLEND_LISTS.labels(outcome=_outcome)
for _topic, _kind in INPUT_TOPICS.items():
    EVENTS_CONSUMED.labels(topic=_topic, kind=_kind)
    EVENTS_CONSUMED.labels(topic=_topic, kind="invalid")
    for _reason in REASONS:
        DEAD_LETTERS.labels(topic=_topic, reason=_reason)
for _kind in MODEL_KINDS[:-1]:
    MODEL_UPDATES.labels(kind=_kind)
# Histograms too: a series that appears with its first observation hides a worker's first burst
for _agent_name in AGENTS:
    PROCESSING_SECONDS.labels(agent=_agent_name)
EVENT_TO_RECOMMENDATION_SECONDS.labels(agent="engage")
for _outcome in ENGINE_OUTCOMES:
    ENGINE_RECORDS.labels(outcome=_outcome)
for _outcome in SKIPPED_OUTCOMES:
    SKIPPED_RECORDS.labels(outcome=_outcome)
for _kind in ONNX_KINDS[:-1]:
    ONNX_BATCH_SIZE.labels(kind=_kind)
    ONNX_INFERENCE_SECONDS.labels(kind=_kind)


# --- label helpers ----------------------------------------------------------------------------
def _one_of(value: str, allowed: Sequence[str]) -> str:
    return value if value in allowed else "other"


def _agent(name: str) -> str:
    if not _AGENT_RE.match(name):
        raise ValueError(f"agent label must be a code identifier (lower_snake_case), got {name!r}")
    return name


def reason_category(reason: str) -> str:
    """Map a free-text dead-letter reason onto one of :data:`REASONS` (never the text itself)."""
    text = reason.strip().lower()
    for prefix, category in _REASON_PREFIXES:
        if text.startswith(prefix):
            return category
    return "other"


# --- what the agents call -----------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _child(metric, **labels):
    """``metric.labels(**labels)``, remembered: every label value comes from a small fixed set,
    and the lookup (label validation, a lock) showed up at ~3 % of a worker's time."""
    return metric.labels(**labels)


def record_consumed(topic: str, kind: str, n: int = 1) -> None:
    """Count ``n`` messages of logical ``topic`` decoded as ``kind`` (``"invalid"`` if rejected)."""
    _child(EVENTS_CONSUMED, topic=_one_of(topic, TOPICS), kind=_one_of(kind, KINDS)).inc(n)


def record_dead_letter(topic: str, reason: str) -> str:
    """Count one dead letter from logical ``topic``; returns the reason category used as label."""
    category = reason_category(reason)
    _child(DEAD_LETTERS, topic=_one_of(topic, TOPICS), reason=category).inc()
    return category


@contextmanager
def observe_latency(agent: str) -> Iterator[None]:
    """Time the ``with`` body into ``ripple_processing_seconds{agent=...}`` (also on error)."""
    child = _child(PROCESSING_SECONDS, agent=_agent(agent))
    start = time.perf_counter()
    try:
        yield
    finally:
        child.observe(time.perf_counter() - start)


def observe_event_to_recommendation(event_ts: float, agent: str, *, now: float | None = None) -> float:
    """Record ``now - event_ts`` (epoch seconds, clamped at 0 against clock skew); returns it."""
    latency = max(0.0, (time.time() if now is None else now) - event_ts)
    _child(EVENT_TO_RECOMMENDATION_SECONDS, agent=_agent(agent)).observe(latency)
    return latency


def record_recommendation(n: int = 1) -> None:
    """Count published recommendation messages."""
    RECOMMENDATIONS_PUBLISHED.inc(n)


def set_recommendations_owed(n: int) -> None:
    RECOMMENDATIONS_OWED.set(n)


def record_recommendations_deferred(n: int) -> None:
    """Count recommendations put off to the next batch (the engagement engine's scoring budget)."""
    RECOMMENDATIONS_DEFERRED.inc(n)


def record_suggestion(n: int = 1) -> None:
    """Count published suggested-replies messages."""
    SUGGESTIONS_PUBLISHED.inc(n)


def record_engine_outcomes(counts) -> None:
    """Count the engagement engine's outcomes (``counts``: outcome → n; keys outside
    :data:`ENGINE_OUTCOMES` are not outcomes and are ignored)."""
    for outcome in ENGINE_OUTCOMES:
        n = counts.get(outcome, 0)
        if n:
            ENGINE_RECORDS.labels(outcome=outcome).inc(n)


def record_skipped(outcome: str, n: int) -> None:
    """Count ``n`` records a Faust agent's stream skipped, ``refetched`` or ``lost``."""
    if n > 0:
        SKIPPED_RECORDS.labels(outcome=_one_of(outcome, SKIPPED_OUTCOMES)).inc(n)


def record_model_sync(outcome: str, size: int, n: int = 1) -> None:
    """Count ``n`` model-sync messages of ``size`` bytes in all: ``sent``, ``applied`` or ``unreadable``."""
    direction = _one_of(outcome, MODEL_SYNC_OUTCOMES)
    MODEL_SYNC_MESSAGES.labels(outcome=direction).inc(n)
    if size:
        MODEL_SYNC_BYTES.labels(outcome=direction).inc(size)


def record_trending(posts_held: int) -> None:
    """One trending message published; ``posts_held``: posts with a trend score."""
    TRENDING_MESSAGES.inc()
    TRENDING_POSTS.set(posts_held)


def record_blend(learnt: dict[str, int], weights: dict[str, float]) -> None:
    """Lists the blend learnt since the last call, by outcome; the blend ranked with now."""
    for outcome, n in learnt.items():
        if n:
            BLEND_LISTS.labels(outcome=_one_of(outcome, ("engaged", "ignored"))).inc(n)
    for kind, w in weights.items():
        BLEND_WEIGHTS.labels(kind=_one_of(kind, BLEND_KINDS)).set(w)


def set_engine_partitions(assigned: int, ready: int) -> None:
    ENGINE_PARTITIONS.labels(outcome="assigned").set(assigned)
    ENGINE_PARTITIONS.labels(outcome="ready").set(ready)


def record_model_snapshot(items: int) -> None:
    MODEL_SNAPSHOTS.inc()
    MODEL_SNAPSHOT_ITEMS.inc(items)


def record_model_update(kind: str, n: int = 1) -> None:
    """Count ``n`` online updates of model component ``kind`` (see :data:`MODEL_KINDS`)."""
    if n > 0:
        _child(MODEL_UPDATES, kind=_one_of(kind, MODEL_KINDS)).inc(n)


@contextmanager
def observe_onnx(kind: str, batch_size: int) -> Iterator[None]:
    """Record one ONNX call: its batch size and the wall time of the ``with`` body."""
    label = _one_of(kind, ONNX_KINDS)
    _child(ONNX_BATCH_SIZE, kind=label).observe(batch_size)
    child = _child(ONNX_INFERENCE_SECONDS, kind=label)
    start = time.perf_counter()
    try:
        yield
    finally:
        child.observe(time.perf_counter() - start)


T = TypeVar("T")


def instrument_embed(embed: Callable[[list[str]], T], kind: str) -> Callable[[list[str]], T]:
    """Wrap ``Embedder.embed`` so every call records batch size and inference time.

    Wrap the function that runs *inside* the executor thread, so queueing time is not counted:
    ``loop.run_in_executor(executor, instrument_embed(embedder.embed, "post"), texts)``.
    """

    def embed_and_observe(texts: list[str]) -> T:
        with observe_onnx(kind, len(texts)):
            return embed(texts)

    return embed_and_observe


@contextmanager
def embedding_queued(n: int) -> Iterator[None]:
    """Count ``n`` texts as waiting for/in the embedding executor while the ``with`` body runs."""
    EMBEDDING_QUEUE_DEPTH.inc(n)
    try:
        yield
    finally:
        EMBEDDING_QUEUE_DEPTH.dec(n)


# --- Faust's sensor metrics (declared by Faust, in this registry) -------------------------------
_faust_metrics = None


def faust_sensor_metrics():
    """Faust's ``FaustMetrics`` in :data:`REGISTRY`, created once per process (prefix ``ripple_faust``)."""
    global _faust_metrics
    if _faust_metrics is None:
        from faust.sensors.prometheus import FaustMetrics

        _faust_metrics = FaustMetrics.create(REGISTRY, "ripple_faust")
    return _faust_metrics


# --- consumer lag series ----------------------------------------------------------------------
_lag_series: set[tuple[str, str]] = set()


def publish_lag(lags: dict[tuple[str, int], int]) -> None:
    """Set ``ripple_consumer_lag`` to exactly ``lags``; series of partitions no longer owned are removed."""
    current = {(topic, str(partition)) for topic, partition in lags}
    for topic, partition in _lag_series - current:
        try:
            CONSUMER_LAG.remove(topic, partition)
        except KeyError:
            pass
    for (topic, partition), lag in lags.items():
        CONSUMER_LAG.labels(topic=topic, partition=str(partition)).set(lag)
    _lag_series.clear()
    _lag_series.update(current)


def _rebalance_sensor():
    import faust

    class RebalanceSensor(faust.Sensor):
        """Counts rebalances and drops lag series at the start of one (ownership is changing)."""

        def on_rebalance_start(self, app):
            REBALANCES.inc()
            publish_lag({})
            return super().on_rebalance_start(app)

    return RebalanceSensor()


def attach_faust_sensors(app, *, faust_sensor: bool = True) -> None:
    """Install Ripple's rebalance sensor and (optionally) Faust's Prometheus monitor on ``app``.

    Call in ``build_app`` right after ``faust.App(...)``, before the worker starts.  Unlike
    ``faust.sensors.prometheus.setup_prometheus_sensors`` this registers no web page (the app runs
    with ``web_enabled=False``; :func:`start_http` serves the registry) and may be called for
    several apps in one process without "Duplicated timeseries" errors.
    """
    if faust_sensor:
        from faust.sensors.prometheus import PrometheusMonitor

        app.monitor = PrometheusMonitor(metrics=faust_sensor_metrics())
    app.sensors.add(_rebalance_sensor())


# --- HTTP endpoint ----------------------------------------------------------------------------
@dataclass
class MetricsServer:
    """The running exposition endpoint (``/metrics``; any path answers)."""

    host: str
    port: int
    _httpd: object

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def start_http(host: str = "127.0.0.1", port: int = 0) -> MetricsServer:
    """Serve :data:`REGISTRY` on ``host:port`` from a daemon thread (port 0: any free port)."""
    httpd, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    bound_host, bound_port = httpd.server_address[:2]
    log.info("Prometheus metrics on http://%s:%d/metrics", bound_host, bound_port)
    return MetricsServer(host=bound_host, port=bound_port, _httpd=httpd)


class ServiceMetrics:
    """``ripple serve``'s metrics, in their own registry (no user ids in labels: the route is a
    template name)."""

    NAMES = ("ripple_serve_requests", "ripple_serve_request_seconds", "ripple_serve_users", "ripple_serve_records",
             "ripple_serve_ready")

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ripple_serve_requests", "HTTP requests answered, by route and status code",
                                ["route", "code"], registry=self.registry)
        self.seconds = Histogram("ripple_serve_request_seconds", "Time to answer a request, by route", ["route"],
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
                                 registry=self.registry)
        self.users = Gauge("ripple_serve_users", "Users whose newest list is held", registry=self.registry)
        self.records = Counter("ripple_serve_records", "Records read from the recommendations and trending topics",
                               registry=self.registry)
        self.ready = Gauge("ripple_serve_ready", "1 once the topics were read to their end offsets at start",
                           registry=self.registry)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of this registry and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
