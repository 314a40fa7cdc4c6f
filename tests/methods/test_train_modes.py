"""--all-params trains every parameter (a model built from scratch needs it), the cosine
schedule decays to its floor, settings are range-checked, and the collator encodes each
distinct example once."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from smfa_methods.api import finetune
from smfa_methods.collators import SFTCollator
from smfa_methods.data import load_jsonl
from smfa_methods.errors import MethodError
from smfa_methods.method import TrainConfig
from smfa_methods.models import DELTA_FILE, load_model


def test_all_params_trains_embeddings_norms_head_and_vision(tiny_model, vlm_data, tmp_path):
    cfg = TrainConfig(mode="all", max_steps=2, batch_size=4, lr=1e-2, progress=False)
    res = finetune(model=tiny_model("qwen2_5_vl"), data=vlm_data[0], out=tmp_path, train=cfg)
    delta = load_file(str(res.deltas["delta"] / DELTA_FILE))
    moved = {k for k, v in delta.items() if v.abs().max() > 0}
    for part in ("embed_tokens", "lm_head", "norm", "visual."):
        assert any(part in k for k in moved), f"no trained tensor with {part!r} in {sorted(moved)[:8]}..."
    before = load_model(tiny_model("qwen2_5_vl")).model.state_dict()
    after = load_model(res.model).model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) >= 0.9 * len(before)


def test_full_still_trains_only_the_language_linears(tiny_model, vlm_data, tmp_path):
    cfg = TrainConfig(mode="full", max_steps=1, batch_size=4, lr=1e-2, progress=False)
    res = finetune(model=tiny_model("qwen2_5_vl"), data=vlm_data[0], out=tmp_path, train=cfg)
    keys = load_file(str(res.deltas["delta"] / DELTA_FILE))
    assert keys and all(k.endswith("proj.weight") and "visual" not in k for k in keys)


def test_cosine_schedule_warms_up_then_decays_to_the_floor(tiny_model, text_data, tmp_path):
    from smfa_methods.api import FineTune
    from smfa_methods.data import ExampleDataset
    from smfa_methods.method import Job
    from smfa_methods.trainer import fit, training_arguments

    cfg = TrainConfig(scheduler="cosine", lr=1e-3, min_lr_ratio=0.1, warmup_ratio=0.25, max_steps=12, batch_size=2,
                      logging_steps=1, progress=False)
    args = training_arguments(cfg, tmp_path / "x")
    assert args.lr_scheduler_type == "cosine_with_min_lr" and args.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    job = Job(tiny_model("llama"), tmp_path, load_jsonl(text_data[0]), [], cfg, {})
    trainer, _, _ = fit(FineTune(), job, ExampleDataset(job.forget), tmp_path / "run")
    lrs = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert len(lrs) == 12
    assert lrs[0] < lrs[1] < lrs[2]  # warm-up over the first 3 steps
    assert max(lrs) == pytest.approx(1e-3, rel=0.01)
    assert all(b <= a for a, b in zip(lrs[3:], lrs[4:]))  # then only down
    assert 1e-4 <= lrs[-1] < 1.5e-4  # towards the floor, never below it


@pytest.mark.parametrize("field,value,flag", [("scheduler", "linear", "--scheduler"),
                                              ("warmup_ratio", 1.5, "--warmup-ratio"),
                                              ("min_lr_ratio", -0.1, "--min-lr-ratio"),
                                              ("lr", float("nan"), "--lr"), ("mode", "half", "training mode")])
def test_bad_settings_name_the_flag(field, value, flag):
    cfg = TrainConfig(**{field: value})
    with pytest.raises(MethodError, match=flag):
        cfg.validate()


def test_all_params_flag_on_the_command_line(tiny_model, text_data, tmp_path):
    from click.testing import CliRunner

    from smfa_cli.main import cli

    res = CliRunner().invoke(cli, ["train", "--model", str(tiny_model("llama")), "--data", str(text_data[0]),
                                   "--out", str(tmp_path), "--max-steps", "1", "--batch-size", "2", "--all-params",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    import json

    assert json.loads((tmp_path / "run.json").read_text())["train"]["mode"] == "all"
    assert any("embed_tokens" in k for k in load_file(str(tmp_path / "delta" / DELTA_FILE)))


def test_collator_encodes_each_example_once_and_shares_pixels(tiny_model, vlm_data, monkeypatch):
    proc = load_model(tiny_model("qwen2_5_vl")).processor
    examples = load_jsonl(vlm_data[0])
    col = SFTCollator(proc)
    calls = []
    real = col.encoder.encode
    monkeypatch.setattr(col.encoder, "encode", lambda ex: calls.append(ex) or real(ex))
    first = col([{"example": e} for e in examples])
    second = col([{"example": e} for e in reversed(examples)])
    assert len(calls) == len(examples)
    assert torch.equal(first["input_ids"][0], second["input_ids"][-1])
    from dataclasses import replace

    twin = replace(examples[0], question="Who is this?")  # the same image, another question
    col([{"example": twin}])
    assert col._encoded[twin]["pixel_values"] is col._encoded[examples[0]]["pixel_values"]
