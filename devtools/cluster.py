"""A multi-node Apache Kafka 4.x KRaft cluster on loopback, built from :class:`devtools.local_kafka.LocalKafka`.

Every node is a combined ``broker,controller`` JVM (``node.id`` 1..n, one static voter set), so
three nodes give a three-voter quorum and three brokers with a small memory footprint (``heap``
each; 384 MiB is enough for tests).  Replicated defaults follow the usual production shape:
``default.replication.factor`` = number of nodes (at most 3), ``min.insync.replicas`` = RF - 1, and
the same for the internal topics (consumer offsets, transactions).  Failure detection is tightened
so that tests of a lost node stay short (a killed broker is fenced after ``broker_session_timeout_ms``)::

    with KafkaCluster(home, nodes=3) as cluster:
        asyncio.run(create_topics(cluster.bootstrap, ["posts"], partitions=4, replication=3))
        cluster.kill_node(2)          # SIGKILL, no controlled shutdown
        cluster.start_node(2)         # same ports and data: rejoins the ISR

All nodes share one working directory (``node-<id>/`` per node) removed by ``close()`` when the
cluster created it.
"""

from __future__ import annotations

import logging
import shutil
import struct
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from devtools.kafka_dist import KAFKA_VERSION, BrokerError
from devtools.local_kafka import LocalKafka, _free_ports, _random_cluster_id, metadata_brokers

log = logging.getLogger("ripple.cluster")


