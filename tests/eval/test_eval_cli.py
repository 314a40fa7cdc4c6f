"""`smfa bench build`, `smfa eval`, `smfa report` through click."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from smfa_cli.main import cli
from smfa_eval.schema import SCHEMA_VERSION


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.mark.parametrize("cmd", [["bench", "build"], ["eval"], ["report"], ["bench"]])
def test_help(run, cmd):
    r = run(*cmd, "--help")
    assert r.exit_code == 0 and "Usage:" in r.output


def test_bench_build_and_errors(run, tmp_path):
    r = run("bench", "build", "--profiles", 6, "--seed", 2, "--general-images", 2, "--unseen-images", 3,
            "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output
    assert "6 profiles" in r.output and "forget05 1+1" in r.output
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["schema_version"] == SCHEMA_VERSION and m["unseen_images"] == 3
    assert len(list((tmp_path / "b" / "images" / "unseen").glob("*.png"))) == 3
    r = run("bench", "build", "--profiles", 6, "--out", tmp_path / "b")
    assert r.exit_code == 1 and "Error:" in r.output and "not empty" in r.output and "Traceback" not in r.output
    r = run("bench", "build", "--profiles", 1, "--out", tmp_path / "c")
    assert r.exit_code == 2  # usage error


def test_eval_and_report(run, tmp_path, bench_dir, tiny_llama):
    out = tmp_path / "run"
    r = run("eval", "--model", tiny_llama, "--data", bench_dir, "--split", "forget05", "--judge", "heuristic",
            "--out", out, "--limit", 1, "--max-new-tokens", 3, "--method", "tiny", "--k", 1.0, "--mode", "both")
    assert r.exit_code == 0, r.output
    assert "| tiny (k=1) |" in r.output
    assert len((out / "items.jsonl").read_text().splitlines()) == 6 + 1  # + one unseen-image item
    r = run("eval", "--model", tiny_llama, "--data", bench_dir, "--split", "forget05", "--out", out, "--limit", 1,
            "--max-new-tokens", 3, "--method", "tiny", "--k", 1.0, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["run"]["split"] == "forget05"  # resumed, nothing redone
    r = run("report", out, "--out", tmp_path / "rep")
    assert r.exit_code == 0 and (tmp_path / "rep" / "report.md").is_file()


def test_eval_user_errors(run, tmp_path, bench_dir, tiny_llama):
    base = ["eval", "--model", tiny_llama, "--data", bench_dir, "--out", tmp_path / "o"]
    r = run(*base, "--judge", "nope")
    assert r.exit_code == 1 and "unknown judge 'nope'" in r.output
    r = run(*base, "--split", "forget99")
    assert r.exit_code == 1 and "no split 'forget99'" in r.output
    r = run(*base, "--judge", "openai", "--judge-opt", "novalue")
    assert r.exit_code == 1 and "KEY=VALUE" in r.output
    r = run(*base, "--items", "eval_test")  # an items file this (built) benchmark does not have
    assert r.exit_code == 1 and "manifest.json: no 'eval_test' entry in files" in r.output
    assert not (tmp_path / "o").exists()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text(json.dumps({"schema_version": "1.0", "files": {"eval": "eval.jsonl"},
                                                   "splits": {"s": {"forget": ["p1"]}}}))
    (bad / "eval.jsonl").write_text('{"id": "x", "task": "text_memory", "question": "Q?", "answer": "A"}\n')
    r = run("eval", "--model", tiny_llama, "--data", bad, "--split", "s", "--out", tmp_path / "o2")
    assert r.exit_code == 1 and "eval.jsonl:1: missing field(s) ['attribute']" in r.output
    assert "Traceback" not in r.output


def test_report_missing_run(run, tmp_path):
    (tmp_path / "empty").mkdir()
    r = run("report", tmp_path / "empty", "--out", tmp_path / "rep")
    assert r.exit_code == 1 and "no summary.json" in r.output


def test_eval_of_a_model_with_only_pytorch_model_bin_is_a_one_line_error(run, tmp_path, bench_dir):
    d = tmp_path / "pickled"
    d.mkdir()
    (d / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}')
    (d / "pytorch_model.bin").write_bytes(b"never unpickled")
    r = run("eval", "--model", d, "--data", bench_dir, "--out", tmp_path / "o", "--limit", "1")
    assert r.exit_code == 1 and "only pytorch_model.bin (pickle); only safetensors checkpoints are read" in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
