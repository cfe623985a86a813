"""Asynchronous producer (aiokafka) with the same typed methods as :class:`RippleProducer`.

    async with AsyncRippleProducer("kafka:9092") as ripple:
        await ripple.like("u1", "p9")
"""

from __future__ import annotations

from ripple_client.events import OutgoingEvent, TypedEvents
from ripple_client.producer import Delivery, encode


class AsyncRippleProducer(TypedEvents):
    """``bootstrap_servers``, ``topic_prefix``; other keyword arguments go to
    :class:`aiokafka.AIOKafkaProducer`.  Needs ``pip install 'ripple-client[aio]'``.  The typed
    methods (:class:`ripple_client.events.TypedEvents`) return coroutines: ``await ripple.like(...)``."""

    def __init__(self, bootstrap_servers: str = "127.0.0.1:9092", *, topic_prefix: str = "", **kafka_kwargs):
        from aiokafka import AIOKafkaProducer

        self.topic_prefix = topic_prefix
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", **kafka_kwargs)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send_event(self, ev: OutgoingEvent) -> Delivery:
        key, value = encode(ev)
        meta = await self._producer.send_and_wait(self.topic_prefix + ev.topic, key=key, value=value)
        return Delivery(meta.topic, meta.partition, meta.offset, ev.value["event_id"])

    async def __aenter__(self) -> "AsyncRippleProducer":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()
