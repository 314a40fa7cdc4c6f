"""Sequential forget requests: the cut into requests, the per-request forget files, the
curves' records computed by hand, and `bench run --sequential 3` on a tiny Qwen2.5-VL."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from smfa_cli.main import cli
from smfa_eval.build import build
from smfa_eval.schema import Bench, BenchDataError
from smfa_eval.sequential import request_groups, sequential_records, sequential_table, write_request_files


def test_request_groups_are_consecutive_and_balanced():
    assert request_groups(list("abcdefg"), 3) == [["a", "b", "c"], ["d", "e"], ["f", "g"]]
    assert request_groups(["a"], 1) == [["a"]]
    for bad in (0, 8):
        with pytest.raises(BenchDataError, match=f"--sequential {bad}: the split has 7 forget profiles"):
            request_groups(list("abcdefg"), bad)


@pytest.fixture(scope="module")
def seq_bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("seq") / "b"
    build(out, profiles=20, seed=4, general_images=2, image_size=64)
    return out


def test_request_files_per_request_and_cumulative(seq_bench, tmp_path):
    bench = Bench(seq_bench)
    forget = bench.split("forget15").forget
    groups = request_groups(forget, 3)
    for mode, want in (("request", [{forget[0]}, {forget[1]}, {forget[2]}]),
                       ("cumulative", [{forget[0]}, set(forget[:2]), set(forget)])):
        paths = write_request_files(bench, "forget15", groups, tmp_path / mode, mode)
        got = [{json.loads(x)["profile_id"] for x in p.read_text().splitlines()} for p in paths]
        assert got == want
        n_rows = [len(p.read_text().splitlines()) for p in paths]
        assert n_rows == [21 * len(w) for w in want]  # 10 text + 11 image fine-tuning rows per profile
    with pytest.raises(BenchDataError, match="--sequential-forget 'both'"):
        write_request_files(bench, "forget15", groups, tmp_path / "x", "both")


def test_records_split_forgotten_from_pending(tmp_path):
    rows = [{"id": "1", "set": "forget", "task": "text_memory", "profile_id": "a", "rougeL_f": 0.0, "fact": 0.0},
            {"id": "2", "set": "forget", "task": "image_memory", "profile_id": "b", "rougeL_f": 0.8, "fact": 8.0},
            {"id": "3", "set": "retain", "task": "text_memory", "profile_id": "z", "rougeL_f": 0.6, "fact": 6.0},
            {"id": "4", "set": "retain", "task": "image_understanding", "profile_id": "z", "rougeL_f": 0.5,
             "fact": 5.0},
            {"id": "5", "set": "unseen", "task": "general_understanding", "profile_id": None, "rougeL_f": 0.4,
             "fact": 4.0}]
    p = tmp_path / "items.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recs = sequential_records(p, model="m", split="s", request=1, groups=[["a"], ["b"]], mode="request")

    def get(s, t, metric="rougeL"):
        hit = [r for r in recs if (r["set"], r["task"], r["metric"]) == (s, t, metric)]
        return hit[0]["value"] if hit else None

    assert (get("forgotten", "memory"), get("pending", "memory"), get("forget", "memory")) == (0.0, 0.8, 0.4)
    assert (get("retain", "memory"), get("all", "image_understanding")) == (0.6, 0.5)
    assert get("unseen", "general_understanding", "fact") == 4.0
    assert all(r["request"] == 1 and r["mode"] == "request" and r["n"] >= 1 for r in recs)
    assert "| m | 1 | 0.000 ± 0.000 | 0.600 ± 0.000 | 0.500 ± 0.000 | 0.400 ± 0.000 |" in sequential_table(recs, "s")


def test_bench_run_sequential_3_draws_its_curves(tiny_checkpoint, seq_bench, tmp_path):
    out = tmp_path / "run"
    args = ["bench", "run", "--model", tiny_checkpoint("qwen2_5_vl"), "--data", seq_bench, "--split", "forget15",
            "--out", out, "--limit", 1, "--max-new-tokens", 2, "--max-steps", 1, "--batch-size", 2,
            "--max-length", 256, "--method", "idk", "--method", "smfa", "--sequential", 3]
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    recs = json.loads((out / "report" / "sequential.json").read_text())
    assert {(x["model"], x["request"]) for x in recs} == {(m, i) for m in ("idk", "smfa") for i in range(4)}
    # each request unlearns from the previous request's model
    for m in ("idk", "smfa"):
        for i in (2, 3):
            info = json.loads((out / m / f"request{i}" / "unlearn" / "run.json").read_text())
            assert info["base_model"] == str(out / m / f"request{i - 1}" / "unlearn" / "model")
    forgotten = sorted({x["request"]: x["n"] for x in recs if x["model"] == "smfa" and x["set"] == "forgotten"
                        and x["metric"] == "rougeL" and x["task"] == "memory"}.items())
    assert [k for k, _ in forgotten] == [1, 2, 3]  # nothing is "forgotten" before the first request
    assert (out / "report" / "sequential.png").stat().st_size > 5000
    assert "| smfa | 3 |" in r.output and "| idk | 0 |" in r.output
    bad = CliRunner().invoke(cli, [str(a) for a in args[:-1]] + ["9"])
    assert bad.exit_code != 0 and "--sequential 9: the split has 3 forget profiles" in bad.output
