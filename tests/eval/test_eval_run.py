"""`smfa bench run` end to end on a tiny Qwen2.5-VL and a small built benchmark: unlearning
with real methods on the split's own files, evaluation of every result and of the model
before unlearning, the combined report, reuse on rerun, and errors before any training."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from smfa_cli.main import cli


@pytest.fixture
def run_args(tiny_checkpoint, small_bench, tmp_path):
    def make(*extra, out=None):
        args = ["bench", "run", "--model", tiny_checkpoint("qwen2_5_vl"), "--data", small_bench,
                "--split", "forget05", "--out", out or tmp_path / "run", "--limit", 1, "--max-new-tokens", 2,
                "--max-steps", 1, "--batch-size", 2, "--max-length", 256, *extra]
        return [str(a) for a in args]
    return make


def test_bench_run_unlearns_evaluates_and_reports(run_args, tmp_path):
    out = tmp_path / "run"
    args = run_args("--method", "idk", "--method", "smfa", "--set", "smfa.k=0.5")
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "| vanilla |" in r.output and "| idk |" in r.output and "| smfa (k=0.5) |" in r.output  # Table 1
    report = (out / "report" / "report.md").read_text()
    assert "## Table 1" in report and report.count("| idk |") >= 1
    assert "| smfa − vanilla |" in report and "| smfa − idk |" in report  # paired, item by item
    for label in ("vanilla", "idk", "smfa"):
        s = json.loads((out / label / "eval" / "summary.json").read_text())["run"]
        assert s["method"] == label and s["split"] == "forget05"
    smfa_eval = json.loads((out / "smfa" / "eval" / "summary.json").read_text())["run"]
    assert smfa_eval["k"] == 0.5 and smfa_eval["mode"] == "both"  # the method's options label its row
    for m in ("idk", "smfa"):
        info = json.loads((out / m / "unlearn" / "run.json").read_text())
        assert info["method"] == m and info["train"]["max_steps"] == 1
    assert json.loads((out / "smfa" / "unlearn" / "run.json").read_text())["options"]["k"] == 0.5
    assert not (out / "vanilla" / "unlearn").exists()

    # the same command again: finished unlearning runs are reused, nothing is retrained
    model_file = next((out / "idk" / "unlearn" / "model").glob("*.safetensors"))
    mtime = model_file.stat().st_mtime_ns
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "idk: reusing" in r.output and "smfa: reusing" in r.output
    assert model_file.stat().st_mtime_ns == mtime

    # other settings are never silently reused
    r = CliRunner().invoke(cli, run_args("--method", "idk", "--lr", "0.001"))
    assert r.exit_code != 0 and "other settings (train)" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("extra,match", [
    (("--method", "nope"), "unknown method 'nope'"),
    (("--method", "idk", "--set", "smfa.k=1"), "options given for smfa"),
    (("--method", "idk", "--set", "idk.k=1"), "method 'idk' has no option k"),
    (("--method", "idk", "--set", "k=1"), "METHOD.KEY=VALUE"),
    (("--method", "idk", "--split", "forget99"), "no split 'forget99'"),
    (("--no-baseline",), "nothing to run"),
])
def test_bench_run_errors_before_training(run_args, tmp_path, extra, match):
    out = tmp_path / "bad"
    r = CliRunner().invoke(cli, run_args(*extra, out=out))
    assert r.exit_code != 0 and match in r.output, r.output
    assert "Traceback" not in r.output
    assert not out.exists()  # nothing was trained or written
