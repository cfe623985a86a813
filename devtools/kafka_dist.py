"""The Apache Kafka distribution the local broker runs: its version, and its jars fetched once.

``fetch_kafka`` resolves the broker's jars from Maven Central with Maven and the bundled pom
(``devtools/kafka/pom.xml``) into a cache folder; :class:`devtools.local_kafka.LocalKafka` runs
them.  ``find_java`` finds the Java 17+ runtime they need.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

log = logging.getLogger("ripple.broker")

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).with_name("kafka") / "pom.xml"


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or stopped (message carries the log tail)."""


def find_java() -> str:
    """``$JAVA_HOME/bin/java`` or ``java`` on PATH; Kafka 4 needs Java 17+."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not os.access(java, os.X_OK):
        raise BrokerError("no Java runtime found: Apache Kafka 4 needs Java 17+ (install a JDK, or set JAVA_HOME)")
    return java


def fetch_kafka(home: Path, version: str = KAFKA_VERSION, *, timeout_s: float = 900.0) -> Path:
    """Resolve the broker's jars into ``<home>/kafka/<version>/libs`` once; return that folder.

    Runs ``mvn dependency:copy-dependencies`` on the bundled pom; later calls (other processes
    included: a file lock serialises them) return at once thanks to a marker file.
    """
    root = Path(home).expanduser() / "kafka" / version
    libs, marker = root / "libs", root / ".fetched"
    if marker.exists():
        return libs
    find_java()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven ('mvn') not found on PATH: it fetches the Kafka jars from Maven Central once")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if marker.exists():
            return libs
        log.info("fetching Apache Kafka %s jars from Maven Central into %s (once; ~20-60 s)", version, libs)
        shutil.copyfile(POM, root / "pom.xml")
        partial = root / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(libs, ignore_errors=True)
        cmd = [mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(root / "pom.xml"), "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={partial}", f"-Dkafka.version={version}"]
        t0 = time.monotonic()
        try:
            done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"mvn did not finish fetching Kafka {version} within {timeout_s:.0f} s") from exc
        if done.returncode != 0 or not (partial / f"kafka_2.13-{version}.jar").exists():
            out = (done.stdout + done.stderr).strip().splitlines()[-40:]
            raise BrokerError(f"mvn failed (exit {done.returncode}) fetching Kafka {version}:\n" + "\n".join(out))
        partial.rename(libs)
        marker.write_text(f"{version}\n")
        log.info("fetched %d jars in %.1f s", len(list(libs.glob("*.jar"))), time.monotonic() - t0)
    return libs
