"""Bad settings and unreachable brokers end in one line and a non-zero exit, not a traceback."""

import socket
import subprocess
import sys

import pytest

from devtools.kafka_dist import BrokerError
from devtools.local_kafka import LocalKafka


def _ripple(*args, env=None, timeout=60):
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "ripple", *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env)


@pytest.mark.parametrize("env, name", [({"RIPPLE_PARTITIONS": "abc"}, "RIPPLE_PARTITIONS"),
                                       ({"RIPPLE_ONNX_PROVIDER": "tpu"}, "RIPPLE_ONNX_PROVIDER"),
                                       ({"RIPPLE_SYNC_INTERVAL_S": "-1"}, "RIPPLE_SYNC_INTERVAL_S")])
def test_a_bad_setting_is_one_line_and_exit_code_2(env, name):
    r = _ripple("produce-sample", env=env)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in r.stderr, r.stderr


def test_an_unreachable_broker_is_one_line_and_exit_code_1():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = _ripple("produce-sample", "--broker", f"127.0.0.1:{port}")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach Kafka" in lines[0], r.stderr


def test_the_broker_launcher_refuses_a_port_someone_else_serves(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        kafka = LocalKafka(tmp_path, port=other.getsockname()[1], workdir=tmp_path / "kafka")
        with pytest.raises(BrokerError, match="already in use"):
            kafka.launch()
        assert not kafka.running
