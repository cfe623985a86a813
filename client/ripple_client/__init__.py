"""Ripple's producer client for Python back-ends: typed events checked against Ripple's JSON
Schemas before they are sent, keyed by ``user_id`` (posts by ``post_id``), with the delivery
result returned; and a reader of ``ripple serve``.  Needs neither faust, onnxruntime nor river.

>>> from ripple_client import events
>>> events.like("u1", "p9").topic
'likes'
"""

from ripple_client.events import OutgoingEvent
from ripple_client.validation import InvalidEvent

__all__ = ["AsyncRippleProducer", "Delivery", "InvalidEvent", "OutgoingEvent", "RecommendationsClient",
           "RippleProducer"]


def __getattr__(name: str):  # the producers import kafka-python / aiokafka only when used
    if name in ("RippleProducer", "Delivery"):
        from ripple_client import producer

        return getattr(producer, name)
    if name == "AsyncRippleProducer":
        from ripple_client.aio import AsyncRippleProducer

        return AsyncRippleProducer
    if name == "RecommendationsClient":
        from ripple_client.reader import RecommendationsClient

        return RecommendationsClient
    raise AttributeError(name)
