"""Fixtures for pipeline tests: the exported model and worker subprocesses on the real broker."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from ripple.demo import start_worker, stop_worker
from ripple.settings import Settings
from streams.topics import ensure_topics


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def metrics_port(monkeypatch) -> int:
    """A free loopback port for the worker's /metrics.

    ``ripple.demo.start_worker`` forwards only some settings to the worker subprocess, but it copies
    ``os.environ``: so the port goes through the environment (a ``worker_factory(metrics_port=...)``
    override alone would not reach the worker).
    """
    port = free_port()
    monkeypatch.setenv("RIPPLE_METRICS_PORT", str(port))
    monkeypatch.setenv("RIPPLE_METRICS_HOST", "127.0.0.1")
    return port


@pytest.fixture
def worker_factory(bootstrap, topic_prefix, onnx_model, ripple_home, tmp_path):
    """``start(app_id=None)`` → running worker subprocess; all are stopped at teardown."""
    procs = []

    def start(app_id: str | None = None, **overrides):
        values = dict(broker=bootstrap, topic_prefix=topic_prefix, app_id=app_id or f"ripple-{uuid.uuid4().hex[:8]}",
                      home=ripple_home, partitions=2, rec_min_interval_s=0.3, onnx_provider="cpu")
        settings = Settings(**{**values, **overrides})
        asyncio.run(ensure_topics(settings))  # as an operator would: topics exist before producers write
        proc = start_worker(settings, tmp_path / f"worker-{len(procs)}.log")
        procs.append(proc)
        return settings, proc

    yield start
    for p in procs:
        stop_worker(p)
    for log in sorted(tmp_path.glob("worker-*.log")):  # shown by pytest only when the test fails
        lines = log.read_text(errors="replace").splitlines()
        print(f"--- {log.name}: last 80 of {len(lines)} lines ---")
        print("\n".join(lines[-80:]))


def wait_for(predicate, timeout_s: float, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False