class KafkaCluster:
    """``nodes`` combined KRaft broker+controller JVMs on ``127.0.0.1``; a context manager.

    Parameters
    ----------
    home
        Cache root for the jars (see :func:`devtools.kafka_dist.fetch_kafka`).
    nodes
        Number of nodes (1..n); every node is a voter of the controller quorum.
    heap
        ``-Xmx`` of each JVM.
    replication, min_insync
        Defaults for topics and internal topics; default ``min(nodes, 3)`` and ``replication - 1``
        (at least 1).
    broker_session_timeout_ms
        How long the controller waits for heartbeats before fencing a broker (Kafka's default is
        9000; lower detects a killed node sooner).
    config
        Extra ``server.properties`` for every node (applied last).
    """

    def __init__(self, home: Path, nodes: int = 3, *, version: str = KAFKA_VERSION, workdir: Path | None = None,
                 partitions: int = 1, heap: str = "384m", replication: int | None = None,
                 min_insync: int | None = None, broker_session_timeout_ms: int = 6000,
                 start_timeout_s: float = 180.0, config: dict[str, str] | None = None,
                 sasl_users: dict[str, str] | None = None):
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.home, self.version, self.n, self.heap = Path(home), version, nodes, heap
        self.partitions, self.start_timeout_s = partitions, start_timeout_s
        self.replication = replication or min(nodes, 3)
        self.min_insync = min_insync or max(1, self.replication - 1)
        if not 1 <= self.min_insync <= self.replication <= nodes:
            raise ValueError(f"need 1 <= min_insync ({self.min_insync}) <= replication ({self.replication}) <= nodes")
        self.broker_session_timeout_ms = broker_session_timeout_ms
        self.config, self.sasl_users = dict(config or {}), dict(sasl_users or {})
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or Path(tempfile.gettempdir()) / f"ripple-cluster-{uuid.uuid4().hex[:10]}")
        self.nodes: list[LocalKafka] = []
        self.startup_s: float | None = None

    # -- configuration --------------------------------------------------------------------------
    def _node_config(self) -> dict[str, str]:
        rf, isr = str(self.replication), str(self.min_insync)
        cfg = {
            "default.replication.factor": rf, "min.insync.replicas": isr,
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf, "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": rf, "share.coordinator.state.topic.min.isr": isr,
            "unclean.leader.election.enable": "false",
            # detect a lost node in seconds, not tens of seconds
            "broker.session.timeout.ms": str(self.broker_session_timeout_ms),
            "broker.heartbeat.interval.ms": str(max(500, self.broker_session_timeout_ms // 6)),
            "replica.lag.time.max.ms": "10000",
            "controller.quorum.election.timeout.ms": "1000", "controller.quorum.fetch.timeout.ms": "2000",
            "num.network.threads": "2", "num.io.threads": "2", "background.threads": "2",
            "num.replica.fetchers": "1",
        }
        cfg.update(self.config)
        return cfg

    def _build(self) -> None:
        ports = _free_ports(self.n * (3 if self.sasl_users else 2))
        client, controller = ports[:self.n], ports[self.n:2 * self.n]
        internal = ports[2 * self.n:] or [0] * self.n
        voters = ",".join(f"{i + 1}@127.0.0.1:{controller[i]}" for i in range(self.n))
        cluster_id = _random_cluster_id()
        config = self._node_config()
        self.nodes = [
            LocalKafka(self.home, version=self.version, port=client[i], controller_port=controller[i],
                       internal_port=internal[i], workdir=self.workdir / f"node-{i + 1}", partitions=self.partitions,
                       heap=self.heap, start_timeout_s=self.start_timeout_s, config=config, node_id=i + 1,
                       quorum_voters=voters, cluster_id=cluster_id, sasl_users=self.sasl_users)
            for i in range(self.n)
        ]

    # -- addresses ---------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """Every node's client listener, comma separated (clients skip the ones that are down)."""
        if not self.nodes:
            raise BrokerError("KafkaCluster has no nodes yet: call start() first")
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> LocalKafka:
        return self.nodes[node_id - 1]

    @property
    def running_ids(self) -> list[int]:
        return [n.node_id for n in self.nodes if n.running]

    def live_brokers(self) -> list[int]:
        """Node ids of unfenced brokers, as the metadata of a running node reports them."""
        for node in self.nodes:
            if node.running:
                try:
                    return sorted(b for b, _, _ in metadata_brokers("127.0.0.1", node.probe_port))
                except (OSError, struct.error):
                    continue
        return []

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> KafkaCluster:
        """Launch every node, then wait until all of them are live brokers."""
        if not self.nodes:
            self._build()
        t0 = time.monotonic()
        try:
            for node in self.nodes:  # all at once: a quorum member cannot get ready alone
                node.launch()
            for node in self.nodes:
                node.wait_ready(timeout_s=max(1.0, self.start_timeout_s - (time.monotonic() - t0)))
            self.wait_for_brokers(self.n, timeout_s=max(1.0, self.start_timeout_s - (time.monotonic() - t0)))
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        log.info("Kafka cluster of %d nodes ready at %s in %.1f s", self.n, self.bootstrap, self.startup_s)
        return self

    def wait_for_brokers(self, count: int, timeout_s: float = 60.0) -> list[int]:
        """Block until exactly ``count`` brokers are live (after a start, or after a node is fenced)."""
        deadline = time.monotonic() + timeout_s
        while True:
            live = self.live_brokers()
            if len(live) == count:
                return live
            if time.monotonic() > deadline:
                tails = "\n".join(n.log_tail(15) for n in self.nodes)
                raise BrokerError(f"expected {count} live brokers, metadata says {live} after {timeout_s:.0f} s\n{tails}")
            time.sleep(0.2)

    def stop_node(self, node_id: int, timeout_s: float = 30.0) -> int | None:
        """Controlled shutdown (SIGTERM) of one node: leadership moves away first."""
        return self.node(node_id).stop(timeout_s)

    def kill_node(self, node_id: int) -> int | None:
        """SIGKILL one node: no controlled shutdown; the controller fences it after the session timeout."""
        return self.node(node_id).kill()

    def start_node(self, node_id: int) -> LocalKafka:
        """Start a stopped node again on its ports and data; returns once it is a live broker again."""
        return self.node(node_id).start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every node at once (one by one, the last ones would wait for a lost quorum), then SIGKILL."""
        running = [n for n in self.nodes if n.running]
        if not running:
            return
        with ThreadPoolExecutor(len(running)) as pool:
            list(pool.map(lambda n: n.stop(timeout_s), running))

    def close(self) -> None:
        """Stop every node and delete the working directory if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(n.log_tail(lines) for n in self.nodes)

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KafkaCluster({self.version}, nodes={self.n}, running={self.running_ids}, workdir={str(self.workdir)!r})"
