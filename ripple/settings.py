"""One settings object, read once at start-up from ``RIPPLE_*`` environment variables.

Every component receives the values it needs from this object; nothing else reads the
environment.  CLI flags override the environment by constructing ``Settings(**overrides)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


#: seconds between a worker's model-sync messages (its item-side deltas) by default
SYNC_INTERVAL_S = 1.0


def describe_error(exc: Exception) -> str:
    """One line for a settings ``ValidationError``: each bad setting, its variable, and why
    (the value itself is not repeated: it may be a secret).

    >>> try:
    ...     Settings(partitions="abc")
    ... except Exception as exc:
    ...     print(describe_error(exc))
    RIPPLE_PARTITIONS: Input should be a valid integer, unable to parse string as an integer
    """
    errors = getattr(exc, "errors", None)
    if errors is None:
        return str(exc).splitlines()[0]
    parts = []
    for e in errors():
        field = ".".join(str(x) for x in e.get("loc", ())) or "settings"
        name = f"RIPPLE_{field.upper()}" if field != "settings" else "settings"
        parts.append(f"{name}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


def _default_home() -> Path:
    return Path.home() / ".cache" / "ripple"


class Settings(BaseSettings):
    """Runtime configuration (env prefix ``RIPPLE_``, e.g. ``RIPPLE_BROKER=127.0.0.1:9092``)."""

    # hide_input_in_errors: a validation error must not echo a password or key given in the environment
    model_config = SettingsConfigDict(env_prefix="RIPPLE_", frozen=True, extra="ignore", hide_input_in_errors=True)

    # --- Kafka -----------------------------------------------------------------------------
    broker: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    topic_prefix: str = Field("", description="Prefix added to every topic name (e.g. 'staging.').")
    app_id: str = Field("ripple", description="Faust application id (consumer group, changelog names).")
    partitions: int = Field(4, ge=1, description="Partitions of every topic Ripple creates.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of created topics.")
    producer_linger_s: float = Field(0.05, ge=0, description="Producer linger (batching) in seconds.")
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "at_least_once", description="'exactly_once': every engagement batch's outputs, profile changes and input "
        "offsets commit in one Kafka transaction per partition (and the Faust agents use Faust's transactions); "
        "'at_least_once': outputs may repeat after a crash, profile state is still applied once.")
    engage_batch_max: int = Field(5000, ge=1, description="Most records per batch of the engagement engine.")
    engage_rec_budget_s: float = Field(
        0.1, ge=0, description="Most seconds the engagement engine spends scoring recommendations per batch; "
        "users left over are scored first in the next batch, with their newest state (0: no limit).")
    engage_fork_min_users: int = Field(
        128, ge=0, description="The engagement engine scores a batch's recommendations in a forked child "
        "process (a copy-on-write snapshot of the worker's state, on another core, while the worker folds the next "
        "batch) when at least this many users are due; fewer are scored in the worker itself (0: never fork; never "
        "under exactly_once; "
        "Linux only, see streams/forked.py).")
    gc_threshold: int = Field(
        20_000, ge=0, description="Young-generation threshold of Python's garbage collector in the worker (Python's "
        "default is 700); start-up objects are also frozen out of collections.  Fewer full collections over a large "
        "heap: a shorter latency tail (0: Python's defaults).")
    session_timeout_s: float = Field(60.0, ge=1, description="Consumer group session timeout: a silent worker's "
                                     "partitions move after this long.")

    # --- Kafka security (see streams/security.py) -------------------------------------------
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol of every client Ripple creates.")
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (SASL_PLAINTEXT / SASL_SSL).")
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged).")
    ssl_cafile: Path | None = Field(None, description="CA bundle the broker certificate is checked against (default: system CAs).")
    ssl_certfile: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    ssl_keyfile: Path | None = Field(None, description="Private key of the client certificate (PEM).")
    ssl_key_password: SecretStr | None = Field(None, description="Password of ssl_keyfile, if encrypted.")
    ssl_check_hostname: bool = Field(True, description="Check that the broker certificate names the broker host.")

    # --- Privacy ---------------------------------------------------------------------------
    pseudonymize_key: SecretStr | None = Field(
        None, min_length=16, description="When set, every user id (user_id, author_id, followee_id, hence recipients) "
        "is replaced at the edge by HMAC-SHA256(key, id), truncated; at least 16 characters.")

    # --- Files -----------------------------------------------------------------------------
    home: Path = Field(default_factory=_default_home, description="Cache root: model, Kafka jars, worker state.")

    # --- Model -----------------------------------------------------------------------------
    model: Literal["all-MiniLM-L6-v2", "multilingual-e5-small"] = Field(
        "all-MiniLM-L6-v2", description="Sentence model (models/registry.py): 'all-MiniLM-L6-v2' (English, fast) or "
        "'multilingual-e5-small' (about 100 languages, Chinese included; about 4x the compute).")
    model_path: Path | None = Field(None, description="ONNX sentence model; default <home>/models/<RIPPLE_MODEL>.onnx.")
    onnx_provider: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="'auto' (CUDA if available, else CPU), 'cuda' or 'cpu'.")
    embed_batch_size: int = Field(64, ge=1, description="Posts (or comments) embedded per ONNX call.")
    embed_batch_window_s: float = Field(0.05, gt=0, description="Max wait to fill an embedding batch.")
    onnx_cpu_parallel: int | None = Field(
        None, ge=1, description="CPU provider: how many single-threaded pieces of an embedding call run at once "
        "(default: one per usable core); 1 runs one piece at a time on onnxruntime's own intra-op threads.")

    # --- Domain ----------------------------------------------------------------------------
    max_text_chars: int = Field(5000, ge=1, description="Longer post/comment texts are rejected.")
    rec_k: int = Field(10, ge=1, description="Recommendations per message.")
    rec_min_interval_s: float = Field(1.0, ge=0, description="Per-user minimum time between recommendation messages.")
    negatives_per_positive: int = Field(3, ge=0, description="Sampled negatives per engagement for the factor model.")
    seen_limit: int = Field(500, ge=1, description="Seen-post ids remembered per user.")
    catalog_limit: int = Field(50_000, ge=1, description="Recent posts kept as recommendation candidates.")
    dead_letter_raw_bytes: int = Field(2048, ge=0, description="Raw payload bytes copied into a dead letter.")
    max_message_bytes: int = Field(256 * 1024, ge=1, description="Larger input messages are rejected unparsed.")
    max_future_s: float = Field(86_400.0, ge=0, description="An event 'ts' this far after its Kafka timestamp is rejected.")
    dedup_limit: int = Field(100, ge=0, description="Recent event_ids remembered per user: a repeated one is skipped.")
    profile_limit: int = Field(25_000, ge=1, description="User profiles kept per partition (least recently active dropped).")
    profile_ttl_s: float = Field(30 * 86_400.0, ge=0, description="Profiles idle this long are dropped (0: never).")
    factor_users_limit: int = Field(100_000, ge=1, description="Users with factor-model state (least recent dropped).")
    sync_interval_s: float = Field(
        SYNC_INTERVAL_S, gt=0, description="Seconds between a worker's model-sync messages: the item-side state "
        "(popularity, co-engagement, item factors) it learnt, which every other worker adds to its own.")
    snapshot_interval_s: float = Field(
        30.0, gt=0, description="Seconds between snapshots of the item-side state to the compacted model-state "
        "topic, which a restarted or new worker starts from (written by the worker that owns partition 0).")

    trending_interval_s: float = Field(
        10.0, gt=0, description="Seconds between messages to the trending topic (top posts and authors of the "
        "1 h and 24 h windows), published by the worker that writes the model snapshots.")
    trending_k: int = Field(50, ge=1, description="Posts and authors per window in a trending message.")
    blend_learning: bool = Field(
        True, description="Learn the ranking blend from what users do with the lists they are sent (shared by "
        "every worker, kept in the model snapshots); false: always the configured blend.")
    blend_window_s: float = Field(
        3600.0, gt=0, description="An engagement of an item of a user's list labels the list (that item the "
        "positive, the rest negatives) only within this many seconds of the list.")
    blend_min_lists: int = Field(
        200, ge=1, description="Engaged lists learnt (by all workers together) before the learnt blend replaces "
        "the configured one.")

    # --- Suggested replies ------------------------------------------------------------------
    reply_k: int = Field(3, ge=1, description="Suggestions per message.")
    reply_threshold: float = Field(0.42, description="Minimum score: below it no suggestion is sent.")
    reply_min_users: int = Field(3, ge=1, description="Distinct users who must write a reply before it is suggested.")
    reply_min_recipients: int = Field(
        2, ge=1, description="Distinct people a reply must have answered (authors of the comments it replied to) "
        "before it is suggested, so a few accounts replying to one victim cannot teach the bank.")
    reply_min_history_comments: int = Field(
        2, ge=0, description="Earlier comments a user needs before a reply they write counts toward the bank.")
    reply_min_history_s: float = Field(
        86_400.0, ge=0, description="Seconds since a user's first comment before a reply they write counts toward "
        "the bank (accounts made in bulk for an attack are new).")
    reply_salt: SecretStr = Field(SecretStr("ripple-replies"), description="Key of the hash of user ids in the reply bank.")

    # --- Ops -------------------------------------------------------------------------------
    metrics_host: str = Field("127.0.0.1", description="Bind address of the Prometheus endpoint.")
    metrics_port: int = Field(0, ge=0, description="Prometheus endpoint port; 0 disables it.")
    log_level: str = Field("info", description="Worker log level.")

    @field_validator("onnx_provider", mode="before")
    @classmethod
    def _lower(cls, value):
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value):
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _sasl_credentials(self) -> "Settings":
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"security_protocol {self.security_protocol} needs RIPPLE_SASL_USERNAME and RIPPLE_SASL_PASSWORD")
        return self

    @property
    def resolved_model_path(self) -> Path:
        return self.model_path or self.home / "models" / f"{self.model}.onnx"

    def topic(self, name: str) -> str:
        """Full topic name for a logical topic (``posts`` → ``<prefix>posts``)."""
        return f"{self.topic_prefix}{name}"

    def logical_topic(self, topic: str) -> str:
        """The logical name of a full topic name (``<prefix>likes`` → ``likes``)."""
        p = self.topic_prefix
        return topic[len(p):] if p and topic.startswith(p) else topic
