"""Asynchronous producer (aiokafka) with the same typed methods as :class:`RippleProducer`.

    async with AsyncRippleProducer("kafka:9092") as ripple:
        await ripple.like("u1", "p9")
"""

from __future__ import annotations

from ripple_client import events
from ripple_client.events import OutgoingEvent
from ripple_client.producer import Delivery, encode


class AsyncRippleProducer:
    """``bootstrap_servers``, ``topic_prefix``; other keyword arguments go to
    :class:`aiokafka.AIOKafkaProducer`.  Needs ``pip install 'ripple-client[aio]'``."""

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

    async def send(self, topic: str, doc: dict) -> Delivery:
        return await self.send_event(events.event(topic, doc))

    async def post(self, post_id: str, author_id: str, text: str, **kw) -> Delivery:
        return await self.send_event(events.post(post_id, author_id, text, **kw))

    async def like(self, user_id: str, post_id: str, **kw) -> Delivery:
        return await self.send_event(events.like(user_id, post_id, **kw))

    async def share(self, user_id: str, post_id: str, **kw) -> Delivery:
        return await self.send_event(events.share(user_id, post_id, **kw))

    async def comment(self, user_id: str, post_id: str, comment_id: str, text: str, **kw) -> Delivery:
        return await self.send_event(events.comment(user_id, post_id, comment_id, text, **kw))

    async def follow(self, user_id: str, followee_id: str, **kw) -> Delivery:
        return await self.send_event(events.follow(user_id, followee_id, **kw))

    async def __aenter__(self) -> "AsyncRippleProducer":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()
