"""What the worker writes to Kafka: orjson for its own messages, Faust's codec kept as it was."""

import json

import numpy as np
from faust.serializers import codecs

from processors.recommender import Recommender
from ripple.settings import Settings
from streams import wire
from streams.app import build_app


class _NoEmbedder:
    dim = 4

    def embed(self, texts):
        raise AssertionError("not called: the app is built, not started")


def test_table_keys_are_written_as_before_orjson(tmp_path):
    """orjson is installed (Ripple depends on it) and Faust would switch its ``json`` codec to
    it by itself: non-ASCII keys would change bytes, hence changelog key and posts partition."""
    codecs.register("json", codecs.json())  # Faust's own codec (on orjson), whatever ran before this test
    assert codecs.dumps("json", "café-1") != b'"caf\\u00e9-1"'
    rt = build_app(Settings(home=tmp_path), _NoEmbedder(), Recommender(dim=4))
    assert codecs.dumps(rt.posts.table.key_serializer, "café-1") == json.dumps("café-1").encode() == b'"caf\\u00e9-1"'
    doc = {"author_id": "zoë", "created_at": 1.5, "embedding": "AAAA"}
    assert codecs.loads("json", codecs.dumps("json", doc)) == doc


def test_worker_messages_read_back_equal():
    doc = {"user_id": "zoë", "score": np.float64(0.1) + 0.2, "counts": {"like": 3}, "vec": np.arange(2, dtype=np.float32)}
    back = json.loads(wire.dumps(doc))
    assert back == {"user_id": "zoë", "score": 0.1 + 0.2, "counts": {"like": 3}, "vec": [0.0, 1.0]}
