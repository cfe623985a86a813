"""Each subcommand offers the settings it uses, and the packaging keeps the client light and
the two ONNX Runtime builds exclusive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

from ripple.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def _flags(*command: str) -> set[str]:
    parser = build_parser()
    sub = parser
    for word in command:
        sub = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction").choices[word]
    return {s for a in sub._actions for s in a.option_strings}


@pytest.mark.parametrize("command, has, lacks", [
    (("worker",), {"--metrics-port", "--broker", "--onnx-provider", "--app-id"}, set()),
    (("broker",), {"--home", "--port"}, {"--onnx-provider", "--broker", "--app-id", "--metrics-port"}),
    (("produce",), {"--broker", "--topic-prefix", "--topic"}, {"--onnx-provider", "--home", "--partitions"}),
    (("serve",), {"--broker", "--host", "--port"}, {"--onnx-provider", "--home", "--app-id"}),
    (("produce-sample",), {"--broker"}, {"--onnx-provider", "--metrics-port"}),
    (("eval", "replies"), {"--onnx-provider"}, {"--broker", "--app-id"}),
    (("model", "export"), {"--home", "--onnx-provider"}, {"--broker", "--partitions"}),
])
def test_each_subcommand_shows_only_the_settings_it_uses(command, has, lacks):
    flags = _flags(*command)
    assert has <= flags and not (lacks & flags), sorted(flags)


def test_metrics_port_flag_reaches_the_settings():
    from ripple.cli import settings_from

    args = build_parser().parse_args(["worker", "--metrics-port", "9464"])
    assert settings_from(args).metrics_port == 9464


def test_without_onnx_runtime_a_model_command_says_which_extra_to_install(tmp_path):
    blocker = tmp_path / "onnxruntime"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'onnxruntime'\", name='onnxruntime')\n")
    env = {"PYTHONPATH": str(tmp_path), "RIPPLE_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "ripple", "model", "bench", "--onnx-provider", "cpu"], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "ripple-recs[cpu]" in r.stderr and "ripple-recs[gpu]" in r.stderr


def test_onnx_runtime_comes_from_exactly_one_extra_and_the_client_stays_light():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    assert "onnxruntime" not in base
    assert [r for r in extras["cpu"] if r.startswith("onnxruntime")] == ["onnxruntime>=1.17"]
    assert [r for r in extras["gpu"] if r.startswith("onnxruntime")] == ["onnxruntime-gpu>=1.17"]
    assert not any("onnxruntime" in r for name, reqs in extras.items() if name not in ("cpu", "gpu") for r in reqs)
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    heavy = ("faust", "onnx", "river", "numpy", "tokenizers")
    assert not [r for r in client["dependencies"] + sum(client["optional-dependencies"].values(), [])
                if r.split(">")[0].split("=")[0].startswith(heavy)]


def test_the_schemas_exist_once_in_the_client_package():
    assert not list(ROOT.glob("processors/**/*.json")) or not (ROOT / "processors" / "schemas").exists()
    assert {p.stem for p in (ROOT / "client" / "ripple_client" / "schemas").glob("*.json")} >= {
        "post", "like", "comment", "share", "follow", "recommendation", "trending", "model_sync"}
