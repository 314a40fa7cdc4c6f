"""`smfa bench run` runs every method added for issue 11 on a tiny Qwen2.5-VL (LoRA, the
default), options through `--set METHOD.KEY=VALUE`: each is unlearned, evaluated and reported."""

from __future__ import annotations

import json

from click.testing import CliRunner

from smfa_cli.main import cli

FIELD = ["grad_ascent", "npo", "simnpo", "idk_dpo", "rmu", "undial", "task_vector"]


def test_bench_run_every_field_method(tiny_checkpoint, small_bench, tmp_path):
    out = tmp_path / "run"
    args = ["bench", "run", "--model", tiny_checkpoint("qwen2_5_vl"), "--data", small_bench, "--split", "forget05",
            "--out", out, "--limit", 1, "--max-new-tokens", 2, "--max-steps", 1, "--batch-size", 2,
            "--max-length", 256, "--no-baseline", "--set", "npo.beta=0.2", "--set", "task_vector.alpha=0.5"]
    for m in FIELD:
        args += ["--method", m]
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    report = (out / "report" / "report.md").read_text()
    for m in FIELD:
        assert f"| {m} |" in report, m
        info = json.loads((out / m / "unlearn" / "run.json").read_text())
        assert info["method"] == m and info["train"]["mode"] == "lora"
        assert json.loads((out / m / "eval" / "summary.json").read_text())["run"]["method"] == m
    assert json.loads((out / "npo" / "unlearn" / "run.json").read_text())["options"]["beta"] == 0.2
    assert json.loads((out / "task_vector" / "unlearn" / "run.json").read_text())["options"]["alpha"] == 0.5
