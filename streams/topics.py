"""Topic administration: create Ripple's topics, check their partition counts.

Every function passes ``client_kwargs`` to aiokafka's admin client as they are: the security
settings from :func:`streams.security.kafka_client_kwargs` (empty for PLAINTEXT).
"""

from __future__ import annotations

from typing import Iterable

from ripple.settings import Settings
from streams import security
from streams.app import COMPACTED_OUTPUTS, TABLES, all_topics


class TopicLayoutError(SystemExit):
    """Existing topics disagree with RIPPLE_PARTITIONS (tables would not be co-partitioned)."""


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int, replication: int = 1,
                        *, timeout_s: float = 30.0, configs: dict[str, str] | None = None, **client_kwargs) -> list[str]:
    """Create topics that do not exist yet; return the names created (existing ones are fine).

    ``configs``: topic configuration of the created topics (e.g. ``{"cleanup.policy": "compact"}``).
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import for_code

    names = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000),
                                **client_kwargs)
    await admin.start()
    try:
        resp = await admin.create_topics([NewTopic(n, partitions, replication, topic_configs=configs or {}) for n in names],
                                         timeout_ms=int(timeout_s * 1000))
    finally:
        await admin.close()
    created = []
    for topic, code, *rest in resp.topic_errors:
        if code == 0:
            created.append(topic)
        elif code != 36:  # TOPIC_ALREADY_EXISTS
            raise for_code(code)(f"creating topic {topic!r}: {rest[0] if rest else ''}")
    return created


async def partition_counts(bootstrap: str, names: Iterable[str], **client_kwargs) -> dict[str, int]:
    """Partition count of each existing topic in ``names`` (missing topics are left out)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    return {d["topic"]: len(d["partitions"]) for d in described if d.get("error_code", 0) == 0 and d["partitions"]}


async def ensure_topics(settings: Settings) -> None:
    """Create Ripple's topics; fail clearly if existing ones have another partition count."""
    names = all_topics(settings)
    auth = security.kafka_client_kwargs(settings)
    # compacted outputs first (a topic that exists already keeps its configuration: see docs/architecture.md)
    await create_topics(settings.broker, [settings.topic(t) for t in COMPACTED_OUTPUTS], settings.partitions,
                        settings.replication_factor, configs={"cleanup.policy": "compact"}, **auth)
    await create_topics(settings.broker, names, settings.partitions, settings.replication_factor, **auth)
    # the compacted changelogs: the engine's profiles and the posts table's, which every worker's
    # catalog follower reads from the start (created here, before any worker reads or writes them)
    changelogs = [f"{settings.app_id}-{table}-changelog" for table in TABLES]
    await create_topics(settings.broker, changelogs, settings.partitions, settings.replication_factor,
                        configs={"cleanup.policy": "compact"}, **auth)
    # item-side model state (streams/model_sync.py): the deltas every worker follows, and the snapshots
    from streams.model_sync import state_topic, sync_topic

    await create_topics(settings.broker, [sync_topic(settings)], settings.partitions, settings.replication_factor,
                        configs={"retention.ms": str(7 * 86_400_000)}, **auth)
    await create_topics(settings.broker, [state_topic(settings)], settings.partitions, settings.replication_factor,
                        configs={"cleanup.policy": "compact"}, **auth)
    counts = await partition_counts(settings.broker, names + changelogs, **auth)
    wrong = {t: n for t, n in counts.items() if n != settings.partitions}
    if wrong:
        raise TopicLayoutError(
            f"topics {wrong} do not have RIPPLE_PARTITIONS={settings.partitions} partitions; "
            "Ripple's tables must be co-partitioned with its inputs. Set RIPPLE_PARTITIONS to match, "
            "or recreate the topics.")
