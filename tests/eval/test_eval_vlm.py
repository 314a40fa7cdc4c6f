"""Image+text generation with tiny random LLaVA-OneVision and Qwen2.5-VL checkpoints
(built by `smfa_methods.tiny`, saved, reloaded through `smfa_methods.models.load_model`)
on items of a small built benchmark: directly, through `run_eval`, and through `smfa eval`."""

from __future__ import annotations

import json
import warnings

import pytest

from smfa_eval.evaluate import run_eval, select_items
from smfa_eval.generate import GenerationError, HFGenerator, Prompt
from smfa_eval.judges.heuristic import HeuristicJudge
from smfa_eval.schema import Bench

VLMS = ("llava_onevision", "qwen2_5_vl")


def _mixed_prompts(bench_dir) -> list[Prompt]:
    """Portrait, clinical and text-only questions, interleaved so one batch holds both kinds."""
    bench = Bench(bench_dir)
    items = bench.qa("eval")
    portrait = [it for it in items if it.task == "image_memory"][:2]
    clinical = [it for it in items if it.image_type == "clinical"][:1]
    text = [it for it in items if it.image is None][:2]
    order = [portrait[0], text[0], clinical[0], text[1], portrait[1]]
    return [Prompt(it.id, it.question, bench.root / it.image if it.image else None) for it in order]


def _vision_calls(model) -> list[int]:
    """Counts forward calls of the vision tower (LLaVA: vision_tower, Qwen: visual)."""
    calls: list[int] = []
    for name, mod in model.named_modules():
        if name.split(".")[-1] in ("vision_tower", "visual"):
            mod.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize("kind", VLMS)
def test_vlm_batched_greedy_matches_single(kind, tiny_checkpoint, small_bench):
    gen = HFGenerator(tiny_checkpoint(kind), max_new_tokens=4)
    assert gen.is_vlm and type(gen.processor).__name__.startswith("NoVideo")  # the subclass, not a bare tokenizer
    calls = _vision_calls(gen.model)
    prompts = _mixed_prompts(small_bench)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a VLM must not drop images
        batched = gen.generate(prompts)
    assert len(calls) == 1  # the three image prompts went through the vision tower as one group
    single = [gen.generate([p])[0] for p in prompts]
    assert batched == single  # left padding + greedy: grouping and batch size do not change answers
    assert all(isinstance(t, str) for t in batched)
    calls.clear()
    gen.generate([p for p in prompts if p.image is None])
    assert calls == []  # text-only prompts to a VLM carry no image


def test_vlm_image_reaches_the_prompt(tiny_checkpoint, small_bench):
    gen = HFGenerator(tiny_checkpoint("qwen2_5_vl"), max_new_tokens=1)
    p = _mixed_prompts(small_bench)[0]
    assert "<|image_pad|>" in gen._chat(p, with_image=True)
    assert "<|image_pad|>" not in gen._chat(p, with_image=False)


def test_vlm_bf16_casts_pixel_values(tiny_checkpoint, small_bench):
    import torch

    gen = HFGenerator(tiny_checkpoint("qwen2_5_vl"), max_new_tokens=2, dtype="bf16")
    assert gen.model.dtype == torch.bfloat16
    assert isinstance(gen.generate(_mixed_prompts(small_bench)[:2])[0], str)


def test_dtype_names(tiny_checkpoint):
    import torch

    from smfa_eval.generate import _resolve_dtype

    assert _resolve_dtype("bf16", {}) is torch.bfloat16
    assert _resolve_dtype(None, {"dtype": "float16"}) is torch.float16  # the checkpoint's own dtype
    assert _resolve_dtype(None, {}) is torch.float32
    with pytest.raises(GenerationError, match="unknown dtype"):
        HFGenerator(tiny_checkpoint("qwen2_5_vl"), dtype="int4x")


def test_run_eval_mixes_text_and_image_items(tiny_checkpoint, small_bench, tmp_path):
    path = tiny_checkpoint("llava_onevision")
    out = tmp_path / "run"
    s = run_eval(small_bench, "forget05", out, judge=HeuristicJudge(), judge_name="heuristic", model=str(path),
                 limit=1, max_new_tokens=3, batch_size=4, progress=False, method="tiny-vlm")
    items = select_items(Bench(small_bench), "forget05", limit=1)
    assert len(items) == 6 + 1 and {e.item.image is None for e in items[:4]} == {True, False}  # first batch mixed
    preds = {json.loads(x)["id"]: json.loads(x)["prediction"] for x in (out / "generations.jsonl").read_text().splitlines()}
    gen = HFGenerator(path, max_new_tokens=3)
    bench = Bench(small_bench)
    for e in items:  # one at a time equals what the batched evaluation wrote
        p = Prompt(e.item.id, e.item.question, bench.root / e.item.image if e.item.image else None)
        assert gen.generate([p]) == [preds[e.item.id]]
    rows = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert len(rows) == 6 + 1 and s["judge_failed"] == 0 and all(r["fact"] is not None for r in rows)
    assert "| tiny-vlm |" in (out / "table1.md").read_text()


def test_cli_eval_tiny_vlm(tiny_checkpoint, small_bench, tmp_path):
    from click.testing import CliRunner

    from smfa_cli.main import cli

    out = tmp_path / "run"
    args = ["eval", "--model", tiny_checkpoint("qwen2_5_vl"), "--data", small_bench, "--split", "forget05",
            "--judge", "heuristic", "--out", out, "--limit", 1, "--max-new-tokens", 3, "--batch-size", 4,
            "--method", "qwen-tiny"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "images are dropped" would mean a text-only load
        r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "| qwen-tiny |" in r.output and "Forget I-M R↓" in r.output  # the Table 1 summary
    rows = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert len(rows) == 6 + 1 and {r["task"] for r in rows} == {"image_understanding", "image_memory", "text_memory",
                                                                "general_understanding"}
    assert all(isinstance(r["prediction"], str) and r["fact"] is not None for r in rows)
    assert json.loads((out / "summary.json").read_text())["groups"]["forget/image_memory"]["n"] == 1
