"""A real Apache Kafka 4.x broker on loopback, fetched from Maven Central and run by Ripple itself.

One JVM is both KRaft controller and broker (``node.id=1``); everything it writes lives in one
working directory.  :func:`devtools.kafka_dist.fetch_kafka` resolves the jars once with Maven;
``LocalKafka`` formats the storage, starts ``kafka.Kafka`` in its own process group and waits until
the broker answers a Metadata request (:func:`metadata_brokers`).  Used by ``ripple broker``,
``ripple demo``, ``ripple bench`` and the tests (``create_topics``: :mod:`streams.topics`)::

    with LocalKafka(home) as kafka:
        asyncio.run(create_topics(kafka.bootstrap, ["posts"], partitions=4))

Two options serve the reliability and security tests:

* ``sasl_users={"ripple": "secret"}`` makes the client listener ``SASL_PLAINTEXT`` with SCRAM-SHA-256
  and SCRAM-SHA-512 (users created at format time with ``kafka-storage format --add-scram``); the
  broker then also listens on an ``INTERNAL`` plaintext loopback port (``internal_port``) used for
  inter-broker traffic and the readiness probe only.
* ``node_id``, ``quorum_voters`` and ``cluster_id`` make the instance one node of a multi-node KRaft
  cluster (see :mod:`devtools.cluster`); ``launch()`` and ``wait_ready()`` split ``start()`` so that
  every node of a quorum can be launched before any of them is waited for.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Iterable
from xml.sax.saxutils import quoteattr

from devtools.kafka_dist import KAFKA_VERSION, BrokerError, fetch_kafka, find_java

log = logging.getLogger("ripple.broker")

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
JVM_OPTS = ("-Xms128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true")
LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders><File name="file" fileName={path}><PatternLayout pattern="[%d] %p %m (%c)%n"/></File></Appenders>
  <Loggers><Root level="WARN"><AppenderRef ref="file"/></Root></Loggers>
</Configuration>
"""  # WARN+ only, to <workdir>/kafka.log; nothing to stdout


