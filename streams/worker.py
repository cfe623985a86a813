"""Start a Ripple worker: load the models, create topics, run the Faust app until stopped."""

from __future__ import annotations

import asyncio
import logging

import faust
from aiokafka.errors import KafkaConnectionError

from models.embedder import OnnxEmbedder, ensure_model
from models.factors import ImplicitMF
from models.sentiment import VaderSentiment
from processors.recommender import Recommender, RecommenderConfig
from processors.replies import ReplyConfig, ReplySuggester
from processors.reply_bank import ResponseBank
from ripple.settings import Settings
from streams import gc_tuning, metrics, metrics_sources, security
from processors.trends import Trends
from streams import agents, catalog_follower, engagement_engine, model_sync, trending
from streams.app import build_app
from streams.topics import ensure_topics

log = logging.getLogger("ripple.worker")


def recommender_for(settings: Settings, dim: int) -> Recommender:
    config = RecommenderConfig(
        k=settings.rec_k,
        min_interval_s=settings.rec_min_interval_s,
        negatives=settings.negatives_per_positive,
        seen_limit=settings.seen_limit,
        catalog_limit=settings.catalog_limit,
    )
    return Recommender(dim=dim, factors=ImplicitMF(max_users=settings.factor_users_limit, max_items=settings.catalog_limit),
                       config=config)


def replies_for(settings: Settings, embedder, sentiment) -> ReplySuggester:
    """The reply suggester with its seed bank embedded (a few hundred texts, ~1 s on CPU)."""
    bank = ResponseBank(min_users=settings.reply_min_users, min_recipients=settings.reply_min_recipients,
                        salt=settings.reply_salt.get_secret_value().encode(),
                        sentiment=sentiment)
    n = bank.embed_pending(embedder)
    log.info("reply bank ready: %d texts embedded", n)
    return ReplySuggester(bank, ReplyConfig(k=settings.reply_k, threshold=settings.reply_threshold))


def run_worker(settings: Settings) -> None:
    """Blocks until SIGINT/SIGTERM; then stops the Faust worker cleanly."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("Kafka %s at %s; processing guarantee %s; user ids %s", security.describe(settings), settings.broker,
             settings.processing_guarantee, "pseudonymised" if settings.pseudonymize_key else "as received")
    if settings.metrics_port:
        server = metrics.start_http(settings.metrics_host, settings.metrics_port)
        log.info("metrics at %s", server.url)
    model = ensure_model(settings.resolved_model_path, progress=True)
    embedder = OnnxEmbedder(model, provider=settings.onnx_provider, parallel=settings.onnx_cpu_parallel)
    log.info("sentence model %s on %s (%d run%s at once)", model.name, embedder.provider, embedder.parallel,
             "s" if embedder.parallel > 1 else "")
    sentiment = VaderSentiment()
    try:
        asyncio.run(ensure_topics(settings))
    except KafkaConnectionError as exc:  # wrong address, protocol or credentials: say so, without a traceback
        raise SystemExit(f"cannot connect to Kafka at {settings.broker} with {security.describe(settings)}: {exc}; "
                         "check RIPPLE_BROKER and RIPPLE_SECURITY_PROTOCOL / RIPPLE_SASL_*") from None
    rt = build_app(settings, embedder, recommender_for(settings, embedder.dim),
                   replies=replies_for(settings, embedder, sentiment), sentiment=sentiment)
    rt.recommender.trends = Trends()
    catalog = catalog_follower.register(rt)
    engine = None

    def writes_snapshots() -> bool:
        return engine is not None and engine.owns_partition_zero()

    sync = model_sync.register(rt, catalog.caught_up, writes_snapshots=writes_snapshots)
    trending.register(rt, rt.recommender.trends, publishes=writes_snapshots)
    engine = engagement_engine.register(rt, catalog.caught_up, sync.caught_up)
    agents.register(rt, catalog.caught_up, engine_lags=engine.lags, replies_ready=sync.caught_up)
    worker = faust.Worker(rt.app, loglevel=settings.log_level)
    gc_tuning.tune(settings.gc_threshold)  # start-up done: freeze it out of collections (streams/gc_tuning.py)
    metrics_sources.watch_gc_pauses()
    worker.execute_from_commandline()
