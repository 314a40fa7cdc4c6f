"""The example third-party plugin (examples/smfa-npo) installs into the environment and
runs through `smfa unlearn --method npo`: registration works from outside the tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMFA = [sys.executable, "-m", "smfa_cli.main"]


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def npo_installed():
    res = _pip("install", "-q", "--no-deps", "--no-build-isolation", "-e", str(ROOT / "examples" / "smfa-npo"))
    if res.returncode != 0:
        pytest.fail(f"pip install failed:\n{res.stderr}")
    try:
        yield
    finally:
        _pip("uninstall", "-y", "smfa-npo")


@pytest.mark.slow  # pip-installs the example into the environment
def test_example_plugin_round_trip(npo_installed, tiny_model, text_data, tmp_path):
    env = {**os.environ, "SMFA_PLUGINS": "smfa-npo", "HF_HUB_OFFLINE": "1"}
    listed = subprocess.run([*SMFA, "methods", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["npo_example"]["plugin"] == "npo" and rows["idk"]["plugin"] == "smfa_methods.builtin"
    assert rows["npo"]["plugin"] == "smfa_methods.builtin"  # the in-tree NPO, next to the example

    out = tmp_path / "out"
    cmd = [*SMFA, "unlearn", "--method", "npo_example", "--model", str(tiny_model("llama")), "--forget", str(text_data[0]),
           "--retain", str(text_data[1]), "--out", str(out), "--max-steps", "2", "--batch-size", "2",
           "--set", "beta=0.2", "--logging-steps", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((out / "run.json").read_text())
    assert info["method"] == "npo_example" and info["options"]["beta"] == 0.2
    assert (out / "model" / "config.json").exists() and (out / "delta" / "adapter_config.json").exists()

    # With SMFA_PLUGINS="" the installed plugin stays out.
    env["SMFA_PLUGINS"] = ""
    listed = subprocess.run([*SMFA, "methods", "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert "npo_example" not in {r["name"] for r in json.loads(listed.stdout)}
