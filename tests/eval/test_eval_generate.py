"""Generation (tiny random Llama), resume after interruption, the evaluation run, reports."""

from __future__ import annotations

import json

import pytest

from smfa_eval.evaluate import RunMismatch, run_eval, select_items
from smfa_eval.generate import HFGenerator, Prompt, read_done, run_generation
from smfa_eval.judges.heuristic import HeuristicJudge
from smfa_eval.schema import Bench


def test_hf_generator_batched_greedy_matches_single(tiny_llama, bench_dir):
    gen = HFGenerator(tiny_llama, max_new_tokens=6)
    prompts = [Prompt("a", "Where was Rosa born?"), Prompt("b", "What is the height of this person, please tell me?"),
               Prompt("c", "Is the person smiling?", bench_dir / "images/portraits/p00000.png")]
    with pytest.warns(UserWarning, match="images are dropped"):
        batched = gen.generate(prompts)
    single = [gen.generate([p])[0] for p in prompts]
    assert batched == single  # left padding + greedy: batch size does not change answers
    assert all(isinstance(t, str) for t in batched)
    assert gen.generate(prompts) == batched  # deterministic


def test_hf_generator_stops_at_eos(tiny_llama):
    import torch

    gen = HFGenerator(tiny_llama, max_new_tokens=5)
    eos = gen.tokenizer.eos_token_id
    calls = []

    def force_eos(module, args, out):  # EOS becomes the argmax at every step
        calls.append(1)
        out = out.clone()
        out[..., eos] += 1e4
        return out

    gen.model.lm_head.register_forward_hook(force_eos)
    assert gen.generate([Prompt("a", "Hello?"), Prompt("b", "A longer question here?")]) == ["", ""]
    assert len(calls) == 1  # stopped after the first token, not after max_new_tokens
    del torch


def test_hf_generator_rejects_non_model_dir(tmp_path):
    from smfa_eval.generate import GenerationError

    with pytest.raises(GenerationError, match="no config.json"):
        HFGenerator(tmp_path)


def test_resume_after_interruption(tmp_path, echo_generator):
    prompts = [Prompt(f"q{i}", f"question number {i}?") for i in range(10)]
    path = tmp_path / "gen.jsonl"
    g1 = echo_generator(crash_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_generation(prompts, g1, path, batch_size=3, progress=False)
    assert len(read_done(path)) == 6
    with path.open("a") as fh:  # a line cut short by the interruption
        fh.write('{"id": "q6", "predic')
    g2 = echo_generator()
    preds = run_generation(prompts, g2, path, batch_size=3, progress=False)
    assert g2.seen == [f"q{i}" for i in range(6, 10)]  # only what was missing
    assert preds == {f"q{i}": f"This is {i}." for i in range(10)}
    lines = path.read_text().splitlines()
    assert len(lines) == 10 and all(json.loads(x) for x in lines)


def test_select_items_sets_and_limit(bench_dir):
    bench = Bench(bench_dir)
    forget = set(bench.split("forget10").forget)
    items = select_items(bench, "forget10")
    assert {e.set for e in items if e.item.profile_id in forget} == {"forget"}
    assert {e.set for e in items if e.item.profile_id not in forget and e.item.profile_id} == {"retain"}
    assert {e.set for e in items if e.item.profile_id is None} == {"unseen"}  # images in no training set
    retain_profiles = {e.item.profile_id for e in items if e.set == "retain"}
    assert len(retain_profiles) == 20 - len(forget)  # the full retain set
    limited = select_items(bench, "forget10", limit=3)
    assert len(limited) == 2 * 3 * 3 + 3


def test_run_eval_end_to_end_with_tiny_llama(tiny_llama, bench_dir, tmp_path):
    out = tmp_path / "run"
    s = run_eval(bench_dir, "forget05", out, judge=HeuristicJudge(), judge_name="heuristic", model=str(tiny_llama),
                 limit=2, max_new_tokens=4, batch_size=4, progress=False, method="tiny")
    rows = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert len(rows) == 12 + 2 and all(r["fact"] is not None and r["meaningful"] is not None for r in rows)
    assert set(s["groups"]) == {f"{a}/{b}" for a in ("forget", "retain")
                                for b in ("image_understanding", "image_memory", "text_memory")} | {
        "unseen/general_understanding"}
    assert s["run"]["method"] == "tiny" and s["judge_failed"] == 0
    table = (out / "table1.md").read_text()
    assert "| tiny |" in table and "Forget I-M R↓" in table
    # a finished run resumes to the same result without loading the model again
    s2 = run_eval(bench_dir, "forget05", out, judge=HeuristicJudge(), judge_name="heuristic", model=str(tiny_llama),
                  limit=2, max_new_tokens=4, progress=False, method="tiny",
                  generator_factory=lambda: pytest.fail("model loaded for a finished run"))
    assert s2["groups"] == s["groups"]
    with pytest.raises(RunMismatch, match="split"):
        run_eval(bench_dir, "forget10", out, judge=HeuristicJudge(), judge_name="heuristic", model=str(tiny_llama),
                 limit=2, max_new_tokens=4, progress=False)


def test_interrupted_eval_resumes(bench_dir, tmp_path, echo_generator):
    out = tmp_path / "run"
    kw = dict(judge=HeuristicJudge(), judge_name="heuristic", model=None, limit=3, batch_size=4, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_eval(bench_dir, "forget10", out, generator=echo_generator(crash_after=2), **kw)
    assert len(read_done(out / "generations.jsonl")) == 8 and not (out / "summary.json").exists()
    g = echo_generator()
    s = run_eval(bench_dir, "forget10", out, generator=g, **kw)
    assert len(g.seen) == 18 + 3 - 8  # 3 per (set, task), the unseen set included
    fresh = run_eval(bench_dir, "forget10", tmp_path / "fresh", generator=echo_generator(), **kw)
    assert s["groups"] == fresh["groups"]


def test_report_tables_and_figures(bench_dir, tmp_path, echo_generator):
    from smfa_eval.report import write_report

    runs = []
    for i, (method, k, mode) in enumerate([("original", None, None), ("smfa", 0.5, "both"), ("smfa", 1.0, "both"),
                                            ("mfa", None, "none")]):
        out = tmp_path / f"r{i}"
        run_eval(bench_dir, "forget05", out, judge=HeuristicJudge(), judge_name="heuristic", model=None,
                 generator=echo_generator(), limit=2, progress=False, method=method, k=k, mode=mode)
        runs.append(out)
    md = write_report(runs, tmp_path / "rep")
    text = md.read_text()
    assert "## Table 1" in text and "| smfa (k=0.5) |" in text and "| Directional Conflict |" in text
    assert text.count("| original") == 3  # once per table (1, unseen images, 2)
    for png in ("tradeoff.png", "k_sweep.png", "understanding_by_type.png"):
        assert (tmp_path / "rep" / png).stat().st_size > 1000