def _port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port`` (a listen socket can be bound there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM binds: TIME_WAIT is no obstacle
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(n: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _random_cluster_id() -> str:
    while True:  # Kafka's Uuid.toString(): url-safe base64 without padding; never starts with '-'
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def metadata_brokers(host: str, port: int, timeout_s: float = 2.0) -> list[tuple[int, str, int]]:
    """``(node_id, host, port)`` of the live (unfenced) brokers, from one raw Metadata v4 request."""
    client = b"ripple-probe"  # header: api_key 3, version 4, correlation id, client id; body: no topics
    req = struct.pack(">hhih", 3, 4, 1, len(client)) + client + struct.pack(">ib", 0, 0)
    with socket.create_connection((host, port), timeout=timeout_s) as sock, sock.makefile("rb") as f:
        sock.sendall(struct.pack(">i", len(req)) + req)
        (size,) = struct.unpack(">i", f.read(4))
        buf = f.read(size)
    (n,), pos, brokers = struct.unpack_from(">i", buf, 8), 12, []  # after correlation id, throttle_time_ms
    for _ in range(n):  # node_id int32, host string, port int32, rack nullable string
        node_id, hlen = struct.unpack_from(">ih", buf, pos)
        bport, rlen = struct.unpack_from(">ih", buf, pos + 6 + hlen)
        brokers.append((node_id, buf[pos + 6:pos + 6 + hlen].decode(), bport))
        pos += 12 + hlen + max(rlen, 0)
    return brokers


def _killpg(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the JVM leads its own process group (start_new_session)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log, stack frames left out (messages and 'Caused by' kept)."""
    if not path.exists():
        return f"({path.name}: missing)"
    text = [ln for ln in path.read_text(errors="replace").splitlines()
            if ln.strip() and not ln.startswith(("\tat ", "\t... ", "    at "))][-lines:]
    return f"--- {path} (last {len(text)} lines, stack frames omitted) ---\n" + "\n".join(text)


class LocalKafka:
    """A single-node KRaft Apache Kafka 4.x on ``127.0.0.1``; a context manager.

    Parameters
    ----------
    home
        Cache root; jars go to ``<home>/kafka/<version>/libs`` (see ``fetch_kafka``).
    port, controller_port
        Listener ports; 0 picks free ones at the first ``start()``, kept for ``restart()``.
    workdir
        Config, data and logs; default a fresh temporary folder, deleted by ``close()``.
    partitions
        ``num.partitions`` of auto-created topics.
    """

    def __init__(self, home: Path, *, version: str = KAFKA_VERSION, port: int = 0, controller_port: int = 0,
                 workdir: Path | None = None, partitions: int = 1, heap: str = "512m",
                 start_timeout_s: float = 90.0, config: dict[str, str] | None = None,
                 node_id: int = 1, quorum_voters: str | None = None, cluster_id: str | None = None,
                 sasl_users: dict[str, str] | None = None, sasl_mechanisms: Iterable[str] = SCRAM_MECHANISMS,
                 internal_port: int = 0):
        self.home, self.version, self.partitions, self.heap = Path(home), version, partitions, heap
        self.start_timeout_s, self.config = start_timeout_s, dict(config or {})
        self.port, self.controller_port = port, controller_port
        self.node_id, self.quorum_voters, self.cluster_id = node_id, quorum_voters, cluster_id
        self.sasl_users = dict(sasl_users or {})
        self.sasl_mechanisms = tuple(sasl_mechanisms)
        unknown = set(self.sasl_mechanisms) - set(SCRAM_MECHANISMS)
        if unknown:
            raise ValueError(f"only SCRAM mechanisms are supported, not {sorted(unknown)}")
        self.internal_port = internal_port
        self._own_workdir = workdir is None  # created by start(), so an unused instance leaves nothing behind
        self.workdir = Path(workdir or Path(tempfile.gettempdir()) / f"ripple-kafka-{uuid.uuid4().hex[:10]}")
        self._proc: subprocess.Popen | None = None
        self._out = None
        self.startup_s: float | None = None
        self._t0: float | None = None

    # -- addresses and files --------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        if not self.port:
            raise BrokerError("LocalKafka has no port yet: call start() first")
        return f"127.0.0.1:{self.port}"

    @property
    def sasl(self) -> bool:
        """True when the client listener is ``SASL_PLAINTEXT`` (SCRAM users given)."""
        return bool(self.sasl_users)

    @property
    def security_protocol(self) -> str:
        return "SASL_PLAINTEXT" if self.sasl else "PLAINTEXT"

    @property
    def probe_port(self) -> int:
        """The plaintext port the readiness probe asks (the ``INTERNAL`` one behind SASL)."""
        return self.internal_port if self.sasl else self.port

    @property
    def log_path(self) -> Path:
        """WARN+ broker log (log4j2); JVM stdout/stderr go to ``stdout_path``."""
        return self.workdir / "kafka.log"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / "broker.out"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def server_properties(self) -> dict[str, str]:
        p, c, n = self.port, self.controller_port, self.node_id
        props = {
            "process.roles": "broker,controller", "node.id": str(n),
            "controller.quorum.voters": self.quorum_voters or f"{n}@127.0.0.1:{c}",
            "listeners": f"PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{p}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER", "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.workdir / "data"), "auto.create.topics.enable": "false",
            "num.partitions": str(self.partitions), "default.replication.factor": "1",
            # one node: every internal topic has one replica; few partitions keep start-up and first use fast
            "offsets.topic.replication.factor": "1", "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1", "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1", "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2", "num.io.threads": "4", "background.threads": "4",
        }
        if self.sasl:
            i = self.internal_port
            props.update({
                "listeners": f"SASL_PLAINTEXT://127.0.0.1:{p},INTERNAL://127.0.0.1:{i},CONTROLLER://127.0.0.1:{c}",
                "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{p},INTERNAL://127.0.0.1:{i}",
                "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name": "INTERNAL",
                "sasl.enabled.mechanisms": ",".join(self.sasl_mechanisms),
            })
            for mech in self.sasl_mechanisms:  # server side of SCRAM: the login module, no credentials
                props[f"listener.name.sasl_plaintext.{mech.lower()}.sasl.jaas.config"] = \
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        props.update(self.config)
        return props

    def _scram_args(self) -> list[str]:
        """``--add-scram`` arguments creating every user with every enabled mechanism at format time."""
        args = []
        for user, password in self.sasl_users.items():
            for field in (user, password):
                if any(ch in field for ch in ',[]="\n'):
                    raise ValueError("SCRAM user names and passwords for the local broker may not contain , [ ] = \" or newlines")
            for mech in self.sasl_mechanisms:
                args += ["--add-scram", f"{mech}=[name={user},password={password}]"]
        return args

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> LocalKafka:
        """Fetch (once), format (once), launch, and block until the broker serves metadata."""
        if self.running:
            return self
        self.launch()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> LocalKafka:
        """Fetch (once), format (once) and start the JVM without waiting for it (see ``wait_ready``)."""
        if self.running:
            return self
        for name in ("port", "controller_port", "internal_port"):  # given ports must be free: else the
            port = getattr(self, name)                                # readiness probe could ask someone else
            if port and not _port_free(port):
                raise BrokerError(f"port {port} on 127.0.0.1 is already in use by another process; "
                                  "choose another port or stop that process")
        libs = fetch_kafka(self.home, self.version)
        java = find_java()
        missing = [name for name in ("port", "controller_port") if not getattr(self, name)]
        if self.sasl and not self.internal_port:
            missing.append("internal_port")
        for name, port in zip(missing, _free_ports(len(missing))):
            setattr(self, name, port)
        self.workdir.mkdir(parents=True, exist_ok=True)
        props = self.workdir / "server.properties"
        props.write_text("".join(f"{k}={v}\n" for k, v in self.server_properties().items()))
        log4j = self.workdir / "log4j2.xml"
        log4j.write_text(LOG4J2_XML.format(path=quoteattr(str(self.log_path))))
        classpath = str(libs / "*")
        jvm = [java, f"-Xmx{self.heap}", *JVM_OPTS, f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
        self._t0 = time.monotonic()
        if not (self.workdir / "data" / "meta.properties").exists():
            self.cluster_id = self.cluster_id or _random_cluster_id()
            fmt = subprocess.run([*jvm, "kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                                  "-c", str(props), *self._scram_args()], capture_output=True, text=True, timeout=120)
            if fmt.returncode != 0:
                out = f"{fmt.stdout}{fmt.stderr}"
                for password in self.sasl_users.values():
                    out = out.replace(password, "***")
                raise BrokerError(f"kafka-storage format failed (exit {fmt.returncode}):\n{out}")
        self._out = open(self.stdout_path, "ab")
        self._proc = subprocess.Popen([*jvm, "kafka.Kafka", str(props)], stdin=subprocess.DEVNULL,
                                      stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)
        atexit.register(self.stop)
        return self

    def wait_ready(self, timeout_s: float | None = None) -> LocalKafka:
        """Block until this node is a live broker in the metadata (raises ``BrokerError`` on timeout)."""
        if self._proc is None:
            raise BrokerError("LocalKafka.wait_ready() before launch()")
        t0 = getattr(self, "_t0", None) or time.monotonic()
        self._wait_ready(t0 + (self.start_timeout_s if timeout_s is None else timeout_s))
        self.startup_s = time.monotonic() - t0
        log.info("Kafka %s node %d ready at %s in %.1f s (pid %d, dir %s)",
                 self.version, self.node_id, self.bootstrap, self.startup_s, self._proc.pid, self.workdir)
        return self

    def _wait_ready(self, deadline: float) -> None:
        while True:
            code = self._proc.poll()
            if code is not None:
                raise BrokerError(f"Kafka exited with code {code} during start-up\n{self.log_tail()}")
            try:
                if any(node == self.node_id for node, _, _ in metadata_brokers("127.0.0.1", self.probe_port)):
                    return
            except (OSError, struct.error):
                pass
            if time.monotonic() > deadline:
                raise BrokerError(f"Kafka not ready at {self.bootstrap} after {self.start_timeout_s:.0f} s\n"
                                  f"{self.log_tail()}")
            time.sleep(0.2)

    def kill(self) -> int | None:
        """SIGKILL the broker (an unclean crash: no controlled shutdown); idempotent. Returns the exit code."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            _killpg(proc, signal.SIGKILL)
            code = proc.wait()
        if self._out is not None:
            self._out.close()
            self._out = None
        return code

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM the broker's process group, wait, then SIGKILL; idempotent. Returns the exit code."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                _killpg(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("Kafka (pid %d) ignored SIGTERM for %.0f s; killing it", proc.pid, timeout_s)
                    _killpg(proc, signal.SIGKILL)
                    proc.wait()
            code = proc.returncode
        if self._out is not None:
            self._out.close()
            self._out = None
        return code

    def restart(self) -> LocalKafka:
        """Stop and start again on the same ports and data (topics and offsets survive)."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop, and delete the working directory if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        return f"{_tail(self.log_path, lines)}\n{_tail(self.stdout_path, lines)}"

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LocalKafka({self.version}, port={self.port}, {state}, workdir={str(self.workdir)!r})"


def serve_forever(home: Path, *, port: int = 0, partitions: int = 1, version: str = KAFKA_VERSION) -> None:
    """Run a local broker until Ctrl-C / SIGTERM, printing its bootstrap address."""
    def _terminate(signum, frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGINT, signal.SIGTERM)}
    kafka = LocalKafka(home, port=port, partitions=partitions, version=version)
    try:
        kafka.start()
        print(f"Apache Kafka {version} ready: bootstrap {kafka.bootstrap} (data {kafka.workdir}); Ctrl-C stops it",
              flush=True)
        while kafka.running:
            time.sleep(0.5)
        raise BrokerError(f"Kafka exited unexpectedly\n{kafka.log_tail()}")
    except KeyboardInterrupt:
        print("stopping Kafka", flush=True)
    finally:
        kafka.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    from ripple.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m devtools.local_kafka", description=serve_forever.__doc__)
    parser.add_argument("--home", type=Path, help="cache root for the jars (default: RIPPLE_HOME or ~/.cache/ripple)")
    parser.add_argument("--port", type=int, default=0, help="listener port (default: a free port)")
    parser.add_argument("--partitions", type=int, default=1, help="num.partitions of auto-created topics")
    parser.add_argument("--kafka-version", default=KAFKA_VERSION, help=f"Apache Kafka version (default {KAFKA_VERSION})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve_forever(args.home or Settings().home, port=args.port, partitions=args.partitions, version=args.kafka_version)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
