"""Start a Ripple worker: load the models, create topics, run the Faust app until stopped."""

from __future__ import annotations

import asyncio
import logging

import faust
from aiokafka.errors import KafkaConnectionError

from models.embedder import OnnxEmbedder, ensure_model, model_calibration
from models.registry import model_spec
from models.factors import ImplicitMF
from models.ngram_sentiment import RoutedSentiment
from models.sentiment import VaderSentiment
from processors.recommender import Recommender, RecommenderConfig
from processors.replies import ReplyConfig, ReplySuggester
from processors.calibration import REFERENCE, Calibration
from processors.ranking import RankConfig
from processors.reply_bank import ResponseBank
from processors.reply_texts import load_seed
from ripple.settings import Settings
from streams import gc_tuning, metrics, metrics_sources, security
from processors.trends import Trends
from streams import agents, catalog_follower, engagement_engine, model_sync, trending
from streams.app import build_app
from streams.topics import ensure_topics

log = logging.getLogger("ripple.worker")


def recommender_for(settings: Settings, dim: int, calibration: Calibration = REFERENCE) -> Recommender:
    config = RecommenderConfig(
        rank=RankConfig().calibrated(calibration),
        k=settings.rec_k,
        min_interval_s=settings.rec_min_interval_s,
        negatives=settings.negatives_per_positive,
        seen_limit=settings.seen_limit,
        catalog_limit=settings.catalog_limit,
    )
    return Recommender(dim=dim, factors=ImplicitMF(max_users=settings.factor_users_limit, max_items=settings.catalog_limit),
                       config=config)


def replies_for(settings: Settings, embedder, sentiment,
                calibration: dict[str, Calibration] | None = None) -> ReplySuggester:
    """The reply suggester with its seed bank, in the languages the model reads, embedded (a few
    hundred texts, ~1 s on CPU), its cosine knobs carried to the model's scale."""
    bank = ResponseBank(seed=load_seed(model_spec(settings.model).seed_languages),
                        min_users=settings.reply_min_users, min_recipients=settings.reply_min_recipients,
                        salt=settings.reply_salt.get_secret_value().encode(),
                        sentiment=sentiment)
    n = bank.embed_pending(embedder)
    log.info("reply bank ready: %d texts embedded", n)
    calibration = calibration or {"en": REFERENCE}
    base = ReplyConfig(k=settings.reply_k, threshold=settings.reply_threshold,
                       min_history_comments=settings.reply_min_history_comments,
                       min_history_s=settings.reply_min_history_s)
    return ReplySuggester(bank, base.calibrated(calibration.get("en", REFERENCE)),
                          by_language={lang: base.calibrated(cal) for lang, cal in calibration.items()})


def run_worker(settings: Settings) -> None:
    """Blocks until SIGINT/SIGTERM; then stops the Faust worker cleanly."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("Kafka %s at %s; processing guarantee %s; user ids %s", security.describe(settings), settings.broker,
             settings.processing_guarantee, "pseudonymised" if settings.pseudonymize_key else "as received")
    if settings.metrics_port:
        server = metrics.start_http(settings.metrics_host, settings.metrics_port)
        log.info("metrics at %s", server.url)
    model = ensure_model(settings.resolved_model_path, progress=True, model=settings.model)
    embedder = OnnxEmbedder(model, provider=settings.onnx_provider, parallel=settings.onnx_cpu_parallel)
    log.info("sentence model %s on %s (%d run%s at once)", model.name, embedder.provider, embedder.parallel,
             "s" if embedder.parallel > 1 else "")
    calibration = model_calibration(embedder, model_spec(settings.model).seed_languages)
    log.info("cosine calibration of %s: %s", embedder.model_name, "; ".join(
        f"{lang} random pairs {c.random:.3f}, true pairs {c.true:.3f}" for lang, c in calibration.items()))
    sentiment = RoutedSentiment(VaderSentiment())  # Chinese to the n-gram model, the rest to VADER
    try:
        asyncio.run(ensure_topics(settings))
    except KafkaConnectionError as exc:  # wrong address, protocol or credentials: say so, without a traceback
        raise SystemExit(f"cannot connect to Kafka at {settings.broker} with {security.describe(settings)}: {exc}; "
                         "check RIPPLE_BROKER and RIPPLE_SECURITY_PROTOCOL / RIPPLE_SASL_*") from None
    rt = build_app(settings, embedder, recommender_for(settings, embedder.dim, calibration["en"]),
                   replies=replies_for(settings, embedder, sentiment, calibration), sentiment=sentiment)
    rt.recommender.trends = Trends()
    if settings.blend_learning:
        rt.recommender.learn_blend(window_s=settings.blend_window_s, min_lists=settings.blend_min_lists)
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
