"""The Kafka I/O the engagement engine needs, behind one small interface.

The engine asks an ``io`` object for a consumer, producers and the newest values of a compacted
topic; :class:`KafkaIO` gives aiokafka's clients on the configured broker (with its security
settings), :class:`streams.memory_broker.MemoryIO` gives in-memory ones with the same methods.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ripple.settings import Settings
from streams.client import latest_values
from streams.security import kafka_client_kwargs


class KafkaIO:
    """aiokafka clients for the broker and security settings of ``settings``."""

    def __init__(self, settings: Settings):
        self.bootstrap, self.auth = settings.broker, kafka_client_kwargs(settings)

    def consumer(self, **kwargs) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(bootstrap_servers=self.bootstrap, **self.auth, **kwargs)

    def producer(self, **kwargs) -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=self.bootstrap, **self.auth, **kwargs)

    async def latest_values(self, topic: str, partitions) -> dict[str, bytes | None]:
        """The newest committed value of every key of ``partitions`` (``None``: a tombstone)."""
        return await latest_values(self.bootstrap, topic, partitions, **self.auth)
